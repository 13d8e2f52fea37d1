"""``archfs repair`` for tars: an interrupted commit or rewrite finished or
cut off, a damaged tail ended (and what followed saved beside it)."""

import os
import time

from archfs.tarengine import headers as hd
from archfs.tarengine import tailrewrite
from archfs.tarengine.store import TarStore

COPY_CHUNK = 1 << 20


def repair(path: str, progress=None) -> str:
    """Make an interrupted archive whole: cut an unfinished commit off, or
    end the archive at a damaged header (what follows is saved beside it)."""
    from archfs.tarengine.store import StoreOptions as _Options
    finished = tailrewrite.apply_pending(path)
    store = TarStore(path, False, _Options(progress=progress, index_cache=False))
    try:
        end, problem, kind = store.end, store.scan_problem, store.compression
        size = store._file.size()
        members = len(store.table)
    finally:
        store.close()
    if kind is not None:
        from archfs.tarengine.recompress import repair_compressed
        return repair_compressed(path, progress)
    with open(path, "r+b") as f:
        f.seek(end)
        tail = f.read(hd.BLOCK * 2)
        if problem is None and tail[:hd.BLOCK].strip(b"\0") == b"" and \
                tail[hd.BLOCK:].strip(b"\0") == b"" and size >= end + 2 * hd.BLOCK:
            return finished or "%s: nothing to repair (%d members)" % (path, members)
        saved = ""
        if problem is not None and size > end:
            keep = "%s.damaged-%s" % (path, time.strftime("%Y%m%d-%H%M%S"))
            with open(keep, "wb") as out:
                f.seek(end)
                while True:
                    chunk = f.read(COPY_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            saved = "; the %d bytes after it are saved in %s" % (size - end, keep)
        stop = -(-(end + 2 * hd.BLOCK) // hd.RECORD) * hd.RECORD
        f.seek(end)
        f.write(bytes(stop - end))
        f.truncate(stop)
        f.flush()
        os.fsync(f.fileno())
    why = problem or "an unfinished commit"
    return "%s: ended the archive after its %d good members (%s)%s" % (path, members, why,
                                                                      saved)
