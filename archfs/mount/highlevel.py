"""mfusepy's high-level binding of libfuse, for where the low-level one
cannot run (libfuse 2, or ``ARCHFS_FUSE_API=high``): imported only then,
since mfusepy and what it imports are a noticeable part of a mount's start."""

import ctypes
import threading
from itertools import repeat
from operator import itemgetter, methodcaller

from archfs.mount import fuselib
from archfs.mount.operations import _name, path_ino

mfusepy = fuselib.load()


class ArchfsFUSE(mfusepy.FUSE):
    """mfusepy's FUSE with three changes:

    - rename's flags are passed on (libfuse3 gives them; mfusepy drops them,
      which would turn ``mv -n`` into an overwriting rename);
    - readdir hands entries to libfuse with the loop running in C (``map``
      and ``any``): a walk of a million-member archive calls the filler a
      million times, and mfusepy's general Python loop costs several times
      as much per entry. (Kernel caching of listings, ``cache_readdir``, is
      not available: libfuse's high-level opendir does not pass it on.)
    - each libfuse thread keeps its Python thread state between calls
      (``_wrapper``), which cuts the round trip of a request several-fold.
    """

    def _wrapper(self, func, *args, **kwargs):
        if not getattr(_thread_state, "pinned", False):
            # libfuse calls from its own threads; ctypes then makes and frees
            # a Python thread state around every call, which costs more than
            # most calls themselves. One extra, never released PyGILState_Ensure
            # keeps this thread's state for the life of the thread.
            ctypes.pythonapi.PyGILState_Ensure()
            _thread_state.pinned = True
        return super()._wrapper(func, *args, **kwargs)

    def rename_fuse_3(self, old, new, flags):
        return self.operations.rename(old.decode(self.encoding, self.errors),
                                      new.decode(self.encoding, self.errors), flags)

    def _readdir(self, path, buf, filler, offset, fip):
        entries = self.operations.readdir(
            None if path is None else path.decode(self.encoding, self.errors), fip.contents.fh)
        if self.operations.uses_inodes:
            return self._readdir_numbered(path, entries, buf, filler)
        names = map(methodcaller("encode", self.encoding, self.errors), map(_first, entries))
        stats = map(_STATS.__getitem__, map(_second, entries))
        # The filler is called through an untyped pointer with arguments that
        # are ctypes objects already: ctypes then converts nothing, which
        # halves the cost of each of the million calls a big archive needs.
        raw = _raw_filler(filler)
        tail = (repeat(_ZERO_OFFSET), repeat(_NO_FLAGS)) if mfusepy.fuse_version_major == 3 \
            else (repeat(_ZERO_OFFSET),)
        # filler returns non-zero when libfuse's buffer is full: any() stops there
        any(map(raw, repeat(ctypes.c_void_p(buf)), names, stats, *tail))
        return 0


    def _readdir_numbered(self, path, entries, buf, filler):
        """readdir with inode numbers (``use_ino``: an entry numbered 0 would
        be hidden), the plugin's where it gives them; one stat buffer is
        refilled per entry, libfuse copies it at once."""
        directory = _name(path.decode(self.encoding, self.errors)) if path else ""
        prefix = directory + "/" if directory else ""
        try:
            numbers = self.operations.archive.inodes(directory)
        except OSError:
            numbers = {}
        st = mfusepy.c_stat()
        pointer = ctypes.c_void_p(ctypes.addressof(st))
        raw = _raw_filler(filler)
        tail = (_ZERO_OFFSET, _NO_FLAGS) if mfusepy.fuse_version_major == 3 else (_ZERO_OFFSET,)
        target = ctypes.c_void_p(buf)
        for entry in entries:
            name = entry[0]
            st.st_mode = entry[1]
            number = numbers.get(name)
            if number is not None:
                st.st_ino = number
            elif name in (".", ".."):
                st.st_ino = path_ino(directory if name == "." else directory.rpartition("/")[0])
            else:
                st.st_ino = path_ino(prefix + name)
            if raw(target, name.encode(self.encoding, self.errors), pointer, *tail):
                break
        return 0


_thread_state = threading.local()
_first, _second = itemgetter(0), itemgetter(1)


class _StatsByMode(dict):
    """A pointer to one shared c_stat per st_mode value: readdir passes only
    the mode. The c_stat objects are kept alive in ``_KEEP``."""

    def __missing__(self, mode):
        st = mfusepy.c_stat()
        st.st_mode = mode
        _KEEP.append(st)
        pointer = self[mode] = ctypes.c_void_p(ctypes.addressof(st))
        return pointer


_KEEP = []
_STATS = _StatsByMode()
_ZERO_OFFSET = ctypes.c_int64(0)
_NO_FLAGS = ctypes.c_int(0)
_RAW_FILLERS = {}


def _raw_filler(filler):
    """The libfuse filler behind mfusepy's typed wrapper, as an untyped pointer."""
    address = ctypes.cast(filler, ctypes.c_void_p).value
    raw = _RAW_FILLERS.get(address)
    if raw is None:
        raw = _RAW_FILLERS[address] = ctypes.CFUNCTYPE(ctypes.c_int)(address)
    return raw
