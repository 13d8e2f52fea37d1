"""``archfs repair`` and ``archfs compact``: work on an archive that is not
mounted, through the plugin API, with a progress bar on a terminal."""

import logging
import os
import time

from archfs.archives import archive_class
from archfs.progress import ProgressBar

log = logging.getLogger("archfs")


def repair(path: str, quiet: bool = False) -> int:
    """Repair the archive at ``path``; prints what was done."""
    started = time.monotonic()
    bar = ProgressBar(enabled=None if not quiet else False)
    try:
        detail = archive_class(path).repair(path, bar)
    finally:
        bar.finish()
    log.info("repair of %s took %.1f s", path, time.monotonic() - started)
    if not quiet:
        print(detail)
    return 0


def compact(path: str, quiet: bool = False) -> int:
    """Reclaim the dead space of the archive at ``path``; prints the sizes,
    or that there was too little to be worth it (and changes nothing)."""
    started = time.monotonic()
    bar = ProgressBar(enabled=None if not quiet else False)
    archive = archive_class(path)(url=path, mode="a", opts={"progress": bar})
    size = _size_of(archive, path)
    before = size()
    try:
        done = archive.compact()
        detail = getattr(archive, "compaction_detail", "")
        after = size()
    finally:
        bar.finish()
        archive.close()
    log.info("compaction of %s took %.1f s", path, time.monotonic() - started)
    if not quiet:
        if done is False:
            print("%s: left as it is (%s)" % (path, detail or "nothing to reclaim"))
        else:
            print("%s: %s -> %s bytes" % (path, "{:,}".format(before), "{:,}".format(after)))
    return 0


def _size_of(archive, path: str):
    """The archive's size: of the local file, or of a remote one's transport."""
    transport = getattr(archive, "transport", None)
    if transport is not None and not getattr(transport, "is_local", True):
        return transport.size
    return lambda: os.path.getsize(path)
