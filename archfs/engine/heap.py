"""How the C allocator hands memory back: kept for reuse, not returned page by page.

A decoder returns each piece of output (a few hundred KB) as a new object.
glibc serves blocks that size from fresh ``mmap`` mappings (or gives the
top of its heap back once freed), so every piece is faulted in page by
page, zero-filled, and unmapped again: measured on the bench's 1 GiB
deflated member, decoded in order in one thread, ~500 MB/s with a sixth of
the time in page faults, ~730 MB/s with blocks up to ``MMAP_THRESHOLD``
taken from the heap and up to ``TRIM_THRESHOLD`` of free heap kept.
What stays kept is bounded by the largest burst of live pieces (the
readers' windows), a few tens of MB.
"""

import ctypes
import logging

log = logging.getLogger("archfs")

M_TRIM_THRESHOLD = -1      # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 32 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed blocks; False where it is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt     # the process's own C library
    except (OSError, AttributeError):       # another C library (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        log.debug("mallopt refused the heap thresholds")
    return ok
