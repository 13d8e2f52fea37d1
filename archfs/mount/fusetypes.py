"""libfuse 3's structures on Linux, declared here so the low-level binding
needs no mfusepy.

Importing mfusepy (with the inspect, ast, dis and platform modules it
imports) was about a tenth of a second mount's start-up, and the low-level
binding used it only for four structure layouts and the library handle.
They are declared here for the machines whose layouts are written down
below (glibc's ``struct stat`` differs by architecture); anywhere else,
or when the user points mfusepy at a library (``FUSE_LIBRARY_PATH``,
``FUSE_LIBRARY_NAME``), ``bind`` returns mfusepy's, as before.
"""

import ctypes
import os
import sys

from archfs.mount import fuselib


class c_timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# glibc's struct stat (the kernel's asm/stat.h for x86_64; asm-generic for aarch64)
_STAT_FIELDS = {
    "x86_64": [
        ("st_dev", ctypes.c_ulonglong), ("st_ino", ctypes.c_ulong),
        ("st_nlink", ctypes.c_ulong), ("st_mode", ctypes.c_uint), ("st_uid", ctypes.c_uint),
        ("st_gid", ctypes.c_uint), ("__pad0", ctypes.c_int), ("st_rdev", ctypes.c_ulonglong),
        ("st_size", ctypes.c_longlong), ("st_blksize", ctypes.c_long),
        ("st_blocks", ctypes.c_long), ("st_atimespec", c_timespec),
        ("st_mtimespec", c_timespec), ("st_ctimespec", c_timespec),
        ("__reserved", ctypes.c_long * 3)],
    "aarch64": [
        ("st_dev", ctypes.c_ulonglong), ("st_ino", ctypes.c_ulong),
        ("st_mode", ctypes.c_uint), ("st_nlink", ctypes.c_uint), ("st_uid", ctypes.c_uint),
        ("st_gid", ctypes.c_uint), ("st_rdev", ctypes.c_ulonglong), ("__pad1", ctypes.c_ulong),
        ("st_size", ctypes.c_longlong), ("st_blksize", ctypes.c_int), ("__pad2", ctypes.c_int),
        ("st_blocks", ctypes.c_long), ("st_atimespec", c_timespec),
        ("st_mtimespec", c_timespec), ("st_ctimespec", c_timespec),
        ("__reserved", ctypes.c_uint * 2)],
}
_STAT_SIZE = {"x86_64": 144, "aarch64": 128}


def _statvfs():
    """glibc's struct statvfs on a 64-bit Linux."""
    class c_statvfs(ctypes.Structure):
        _fields_ = [(name, ctypes.c_ulong) for name in ("f_bsize", "f_frsize", "f_blocks",
                                                        "f_bfree", "f_bavail", "f_files",
                                                        "f_ffree", "f_favail", "f_fsid",
                                                        "f_flag", "f_namemax")] + [
            ("f_type", ctypes.c_uint), ("__f_spare", ctypes.c_int * 5)]
    return c_statvfs


def file_info_fields(minor: int) -> list:
    """fuse_common.h's struct fuse_file_info of libfuse 3.``minor``: the
    one-bit flags grew over the releases (3.15 and 3.16 put
    parallel_direct_writes in the middle, 3.17 moved it to the end)."""
    bits = ["writepage", "direct_io", "keep_cache"]
    if 15 <= minor < 17:
        bits.append("parallel_direct_writes")
    bits += ["flush", "nonseekable", "flock_release"]
    if minor >= 5:
        bits.append("cache_readdir")
    if minor >= 11:
        bits.append("noflush")
    if minor >= 17:
        bits.append("parallel_direct_writes")
    fields = [("flags", ctypes.c_int32)]
    fields += [(name, ctypes.c_uint32, 1) for name in bits]
    fields += [("padding", ctypes.c_uint32, 32 - len(bits)), ("padding2", ctypes.c_uint32)]
    if minor >= 17:
        fields.append(("padding3", ctypes.c_uint32))
    fields += [("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64),
               ("poll_events", ctypes.c_uint32)]
    return fields


class Types:
    """What the low-level binding needs of the loaded libfuse."""

    def __init__(self, lib, version, c_stat, c_statvfs, fuse_file_info, timespec):
        self.lib, self.version = lib, version
        self.c_stat, self.c_statvfs = c_stat, c_statvfs
        self.fuse_file_info, self.c_timespec = fuse_file_info, timespec


def own(lib, machine: str) -> Types:
    """The structures declared here, for ``lib`` (a libfuse 3) on ``machine``."""
    version = lib.fuse_version()
    major, minor = (version // 10, version % 10) if version < 100 else \
        (version // 100, version % 100)

    class c_stat(ctypes.Structure):
        _fields_ = _STAT_FIELDS[machine]

    class fuse_file_info(ctypes.Structure):
        _fields_ = file_info_fields(minor)

    assert ctypes.sizeof(c_stat) == _STAT_SIZE[machine]
    return Types(lib, (major, minor), c_stat, _statvfs(), fuse_file_info, c_timespec)


def from_mfusepy() -> Types:
    mfusepy = fuselib.load()
    return Types(mfusepy._libfuse, (mfusepy.fuse_version_major, mfusepy.fuse_version_minor),
                 mfusepy.c_stat, mfusepy.c_statvfs, mfusepy.fuse_file_info,
                 mfusepy.c_timespec)


def bind() -> Types:
    """This module's structures where it knows the platform and archfs
    chose libfuse 3 itself, else mfusepy's."""
    machine = os.uname().machine
    if sys.platform.startswith("linux") and machine in _STAT_FIELDS and \
            ctypes.sizeof(ctypes.c_long) == 8 and \
            os.environ.get("ARCHFS_FUSE_TYPES") != "mfusepy":
        lib = fuselib.libfuse3()
        if lib is not None:
            return own(lib, machine)
    return from_mfusepy()
