"""Renaming encrypted members on a read-write mount: the copied local header
must keep what decryption needs (the AES extra field, the descriptor flag of
a traditional-PKWARE member), so 7-Zip and a remount still read them."""
import os
import shutil
import subprocess
import zipfile

import pytest

import zip_corpus_builders as corpus
from mount_fixtures import archfs

SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z")


def _seven_zip_reads(path, password, names):
    assert SEVEN_ZIP, "7-Zip is installed by scripts/test"
    listing = subprocess.run([SEVEN_ZIP, "t", "-p" + password, str(path)],
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    for name, data in names.items():
        out = subprocess.run([SEVEN_ZIP, "x", "-so", "-p" + password, str(path), name],
                             capture_output=True)
        assert out.returncode == 0 and out.stdout == data, (name, out.stderr)


@pytest.mark.parametrize("case_name", ["aes", "aes-by-7zip"])
def test_renamed_encrypted_members_stay_readable(case_name, tmp_path, mounter):
    case = corpus.build(case_name, tmp_path)
    m = mounter(case.path, "password=" + case.password)
    renamed = {}
    for i, (name, data) in enumerate(sorted(case.names.items())):
        new = "moved/%d-%s" % (i, name) if i % 2 else "r%d-%s" % (i, name)
        os.makedirs(os.path.dirname(m.path / new), exist_ok=True)
        os.rename(m.path / name, m.path / new)
        renamed[new] = data
    m.unmount()
    with zipfile.ZipFile(case.path) as zf:       # the directory lists the new names
        assert {n for n in zf.namelist() if not n.endswith("/")} == set(renamed)
    _seven_zip_reads(case.path, case.password, renamed)
    m = mounter(case.path, "ro", "password=" + case.password)
    for name, data in renamed.items():
        assert (m.path / name).read_bytes() == data, name
    m.unmount()


def _local_extra_tags(path):
    """name -> extra-field ids of each member's local header."""
    import struct
    data = path.read_bytes()
    tags = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            o = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[o + 26:o + 30])
            extra, found, i = data[o + 30 + name_len:o + 30 + name_len + extra_len], [], 0
            while i + 4 <= len(extra):
                tag, size = struct.unpack("<HH", extra[i:i + 4])
                found.append(tag)
                i += 4 + size
            tags[info.filename] = found
    return tags


def test_renamed_aes_member_keeps_its_aes_extra_in_the_local_header(tmp_path, mounter):
    case = corpus.build("aes", tmp_path)
    m = mounter(case.path, "password=" + case.password)
    for name in case.names:
        os.rename(m.path / name, m.path / ("new-" + name))
    m.unmount()
    tags = _local_extra_tags(case.path)
    assert tags and all(0x9901 in found for found in tags.values()), tags
    # a compaction moves them again (and renames made while mounted copy the header)
    m = mounter(case.path, "password=" + case.password)
    for name in case.names:
        os.rename(m.path / ("new-" + name), m.path / ("again-" + name))
    m.unmount()
    result = archfs("compact", case.path)
    assert result.returncode == 0, result.stderr
    tags = _local_extra_tags(case.path)
    assert set(tags) == {"again-" + n for n in case.names}
    assert all(0x9901 in found for found in tags.values()), tags
    _seven_zip_reads(case.path, case.password, {"again-" + n: d for n, d in case.names.items()})
