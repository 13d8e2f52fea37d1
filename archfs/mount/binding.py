"""Which FUSE binding serves a mount.

archfs's own binding of libfuse's low-level API (``lowlevel.py``) where the
loaded libfuse is version 3; mfusepy's high-level binding (``ArchfsFUSE``)
otherwise. Both drive the same ``ArchiveOperations``. ``ARCHFS_FUSE_API=high``
(or ``low``) chooses one explicitly: the tests run the mount tests through
both.
"""

import logging
import os

log = logging.getLogger("archfs.mount")


def chosen() -> str:
    """``low`` or ``high``: the binding a mount started now would use."""
    from archfs.mount import lowlevel

    want = os.environ.get("ARCHFS_FUSE_API", "").strip().lower()
    if want == "high" or not lowlevel.available():
        return "high"
    return "low"


def serve(operations, mountpoint: str, **options) -> None:
    """Mount and serve ``operations`` until unmounted (mfusepy's FUSE options)."""
    if chosen() == "low":
        from archfs.mount.lowlevel import LowLevelFUSE
        log.debug("serving through libfuse's low-level API")
        LowLevelFUSE(operations, mountpoint, **options)
    else:
        options.pop("file_readahead", None)     # needs notify_store (low-level only)
        from archfs.mount.highlevel import ArchfsFUSE
        log.debug("serving through libfuse's high-level API (mfusepy)")
        ArchfsFUSE(operations, mountpoint, **options)
