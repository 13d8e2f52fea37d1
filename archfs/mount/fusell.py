"""ctypes declarations of libfuse 3's low-level API: nothing archfs-specific.

The low-level API hands requests over by inode number and lets the file
system build replies itself, so a directory listing can be one buffer built
in bulk (instead of one library call per entry), a lookup is answered with
the attributes in the same reply, and opendir can ask the kernel to cache a
listing (``cache_readdir``), which libfuse's high-level API only passes on
from 3.16. The structures ``stat``, ``statvfs`` and ``fuse_file_info`` come
from ``fusetypes`` (its own declarations where it has them, else mfusepy's).

The reply structures the kernel reads directly (``fuse_dirent``,
``fuse_direntplus``) are part of the kernel's stable FUSE protocol.
"""

import ctypes
import struct

from archfs.mount import fusetypes

_types = fusetypes.bind()
lib = _types.lib
VERSION = _types.version

fuse_ino_t = ctypes.c_uint64
fuse_req_t = ctypes.c_void_p
c_off_t = ctypes.c_int64
c_stat = _types.c_stat
c_statvfs = _types.c_statvfs
fuse_file_info = _types.fuse_file_info
FI_P = ctypes.POINTER(fuse_file_info)

# fuse_conn_info.want / capable bits (fuse_common.h)
CAP_ASYNC_READ = 1 << 0
CAP_ATOMIC_O_TRUNC = 1 << 3
CAP_SPLICE_WRITE = 1 << 7
CAP_SPLICE_MOVE = 1 << 8
CAP_SPLICE_READ = 1 << 9
CAP_AUTO_INVAL_DATA = 1 << 12
CAP_READDIRPLUS = 1 << 13
CAP_READDIRPLUS_AUTO = 1 << 14
CAP_WRITEBACK_CACHE = 1 << 16
CAP_NO_OPEN_SUPPORT = 1 << 17
CAP_PARALLEL_DIROPS = 1 << 18
CAP_CACHE_SYMLINKS = 1 << 23
CAP_NO_OPENDIR_SUPPORT = 1 << 24

# setattr's to_set bits (fuse_lowlevel.h)
SET_ATTR_MODE = 1 << 0
SET_ATTR_UID = 1 << 1
SET_ATTR_GID = 1 << 2
SET_ATTR_SIZE = 1 << 3
SET_ATTR_ATIME = 1 << 4
SET_ATTR_MTIME = 1 << 5
SET_ATTR_ATIME_NOW = 1 << 7
SET_ATTR_MTIME_NOW = 1 << 8


class fuse_conn_info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint) for name in (
        "proto_major", "proto_minor", "max_write", "max_read", "max_readahead",
        "capable", "want", "max_background", "congestion_threshold", "time_gran")] + [
        ("reserved", ctypes.c_uint * 22)]


class fuse_ctx(ctypes.Structure):
    """Who made a request (fuse_req_ctx): uid, gid, pid, umask."""
    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", ctypes.c_int32),
                ("umask", ctypes.c_uint32)]


class fuse_args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("allocated", ctypes.c_int)]


class fuse_forget_data(ctypes.Structure):
    _fields_ = [("ino", fuse_ino_t), ("nlookup", ctypes.c_uint64)]


class fuse_loop_config_v1(ctypes.Structure):
    _fields_ = [("clone_fd", ctypes.c_int), ("max_idle_threads", ctypes.c_uint)]


class fuse_entry_param(ctypes.Structure):
    _fields_ = [("ino", fuse_ino_t), ("generation", ctypes.c_uint64), ("attr", c_stat),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class fuse_buf(ctypes.Structure):
    """One buffer of a fuse_bufvec (memory only here; ``mem_size`` is 3.17's
    addition at the end, zero and unread by older libraries)."""
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64), ("mem_size", ctypes.c_size_t)]


class fuse_bufvec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", fuse_buf * 1)]


_CB = ctypes.CFUNCTYPE
# One entry per member of struct fuse_lowlevel_ops, in its order (3.0 - 3.16).
OPS = [
    ("init", _CB(None, ctypes.c_void_p, ctypes.POINTER(fuse_conn_info))),
    ("destroy", _CB(None, ctypes.c_void_p)),
    ("lookup", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p)),
    ("forget", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_uint64)),
    ("getattr", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("setattr", _CB(None, fuse_req_t, fuse_ino_t, ctypes.POINTER(c_stat), ctypes.c_int, FI_P)),
    ("readlink", _CB(None, fuse_req_t, fuse_ino_t)),
    ("mknod", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p, ctypes.c_uint,
                  ctypes.c_uint64)),
    ("mkdir", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p, ctypes.c_uint)),
    ("unlink", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p)),
    ("rmdir", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p)),
    ("symlink", _CB(None, fuse_req_t, ctypes.c_char_p, fuse_ino_t, ctypes.c_char_p)),
    ("rename", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p, fuse_ino_t,
                   ctypes.c_char_p, ctypes.c_uint)),
    ("link", _CB(None, fuse_req_t, fuse_ino_t, fuse_ino_t, ctypes.c_char_p)),
    ("open", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("read", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_size_t, c_off_t, FI_P)),
    ("write", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_void_p, ctypes.c_size_t, c_off_t,
                  FI_P)),
    ("flush", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("release", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("fsync", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_int, FI_P)),
    ("opendir", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("readdir", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_size_t, c_off_t, FI_P)),
    ("releasedir", _CB(None, fuse_req_t, fuse_ino_t, FI_P)),
    ("fsyncdir", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_int, FI_P)),
    ("statfs", _CB(None, fuse_req_t, fuse_ino_t)),
    ("setxattr", None),
    ("getxattr", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p, ctypes.c_size_t)),
    ("listxattr", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_size_t)),
    ("removexattr", None),
    ("access", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_int)),
    ("create", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_char_p, ctypes.c_uint, FI_P)),
    ("getlk", None), ("setlk", None), ("bmap", None), ("ioctl", None), ("poll", None),
    ("write_buf", None), ("retrieve_reply", None),
    ("forget_multi", _CB(None, fuse_req_t, ctypes.c_size_t,
                         ctypes.POINTER(fuse_forget_data))),
    ("flock", None),
    ("fallocate", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_int, c_off_t, c_off_t, FI_P)),
    ("readdirplus", _CB(None, fuse_req_t, fuse_ino_t, ctypes.c_size_t, c_off_t, FI_P)),
    ("copy_file_range", None), ("lseek", None),
]
CALLBACK_TYPES = {name: kind for name, kind in OPS if kind is not None}


class fuse_lowlevel_ops(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name, _ in OPS]


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def _optional(name, restype, *argtypes):
    try:
        return _fn(name, restype, *argtypes)
    except AttributeError:
        return None


_req = fuse_req_t
reply_err = _fn("fuse_reply_err", ctypes.c_int, _req, ctypes.c_int)
# It only reads the request: called without letting go of the GIL, which
# another thread (the committer) could otherwise take for up to a switch
# interval before this request goes on.
req_ctx = ctypes.PYFUNCTYPE(ctypes.POINTER(fuse_ctx), _req)(("fuse_req_ctx", lib))
reply_none = _fn("fuse_reply_none", None, _req)
# Replies built as bytes by this package are passed as char pointers.
reply_entry = _fn("fuse_reply_entry", ctypes.c_int, _req, ctypes.c_char_p)
reply_create = _fn("fuse_reply_create", ctypes.c_int, _req, ctypes.c_char_p, FI_P)
reply_attr = _fn("fuse_reply_attr", ctypes.c_int, _req, ctypes.c_char_p, ctypes.c_double)
reply_readlink = _fn("fuse_reply_readlink", ctypes.c_int, _req, ctypes.c_char_p)
reply_open = _fn("fuse_reply_open", ctypes.c_int, _req, FI_P)
reply_write = _fn("fuse_reply_write", ctypes.c_int, _req, ctypes.c_size_t)
reply_buf = _fn("fuse_reply_buf", ctypes.c_int, _req, ctypes.c_char_p, ctypes.c_size_t)
reply_statfs = _fn("fuse_reply_statfs", ctypes.c_int, _req, ctypes.POINTER(c_statvfs))
reply_xattr = _fn("fuse_reply_xattr", ctypes.c_int, _req, ctypes.c_size_t)

session_new = _fn("fuse_session_new", ctypes.c_void_p, ctypes.POINTER(fuse_args),
                  ctypes.POINTER(fuse_lowlevel_ops), ctypes.c_size_t, ctypes.c_void_p)
session_mount = _fn("fuse_session_mount", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)
session_unmount = _fn("fuse_session_unmount", None, ctypes.c_void_p)
session_destroy = _fn("fuse_session_destroy", None, ctypes.c_void_p)
session_loop = _fn("fuse_session_loop", ctypes.c_int, ctypes.c_void_p)
session_fd = _fn("fuse_session_fd", ctypes.c_int, ctypes.c_void_p)
set_signal_handlers = _fn("fuse_set_signal_handlers", ctypes.c_int, ctypes.c_void_p)
remove_signal_handlers = _fn("fuse_remove_signal_handlers", None, ctypes.c_void_p)
# Puts data into the kernel's page cache of an inode (no request needed to read it).
notify_store = _optional("fuse_lowlevel_notify_store", ctypes.c_int, ctypes.c_void_p,
                         fuse_ino_t, ctypes.c_int64, ctypes.POINTER(fuse_bufvec), ctypes.c_int)
# 3.12+: an opaque loop configuration; before: struct fuse_loop_config_v1
loop_mt_312 = _optional("fuse_session_loop_mt_312", ctypes.c_int, ctypes.c_void_p,
                        ctypes.c_void_p)
loop_cfg_create = _optional("fuse_loop_cfg_create", ctypes.c_void_p)
loop_cfg_destroy = _optional("fuse_loop_cfg_destroy", None, ctypes.c_void_p)
loop_cfg_set_idle = _optional("fuse_loop_cfg_set_idle_threads", ctypes.c_uint,
                              ctypes.c_void_p, ctypes.c_uint)
loop_cfg_set_max = _optional("fuse_loop_cfg_set_max_threads", None, ctypes.c_void_p,
                             ctypes.c_uint)
loop_mt_32 = _optional("fuse_session_loop_mt_32", ctypes.c_int, ctypes.c_void_p,
                       ctypes.POINTER(fuse_loop_config_v1))


# -- the stat buffer, packed in one call -------------------------------------

def _stat_packer():
    """A struct.Struct writing the fields archfs sets into a ``struct stat``
    laid out as declared for this platform; the rest stays zero."""
    codes = {(8, False): "Q", (8, True): "q", (4, False): "I", (4, True): "i"}

    def code(ctype):
        size = ctypes.sizeof(ctype)
        signed = ctype(-1).value < 0
        return codes[(size, signed)]

    ts = _types.c_timespec
    fields = []
    for name in ("st_ino", "st_nlink", "st_mode", "st_uid", "st_gid", "st_rdev", "st_size",
                 "st_blocks"):
        ctype = dict(c_stat._fields_)[name]
        fields.append((getattr(c_stat, name).offset, code(ctype), name))
    for name in ("st_atimespec", "st_mtimespec", "st_ctimespec"):
        base = getattr(c_stat, name).offset
        for sub, subtype in ts._fields_:
            fields.append((base + getattr(ts, sub).offset, code(subtype), name + "." + sub))
    fields.sort()
    fmt, at = "=", 0
    for offset, c, _ in fields:
        fmt += "%dx%s" % (offset - at, c) if offset > at else c
        at = offset + struct.calcsize("=" + c)
    fmt += "%dx" % (ctypes.sizeof(c_stat) - at) if ctypes.sizeof(c_stat) > at else ""
    return fmt[1:], [name for _, _, name in fields]


STAT_FORMAT, STAT_FIELDS = _stat_packer()
# The order pack() takes them in, which tests check against STAT_FIELDS.
STAT_ORDER = ["st_ino", "st_nlink", "st_mode", "st_uid", "st_gid", "st_rdev", "st_size",
              "st_blocks",
              "st_atimespec.tv_sec", "st_atimespec.tv_nsec", "st_mtimespec.tv_sec",
              "st_mtimespec.tv_nsec", "st_ctimespec.tv_sec", "st_ctimespec.tv_nsec"]
STAT = struct.Struct("=" + STAT_FORMAT)
# fuse_entry_param: ino, generation, struct stat, attr_timeout, entry_timeout
_ATTR_AT = fuse_entry_param.attr.offset
_TIMEOUT_AT = fuse_entry_param.attr_timeout.offset
ENTRY = struct.Struct("=QQ%dx%s%dxdd" % (_ATTR_AT - 16, STAT_FORMAT,
                                         _TIMEOUT_AT - _ATTR_AT - ctypes.sizeof(c_stat)))
assert ENTRY.size == ctypes.sizeof(fuse_entry_param)

# Kernel protocol: struct fuse_dirent {u64 ino; u64 off; u32 namelen; u32 type;
# char name[]} padded to 8 bytes; fuse_direntplus is a fuse_entry_out
# {u64 nodeid, generation, entry_valid, attr_valid; u32 entry_valid_nsec,
# attr_valid_nsec; struct fuse_attr} followed by a fuse_dirent.
DIRENT = struct.Struct("<QQII")
# struct fuse_attr: ino size blocks atime mtime ctime (u64), atimensec mtimensec
# ctimensec mode nlink uid gid rdev blksize flags (u32)
ENTRY_OUT = struct.Struct("<QQQQII" + "QQQQQQ" + "IIIIIIIIII")
UNKNOWN_INO = 0xFFFFFFFF
