"""The pieces that keep a mount's start light: libfuse 3's structures
declared by archfs (instead of importing mfusepy), the PATH search without
shutil, and the readahead helper's child run without subprocess."""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from archfs.mount import fuselib, fusetypes
from archfs.mount.readahead import _run_quietly

needs_own_types = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.uname().machine in fusetypes._STAT_FIELDS
         and fuselib.libfuse3() is not None),
    reason="archfs declares libfuse 3's structures for Linux x86_64 and aarch64 only")


def _layout(structure):
    """(name, offset, size) of each named field; a bit field's ``size``
    encodes its bit position too, so flags must sit on the same bits."""
    return [(name, getattr(structure, name).offset, getattr(structure, name).size)
            for name, *_ in structure._fields_ if not name.startswith(("_", "reserved"))]


@needs_own_types
def test_own_structures_are_laid_out_as_mfusepy_lays_them_out():
    import mfusepy
    own = fusetypes.own(fuselib.libfuse3(), os.uname().machine)
    assert own.version == (mfusepy.fuse_version_major, mfusepy.fuse_version_minor)
    for mine, theirs in ((own.c_stat, mfusepy.c_stat), (own.c_statvfs, mfusepy.c_statvfs),
                         (own.c_timespec, mfusepy.c_timespec)):
        assert ctypes.sizeof(mine) == ctypes.sizeof(theirs), mine.__name__
        assert _layout(mine) == _layout(theirs), mine.__name__
    # mfusepy declares poll_events 64 bits wide; libfuse's is a uint32_t at the end
    mine = [f for f in _layout(own.fuse_file_info) if f[0] != "poll_events"]
    theirs = [f for f in _layout(mfusepy.fuse_file_info) if f[0] != "poll_events"]
    assert mine == theirs
    assert own.fuse_file_info.poll_events.offset == mfusepy.fuse_file_info.poll_events.offset


@pytest.mark.parametrize("minor", range(0, 19))
def test_file_info_keeps_fh_where_every_libfuse_3_keeps_it(minor):
    class Info(ctypes.Structure):
        _fields_ = fusetypes.file_info_fields(minor)
    assert Info.fh.offset == 16 and ctypes.sizeof(Info) == 40
    names = [f[0] for f in Info._fields_]
    assert ("noflush" in names) == (minor >= 11)
    assert ("cache_readdir" in names) == (minor >= 5)
    assert names.index("flush") == (4 if 15 <= minor < 17 else 3) + 1


def _modules_after(code: str, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@needs_own_types
def test_the_low_level_binding_loads_without_mfusepy():
    loaded = _modules_after("from archfs.mount import lowlevel, operations, daemon, session\n"
                            "assert lowlevel.available()")
    assert "archfs.mount.lowlevel" in loaded
    assert not loaded & {"mfusepy", "inspect", "platform", "archfs.mount.highlevel"}


def test_mfusepy_types_where_asked_for():
    env = dict(os.environ, ARCHFS_FUSE_TYPES="mfusepy")
    loaded = _modules_after("from archfs.mount import fusell\n"
                            "import mfusepy\nassert fusell.c_stat is mfusepy.c_stat", env=env)
    assert "mfusepy" in loaded


@pytest.mark.parametrize("name", ["sh", "stat", "fusermount3", "no-such-program-archfs"])
def test_which_finds_what_shutil_finds(name, monkeypatch, tmp_path):
    assert fuselib._which(name) == shutil.which(name)
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")                   # not executable: not a command
    monkeypatch.setenv("PATH", "%s%s%s" % (tmp_path, os.pathsep, os.environ["PATH"]))
    assert fuselib._which("plain") is None


def test_run_quietly_reports_the_exit_status():
    assert _run_quietly([shutil.which("true")], 10) == 0
    assert _run_quietly([shutil.which("false")], 10) == 1
    assert _run_quietly(["/no/such/program"], 10) is None


def test_run_quietly_ends_a_child_that_hangs():
    started = time.monotonic()
    assert _run_quietly([shutil.which("sleep"), "30"], 0.3) is None
    assert time.monotonic() - started < 20


def test_run_quietly_keeps_the_child_off_our_output(capfd):
    assert _run_quietly([shutil.which("echo"), "archfs-noise"], 10) == 0
    out, err = capfd.readouterr()
    assert "archfs-noise" not in out + err
