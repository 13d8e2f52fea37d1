"""Which libfuse archfs runs on, chosen before mfusepy is imported.

mfusepy loads libfuse2 when both libfuse2 and libfuse3 are installed; archfs
prefers libfuse3 (the maintained one, the only one on new systems). mfusepy
reads ``FUSE_LIBRARY_PATH``/``FUSE_LIBRARY_NAME`` at import time, so this
module sets one first.
A user's own ``FUSE_LIBRARY_NAME`` or ``FUSE_LIBRARY_PATH`` wins.
"""

import os


FUSE3_SONAME = "libfuse3.so.3"


def _prefer_fuse3() -> None:
    if os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME"):
        return
    import ctypes                          # here: `archfs unmount` never needs ctypes
    try:
        # the dynamic loader finds it at once; find_library would run
        # `ldconfig -p` (a fork and exec, twice with mfusepy's own look-up)
        ctypes.CDLL(FUSE3_SONAME)
    except OSError:
        pass
    else:
        os.environ["FUSE_LIBRARY_PATH"] = FUSE3_SONAME
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


def major_version() -> int:
    """2 or 3: the major version of the libfuse mfusepy loaded."""
    return load().fuse_version_major


def fusermount_names():
    """The fusermount helpers that fit the loaded libfuse, best first."""
    if major_version() == 3:
        return ("fusermount3", "fusermount")
    return ("fusermount", "fusermount3")


def find_fusermount():
    """Path of a fusermount helper, or None."""
    import shutil
    for name in fusermount_names():
        path = shutil.which(name)
        if path:
            return path
    return None
