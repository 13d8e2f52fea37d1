"""Which libfuse archfs runs on, chosen before mfusepy is imported.

mfusepy loads libfuse2 when both libfuse2 and libfuse3 are installed; archfs
prefers libfuse3 (the maintained one, the only one on new systems). mfusepy
reads ``FUSE_LIBRARY_PATH``/``FUSE_LIBRARY_NAME`` at import time, so this
module sets one first.
A user's own ``FUSE_LIBRARY_NAME`` or ``FUSE_LIBRARY_PATH`` wins.
"""

import os


FUSE3_SONAME = "libfuse3.so.3"
_own = []                 # libfuse 3 as _prefer_fuse3 loaded it (a ctypes.CDLL), if it did
_asked = []               # libfuse3() has looked


def _prefer_fuse3() -> None:
    if os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME"):
        return
    import ctypes                          # here: `archfs unmount` never needs ctypes
    try:
        # the dynamic loader finds it at once; find_library would run
        # `ldconfig -p` (a fork and exec, twice with mfusepy's own look-up)
        lib = ctypes.CDLL(FUSE3_SONAME)
    except OSError:
        pass
    else:
        os.environ["FUSE_LIBRARY_PATH"] = FUSE3_SONAME
        _own.append(lib)
        return
    from ctypes.util import find_library
    if find_library("fuse3"):
        os.environ["FUSE_LIBRARY_NAME"] = "fuse3"


def load():
    """The mfusepy module, bound to the preferred libfuse.

    Raises OSError with a one-line reason when no libfuse can be loaded.
    """
    _prefer_fuse3()
    try:
        import mfusepy
    except (OSError, AttributeError) as exc:
        raise OSError("cannot load libfuse (install fuse3): %s" % exc) from None
    return mfusepy


def libfuse3():
    """libfuse 3 as a ctypes.CDLL when archfs chose it itself (the user named
    no library), without importing mfusepy; else None."""
    if not _own and not _asked and not os.environ.get("FUSE_LIBRARY_NAME") and \
            os.environ.get("FUSE_LIBRARY_PATH") in (None, FUSE3_SONAME):
        _asked.append(True)
        os.environ.pop("FUSE_LIBRARY_PATH", None)    # set by an earlier _prefer_fuse3
        _prefer_fuse3()
    return _own[0] if _own else None


def check() -> None:
    """Raise OSError with a one-line reason when no libfuse can be loaded."""
    if libfuse3() is None:
        load()


def major_version() -> int:
    """2 or 3: the major version of the libfuse a mount uses (mfusepy's, or
    the libfuse 3 archfs chose itself, which mfusepy then loads too)."""
    if libfuse3() is not None:
        return 3
    return load().fuse_version_major


def fusermount_names():
    """The fusermount helpers that fit the loaded libfuse, best first."""
    if major_version() == 3:
        return ("fusermount3", "fusermount")
    return ("fusermount", "fusermount3")


def find_fusermount():
    """Path of a fusermount helper, or None."""
    for name in fusermount_names():
        path = _which(name)
        if path:
            return path
    return None


def _which(name: str):
    """shutil.which for a plain command name (shutil imports bz2, lzma and
    fnmatch, a mount's start-up cost)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
