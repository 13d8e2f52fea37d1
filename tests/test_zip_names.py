"""Member names: how stored names are decoded, the safe spelling of odd
names (names.py), and that every name archfs writes reads back the same in
unzip, 7-Zip, bsdtar and Python's zipfile."""

import errno
import os
import stat
import subprocess
import zipfile
import zlib

import pytest

from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import InvalidArgument
from zip_builders import (
    DEFLATED,
    Entry,
    assert_tools_accept,
    local_header_at,
    names_by_tool,
    open_store,
    read_all,
    tree_of,
    unicode_path_extra,
    write_zip,
)

UTF8_FLAG = 0x0800


def entry_names(store):
    """Every entry of the store, directories included, as the tools list them."""
    return sorted(name for name, _row in store.members())


def assert_tools_list(path, expected):
    listed = names_by_tool(path)
    for tool, names in listed.items():
        assert names == sorted(expected), "%s lists %r, expected %r" % (tool, names, expected)


# -- decoding -----------------------------------------------------------------------

def test_utf8_flag(tmp_path):
    path = tmp_path / "flag.zip"
    with zipfile.ZipFile(path, "w") as z:           # sets the flag for non-ASCII names
        z.writestr("café/naïve.txt", b"1")
        z.writestr("日本語.txt", b"2")
    assert zipfile.ZipFile(path).getinfo("日本語.txt").flag_bits & UTF8_FLAG
    store = open_store(path, False)
    assert read_all(store) == {"café/naïve.txt": b"1", "日本語.txt": b"2"}
    assert store.listdir("") == [("café", stat.S_IFDIR | 0o755),
                                 ("日本語.txt", store.stat("日本語.txt")[0])]


def test_unicode_path_extra_field(tmp_path):
    # what Info-ZIP zip writes in a non-UTF-8 setting: the native (here
    # Latin-1) bytes as the name, the UTF-8 spelling in 0x7075, no flag
    raw = "café-ñ.txt".encode("latin-1")
    path = write_zip(tmp_path / "up.zip", [
        Entry(raw, b"1", extra=unicode_path_extra(raw, "café-ñ.txt")),
        Entry("plain.txt", b"2"),
    ])
    store = open_store(path, False)
    assert read_all(store) == {"café-ñ.txt": b"1", "plain.txt": b"2"}


def test_unicode_path_extra_field_only_in_central_record(tmp_path):
    raw = "Grüße.txt".encode("cp437")
    path = write_zip(tmp_path / "up.zip", [
        Entry(raw, b"1", central_extra=unicode_path_extra(raw, "Grüße.txt"))])
    assert open_store(path, False).names() == ["Grüße.txt"]


def test_stale_unicode_path_is_ignored(tmp_path):
    # a tool renamed the entry without knowing 0x7075: its CRC no longer matches
    raw = b"caf\x82.txt"
    path = write_zip(tmp_path / "stale.zip", [
        Entry(raw, b"1", extra=unicode_path_extra(raw, "old-name.txt", crc_of=b"old-name.txt"))])
    assert open_store(path, False).names() == ["café.txt"]      # cp437 of the raw bytes


def test_utf8_without_flag_or_extra(tmp_path):
    path = write_zip(tmp_path / "bare.zip", [Entry("ünïcödé/文件.txt".encode(), b"1")])
    assert open_store(path, False).names() == ["ünïcödé/文件.txt"]


def test_cp437_names(tmp_path):
    path = write_zip(tmp_path / "dos.zip", [
        Entry(b"caf\x82.txt", b"1"),          # é in cp437, not valid UTF-8
        Entry(b"\x8e\x99\x9a/\xe1", b"2"),    # ÄÖÜ/ß
        Entry(b"box\xc9\xcd\xbb", b"3"),      # ╔═╗ (\xc9\xcd is no UTF-8 sequence)
    ])
    assert open_store(path, False).names() == ["café.txt", "ÄÖÜ/ß", "box╔═╗"]


def test_names_from_the_real_zip_command(tmp_path):
    """Info-ZIP zip 3.0 on Linux sets the UTF-8 flag when it can load the
    en_US.UTF-8 locale and otherwise stores the raw (UTF-8) bytes with
    neither the flag nor an extra field; either way the name must read right.
    If this zip build writes a Unicode Path field instead, that is read too."""
    src = tmp_path / "src"
    (src / "répertoire").mkdir(parents=True)
    (src / "répertoire" / "Ängström ☃.txt").write_bytes(b"snow")
    path = tmp_path / "real.zip"
    env = dict(os.environ, LC_ALL="C.UTF-8")
    subprocess.run(["zip", "-q", "-r", str(path), "répertoire"], cwd=src, env=env, check=True)
    info = zipfile.ZipFile(path).infolist()[-1]
    flagged = bool(info.flag_bits & UTF8_FLAG)
    raw = info.filename.encode("utf-8" if flagged else "cp437")
    assert raw == "répertoire/Ängström ☃.txt".encode()      # zip stored the UTF-8 bytes
    store = open_store(path, False)
    assert read_all(store) == {"répertoire/Ängström ☃.txt": b"snow"}


# -- safe spelling (names.py), one rule at a time ------------------------------------

@pytest.mark.parametrize("raw, shown", [
    (b"./lead.txt", "lead.txt"),
    (b"/abs/path.txt", "abs/path.txt"),
    (b"///many/slashes", "many/slashes"),
    (b"../up.txt", "up.txt"),
    (b"./../.././up.txt", "up.txt"),
    (b"a/../../b.txt", "a/%2E%2E/%2E%2E/b.txt"),
    (b"a/./b.txt", "a/%2E/b.txt"),
    (b"a/..", "a/%2E%2E"),
    (b"a\\..\\b.txt", "a/%2E%2E/b.txt"),
    (b"a//b.txt", "a/b.txt"),
    (b"dir\\file.txt", "dir/file.txt"),
    (b"..\\..\\win.txt", "win.txt"),
    (b"nul\x00byte", "nul\ufffdbyte"),
    (b"..", "unnamed"),
])
def test_safe_spelling(tmp_path, raw, shown):
    path = write_zip(tmp_path / "odd.zip", [Entry(raw, b"content")])
    store = open_store(path, False)
    assert store.names() == [shown]
    with store.open_member(shown) as f:
        assert f.read() == b"content"


def test_backslash_names_make_directories(tmp_path):
    path = write_zip(tmp_path / "win.zip", [Entry(b"top\\sub\\f.txt", b"1"),
                                            Entry(b"top\\g.txt", b"2")])
    store = open_store(path, False)
    assert tree_of(store) == {"top": "dir", "top/sub": "dir", "top/sub/f.txt": "file",
                              "top/g.txt": "file"}


def test_long_components_are_cut_and_stay_distinct(tmp_path):
    first = "L" * 300 + "-one"
    second = "L" * 300 + "-two"
    short = "S" * 255                               # exactly NAME_MAX: kept
    path = write_zip(tmp_path / "long.zip", [Entry("d/" + first, b"1"), Entry("d/" + second, b"2"),
                                             Entry(short, b"3")])
    store = open_store(path, False)
    names = store.names()
    expected = ["d/" + n[:255 - 9] + "~%08x" % zlib.crc32(n.encode()) for n in (first, second)]
    assert names == expected + [short]
    assert all(len(part.encode()) <= 255 for n in names for part in n.split("/"))
    assert read_all(store) == {expected[0]: b"1", expected[1]: b"2", short: b"3"}


def test_long_multibyte_component_is_cut_on_a_character_boundary(tmp_path):
    name = "é" * 200                                 # 400 bytes
    path = write_zip(tmp_path / "long.zip", [Entry(name, b"x", flags=UTF8_FLAG)])
    shown = open_store(path, False).names()[0]
    assert len(shown.encode()) <= 255
    assert shown.endswith("~%08x" % zlib.crc32(name.encode()))
    assert set(shown[:-9]) == {"é"}


def test_duplicates_get_backup_numbers(tmp_path):
    path = write_zip(tmp_path / "dup.zip", [
        Entry("dup.txt", b"first"), Entry("other", b"o"), Entry("dup.txt", b"second"),
        Entry("dup.txt", b"third"), Entry("d/x", b"dx1"), Entry("d/x", b"dx2"),
    ])
    store = open_store(path, False)
    assert read_all(store) == {"dup.txt.~1~": b"first", "other": b"o", "dup.txt.~2~": b"second",
                               "dup.txt": b"third", "d/x.~1~": b"dx1", "d/x": b"dx2"}


def test_duplicate_spellings_after_normalisation(tmp_path):
    path = write_zip(tmp_path / "dup.zip", [Entry("./a.txt", b"1"), Entry("/a.txt", b"2"),
                                            Entry("a.txt", b"3")])
    assert read_all(open_store(path, False)) == {"a.txt.~1~": b"1", "a.txt.~2~": b"2",
                                                 "a.txt": b"3"}


@pytest.mark.parametrize("order", [0, 1, 2])
def test_dot_components_get_distinct_stable_spellings(tmp_path, order):
    """a/../b, a/./b and a/b are three members whatever their order in the
    archive, each under the same spelling every time."""
    entries = [Entry("a/../b", b"dotdot"), Entry("a/./b", b"dot"), Entry("a/b", b"plain")]
    entries = entries[order:] + entries[:order]
    path = write_zip(tmp_path / "dots.zip", entries)
    assert read_all(open_store(path, False)) == {"a/%2E%2E/b": b"dotdot", "a/%2E/b": b"dot",
                                                 "a/b": b"plain"}


def test_duplicate_directory_entries_merge(tmp_path):
    path = write_zip(tmp_path / "dup.zip", [
        Entry("d/", external_attr=((stat.S_IFDIR | 0o700) << 16) | 0x10),
        Entry("d/f", b"1"),
        Entry("d/", external_attr=((stat.S_IFDIR | 0o750) << 16) | 0x10),
    ])
    store = open_store(path, False)
    assert tree_of(store) == {"d": "dir", "d/f": "file"}
    assert store.stat("d")[0] == stat.S_IFDIR | 0o750          # the later entry


@pytest.mark.parametrize("entries", [
    [Entry("x", b"file"), Entry("x/y", b"below")],
    [Entry("x/y", b"below"), Entry("x", b"file")],
    [Entry("x", b"file"), Entry("x/")],
    [Entry("x/"), Entry("x", b"file")],
], ids=["file-then-child", "child-then-file", "file-then-dir", "dir-then-file"])
def test_file_and_directory_clash(tmp_path, entries):
    path = write_zip(tmp_path / "clash.zip", entries)
    store = open_store(path, False)
    assert store.stat("x")[0] & stat.S_IFMT(0o170000) == stat.S_IFDIR      # the dir keeps it
    with store.open_member("x.~1~") as f:
        assert f.read() == b"file"
    if any(e.name == "x/y" for e in entries):
        with store.open_member("x/y") as f:
            assert f.read() == b"below"


# -- writing names -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a\\b", "../x", "a//b", "x/./y", "x/../y", "/abs", "a/",
                                  "nul\x00"])
def test_unsafe_new_names_are_refused(tmp_path, name):
    store = open_store(tmp_path / "n.zip", True)
    store.add_bytes("ok", b"1")
    for attempt in (lambda: store.add_bytes(name, b"x"), lambda: store.mkdir(name),
                    lambda: store.rename("ok", name)):
        with pytest.raises(InvalidArgument) as info:
            attempt()
        assert info.value.errno == errno.EINVAL
    assert store.names() == ["ok"]
    store.close()


WRITTEN_NAMES = [
    "plain.txt", "with space.txt", " leading space", "trailing.dot.", "-dash-first",
    "ümlaut/café.txt", "日本語/ファイル.txt", "emoji 😀.txt", "quote'and\"double",
    "semi;colon&amp", "#hash%25", "[brackets]{braces}", "star*question?", "colon:name",
    "N" * 255, "deep/er/and/deeper/still.txt",
]


def test_every_written_name_reads_back_in_every_tool(tmp_path):
    path = tmp_path / "written.zip"
    with ZipfileArchive(url=str(path), mode="w") as archive:
        for i, name in enumerate(WRITTEN_NAMES):
            archive.writedata(name, b"%d" % i)
        archive.mkdir("empty dir ✓")
        archive.symlink("plain.txt", "link → plain")
    store = open_store(path, False)
    expected = entry_names(store)
    assert set(WRITTEN_NAMES) <= set(expected)
    assert "empty dir ✓" in expected and "link → plain" in expected
    assert_tools_list(path, expected)
    assert_tools_accept(path)
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.isascii():
                assert info.flag_bits & UTF8_FLAG, info.filename


ODD_ARCHIVE = [
    Entry("ascii.txt", b"a"),
    Entry("utf8-flag-é.txt".encode(), b"b", flags=UTF8_FLAG),
    Entry(b"latin1-caf\xe9.txt", b"c",
          extra=unicode_path_extra(b"latin1-caf\xe9.txt", "latin1-café.txt")),
    Entry("bare-utf8-ö.txt".encode(), b"d"),
    Entry(b"cp437-\x82.txt", b"e"),
    Entry(b"./dot-slash.txt", b"f"),
    Entry(b"/absolute.txt", b"g"),
    Entry(b"../../escape.txt", b"h"),
    Entry(b"win\\path.txt", b"i"),
    Entry(b"dup", b"j1"),
    Entry(b"dup", b"j2"),
    Entry(b"clash", b"k"),
    Entry(b"clash/inner", b"l"),
    Entry(b"nul\x00.txt", b"m"),
    Entry(("X" * 270).encode(), b"n"),
    Entry("deflated-ü.txt".encode(), b"o" * 500, DEFLATED, flags=UTF8_FLAG),
]
ODD_SHOWN = {
    "ascii.txt": b"a", "utf8-flag-é.txt": b"b", "latin1-café.txt": b"c",
    "bare-utf8-ö.txt": b"d", "cp437-é.txt": b"e", "dot-slash.txt": b"f", "absolute.txt": b"g",
    "escape.txt": b"h", "win/path.txt": b"i", "dup.~1~": b"j1", "dup": b"j2", "clash.~1~": b"k",
    "clash/inner": b"l", "nul\ufffd.txt": b"m",
    "X" * 246 + "~%08x" % zlib.crc32(b"X" * 270): b"n", "deflated-ü.txt": b"o" * 500,
}


@pytest.mark.parametrize("change", ["add", "rename", "compact"])
def test_carried_over_names_read_back_in_every_tool(tmp_path, change):
    path = write_zip(tmp_path / "odd.zip", ODD_ARCHIVE)
    store = open_store(path, True)
    assert read_all(store) == ODD_SHOWN
    expected = dict(ODD_SHOWN)
    if change == "add":
        store.add_bytes("new-ñ.txt", b"new")
        expected["new-ñ.txt"] = b"new"
    elif change == "rename":
        store.rename("ascii.txt", "renamed-ascii.txt")
        store.mkdir("moved")
        store.rename("latin1-café.txt", "moved/latin1-café.txt")
        expected["renamed-ascii.txt"] = expected.pop("ascii.txt")
        expected["moved/latin1-café.txt"] = expected.pop("latin1-café.txt")
    store.commit()
    if change == "compact":
        store.compact(full=True)      # a rewrite gives every member the name shown
    store.close()
    store = open_store(path, True)
    assert read_all(store) == expected
    entries = entry_names(store)
    store.close()
    assert_tools_list(path, entries)
    assert_tools_accept(path)
    with zipfile.ZipFile(path) as z:
        assert {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()} == expected
    store = open_store(path, False)         # a second reopen changes nothing more
    assert read_all(store) == expected


def test_carried_over_ascii_members_keep_their_local_header(tmp_path):
    path = write_zip(tmp_path / "odd.zip", ODD_ARCHIVE)
    before = {i.filename: i for i in zipfile.ZipFile(path).infolist()}
    ascii_offset = before["ascii.txt"].header_offset
    ascii_header = local_header_at(path, ascii_offset)
    assert not ascii_header[0] & UTF8_FLAG
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("new.txt", b"n")
    after = {i.filename: i for i in zipfile.ZipFile(path).infolist()}
    # kept in place, its local header untouched and its flags as they were
    assert after["ascii.txt"].header_offset == ascii_offset
    assert local_header_at(path, ascii_offset) == ascii_header
    assert after["ascii.txt"].flag_bits == before["ascii.txt"].flag_bits
    # names that needed a new spelling or the UTF-8 flag were written anew,
    # the flag set in the local header and the central record alike
    for name in ("latin1-café.txt", "bare-utf8-ö.txt", "cp437-é.txt", "dot-slash.txt",
                 "dup.~1~", "win/path.txt"):
        info = after[name]
        flags, raw, _extra = local_header_at(path, info.header_offset)
        assert flags & UTF8_FLAG and info.flag_bits & UTF8_FLAG, name
        assert raw == name.encode(), name
    text = subprocess.run(["unzip", "-t", str(path)], capture_output=True).stdout.decode()
    assert "warning" not in text.lower() and "No errors detected" in text


def test_extraction_by_unzip_uses_the_shown_names(tmp_path):
    path = write_zip(tmp_path / "odd.zip", ODD_ARCHIVE)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("trigger", b"t")
    out = tmp_path / "out"
    subprocess.run(["unzip", "-qq", str(path), "-d", str(out)], check=True,
                   env=dict(os.environ, LC_ALL="C.UTF-8"))
    got = {}
    for root, _dirs, files in os.walk(out):
        for name in files:
            full = os.path.join(root, name)
            got[os.path.relpath(full, out)] = open(full, "rb").read()
    assert got == dict(ODD_SHOWN, trigger=b"t")
