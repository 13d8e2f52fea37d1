"""Warming the page cache for a mount's start, in parallel with it.

After a reboot (or with the page cache dropped) most of a second mount's
time is spent waiting for the disk: the interpreter reads a few hundred
files (compiled modules, extension modules, shared libraries, the
directories the importer lists), one after the other, each only when the
import before it has run. The files are the same on every mount, so the
daemon writes their names down once the mount is live (``record``), and
the next ``archfs mount`` forks a helper at its very start (``prefetch``)
that asks the kernel for all of them (``posix_fadvise`` WILLNEED queues a
file's reads; a few threads wait for the inodes), then for the saved
index and the head and tail of the archive. The mount then finds most of
what it needs already read, or on its way, instead of waiting for each
read in turn.

The list is only a hint: a missing or stale one costs nothing but the
reads it names, and nothing in it is ever executed or trusted.
"""

import os
import sys

VERSION = "1"
MAX_FILES = 2000
THREADS = 4
MAX_SIZE = 4 << 20        # files larger than this are left out of the list
ENDS = 1 << 16            # bytes at each end of the archive (headers, zip's end record)

_helper = []              # the PID of this process's prefetch helper, until reaped


def _cache_base() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "archfs")


def manifest_path() -> str:
    return os.path.join(_cache_base(), "startup-files")


def _key() -> str:
    """Which interpreter and which archfs the list was made by."""
    import archfs
    return "archfs-startup %s %s %s %s" % (VERSION, archfs.__version__, sys.executable,
                                           os.path.dirname(os.path.abspath(archfs.__file__)))


# -- the daemon: writing the list ------------------------------------------------

def snapshot() -> tuple:
    """What ``record`` needs of this moment (module names, mapped files): cheap,
    for the moment a mount goes live; recorded later."""
    try:
        with open("/proc/self/maps") as maps:
            mapped = maps.read()
    except OSError:
        mapped = ""
    return list(sys.modules), mapped


def loaded_files(modules=None, mapped=None) -> list:
    """The files this process has read to get where it is, in import order:
    the directories the importer listed, compiled and extension modules
    (of ``modules``, names in import order; default: all), then the shared
    libraries it maps."""
    seen = set()
    out = []

    def add(path):
        if path and path not in seen:
            seen.add(path)
            try:
                if os.path.getsize(path) > MAX_SIZE:   # a library a first mount needed
                    return                             # (indexing): not worth reading
            except OSError:
                return
            out.append(path)

    for entry in sys.path:
        if entry and os.path.isdir(entry):
            add(os.path.abspath(entry))
    table = sys.modules
    for name in list(table if modules is None else modules):
        module = table.get(name)
        source = getattr(module, "__file__", None)
        if not isinstance(source, str):
            continue
        if getattr(getattr(module, "__spec__", None), "origin", None) == "frozen":
            continue                                  # inside the interpreter
        cached = getattr(module, "__cached__", None)
        if getattr(module, "__path__", None) is not None:
            add(os.path.dirname(source))              # a package: its directory is listed
        add(cached if isinstance(cached, str) and os.path.exists(cached) else source)
    # the plugin registry's entry_points.txt files: a dozen small reads, cold
    for path in getattr(table.get("archfs.archives"), "entry_point_files", ()):
        add(path)
    if mapped is None:
        try:
            with open("/proc/self/maps") as maps:
                mapped = maps.read()
        except OSError:
            mapped = ""
    for line in mapped.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and ".so" in fields[5]:
            add(fields[5])
    return out[:MAX_FILES]


def record(moment=None) -> None:
    """Write down what this process had loaded at ``moment`` (a ``snapshot``;
    default: now), when it differs from the list saved before (silently
    skipped when it cannot be)."""
    try:
        text = "\n".join([_key()] + loaded_files(*(moment or ()))) + "\n"
        path = manifest_path()
        try:
            with open(path) as f:
                if f.read() == text:
                    return
        except OSError:
            pass
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except (OSError, ValueError, UnicodeError):
        pass


# -- the command: reading ahead ------------------------------------------------------

def prefetch(archive: str) -> None:
    """Fork a helper that asks the kernel to read what the mount of
    ``archive`` will need; returns at once. Nothing happens where fork or
    posix_fadvise is missing, or ``ARCHFS_NO_PREFETCH`` is set."""
    if os.environ.get("ARCHFS_NO_PREFETCH") or not hasattr(os, "posix_fadvise") \
            or not hasattr(os, "fork") or _helper:
        return
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        _helper.append(pid)
        return
    try:       # the helper: never hold the caller's pipes open, never raise
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        _read_ahead(archive)
    except BaseException:
        pass
    os._exit(0)


def disown() -> None:
    """In a forked daemon: the helper is the command's child, not ours."""
    _helper.clear()


def reap() -> None:
    """Collect the helper if it has ended (it does so within moments)."""
    for pid in list(_helper):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _helper.remove(pid)


def _advise(path: str, offset: int = 0, length: int = 0) -> None:
    """Ask for a regular file's bytes (a FIFO or device named in a damaged
    list is opened without waiting and left alone)."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_ahead(archive: str) -> None:
    files, dirs = [], []
    try:
        with open(manifest_path()) as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeError):
        lines = []
    if lines and lines[0] == _key():
        for path in lines[1:MAX_FILES + 1]:
            if path.startswith("/"):
                (files if path.endswith((".pyc", ".so", ".py", ".txt")) or ".so." in path
                 else dirs).append(path)
    # Opening a file whose inode is not cached waits for the disk: several
    # threads keep several such reads in flight (they wait outside the GIL).
    import threading
    work = [threading.Thread(target=_list_dirs, args=(dirs,), daemon=True)]
    work += [threading.Thread(target=_advise_all, args=(files[i::THREADS],), daemon=True)
             for i in range(THREADS)]
    for thread in work:
        thread.start()
    if "://" not in archive:          # needed after the modules: asked for meanwhile
        _advise_archive(archive)
        for path in index_files(archive):
            _advise(path)
    for thread in work:
        thread.join()


def _advise_all(paths) -> None:
    for path in paths:
        _advise(path)


def _list_dirs(paths) -> None:
    for path in paths:
        try:
            os.listdir(path)         # what the importer lists (and the path to it)
        except OSError:
            pass


def _advise_archive(archive: str) -> None:
    try:
        size = os.stat(archive).st_size
    except OSError:
        return
    _advise(archive, 0, ENDS)
    if size > ENDS:
        _advise(archive, size - ENDS, ENDS)


def index_files(archive: str) -> list:
    """Where a saved index of ``archive`` would be in the default directory,
    for each format that keeps one: ``archfs.engine.indexcache.cache_file``'s
    names, made here without importing it (its imports are what the helper
    should be reading ahead, not waiting for)."""
    name = os.path.realpath(archive).encode("utf-8", "surrogateescape")
    digest = None
    for module in ("_sha2", "_sha256"):         # 3.12 and later, 3.10-3.11
        try:
            digest = __import__(module).sha256(name).hexdigest()[:32]
            break
        except (ImportError, AttributeError):
            continue
    if digest is None:
        import hashlib
        digest = hashlib.sha256(name).hexdigest()[:32]
    base = os.path.join(_cache_base(), "index", digest)
    return [base + ".idx", base + ".tar.idx"]
