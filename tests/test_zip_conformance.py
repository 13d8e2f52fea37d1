"""Conformance: every generated case mounted read-only through FUSE and
judged against Python's zipfile and 7-Zip (``zip_conformance.py``).

The archives come from ``zip_corpus_builders.py``: every compression method
archfs reads, WinZip AES, each kind of damage the lenient reading handles,
odd names, and what must stay refused. Each mount and walk has a time bound;
the daemon must survive; nothing served may differ from what a reference
reads or what the archive's own CRCs record.
"""

import os

import pytest

import zip_conformance as zc
import zip_corpus_builders as corpus
from mount_fixtures import archfs

WALK_TIMEOUT = 120


@pytest.mark.parametrize("name", corpus.all_names())
def test_case_is_served_as_the_references_read_it(name, tmp_path, mounter):
    case = corpus.build(name, tmp_path)
    password = case.password.encode() if case.password else None
    ref = zc.reference(str(case.path), password)
    options = ["ro"] + (["password=" + case.password] if case.password else [])
    if case.refused:
        point = tmp_path / "mnt"
        point.mkdir()
        result = archfs("mount", case.path, point, *sum((["-o", o] for o in options), []))
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and case.path.name in lines[0], result.stderr
        assert not ref.counts, "a reference reads members archfs refuses"
        return
    m = mounter(case.path, *options)
    served = zc.walk_in_child(str(m.path), WALK_TIMEOUT)
    assert served is not None, "reading the mount took more than %d s" % WALK_TIMEOUT
    assert m.daemon_running(), "the daemon died:\n" + m.log()
    verdict = zc.judge(ref, served)
    assert verdict.good, "%s: %s\nlog:\n%s" % (verdict.kind, verdict.detail, m.log())
    if case.names is not None:
        for path, data in case.names.items():
            assert (m.path / path).read_bytes() == data, path
    for path, code in case.failing.items():
        with pytest.raises(OSError) as caught:
            (m.path / path).read_bytes()
        assert caught.value.errno == code, path
    warned = "read leniently" in m.log()
    assert warned == case.lenient, m.log()
    m.unmount()


@pytest.mark.parametrize("name", ["truncated-in-directory", "cd-offset-wrong", "count-high"])
def test_read_write_mount_of_a_damaged_archive_refuses_and_names_repair(name, tmp_path):
    case = corpus.build(name, tmp_path)
    before = case.path.read_bytes()
    point = tmp_path / "mnt"
    point.mkdir()
    result = archfs("mount", case.path, point)
    assert result.returncode != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "archfs repair" in line and "-o ro" in line, line
    assert case.path.read_bytes() == before
    repaired = archfs("repair", case.path)
    assert repaired.returncode == 0, repaired.stderr
    import zipfile
    with zipfile.ZipFile(case.path) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == sorted(n for n in corpus._sample_names())


def test_wrong_password_for_aes_is_refused_not_served(tmp_path, mounter):
    case = corpus.build("aes", tmp_path)
    m = mounter(case.path, "ro", "password=not the password")
    for path in case.names:
        with pytest.raises(PermissionError):
            (m.path / path).read_bytes()
    m.unmount()
    m = mounter(case.path, "ro")
    for path in case.names:
        with pytest.raises(PermissionError):
            os.open(m.path / path, os.O_RDONLY)
    m.unmount()
