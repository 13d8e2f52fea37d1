"""Low-level requests about names: lookup, attributes, and the calls that
make, remove and move names."""

import errno
import stat as _stat

from archfs.mount import fusell as ll
from archfs.mount.llcommon import _NS, pin_thread_state, pinned, request

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class NameRequests:
    """Mixed into LowLevelFUSE."""

    @request
    def _lookup(self, req, parent, raw):
        name = self._name(raw)
        path = self._child(parent, name)
        attrs = self.operations.lookup(path)
        if attrs is None:
            if self.negative_timeout > 0:
                ll.reply_entry(req, self._negative)
            else:
                ll.reply_err(req, errno.ENOENT)
            return
        self._reply_entry(req, parent, name, attrs)
        if not _stat.S_ISDIR(attrs["st_mode"]):
            self._plus.looked_up(parent)

    def _forget(self, req, ino, nlookup):
        if not pinned():
            pin_thread_state()
        self.inodes.forget(ino, nlookup)
        ll.reply_none(req)

    def _forget_multi(self, req, count, forgets):
        if not pinned():
            pin_thread_state()
        forget = self.inodes.forget
        for i in range(count):
            item = forgets[i]
            forget(item.ino, item.nlookup)
        ll.reply_none(req)

    @request
    def _getattr(self, req, ino, fi):
        path = self.inodes.path(ino)
        fh = self._fi_of(ino, fi) if path is None else self._fi(fi)
        if path is None and fh is None:
            raise FileNotFoundError(errno.ENOENT, "no such inode %d" % ino)
        attrs = self.operations.getattr(path, fh)
        ll.reply_attr(req, ll.STAT.pack(*self._stat_fields(attrs, ino)), self.attr_timeout)

    @request
    def _setattr(self, req, ino, attr, to_set, fi):
        ops = self.operations
        path = self.inodes.path(ino)
        fh = self._fi_of(ino, fi)
        if path is None and fh is None:
            raise FileNotFoundError(errno.ENOENT, "no such inode %d" % ino)
        st = attr.contents
        # an inode whose name is gone (fchmod, fchown, futimens of a removed
        # file) is changed through its open handle
        by_handle = () if path is not None else (fh,)
        if to_set & ll.SET_ATTR_MODE:
            ops.chmod(path, st.st_mode, *by_handle)
        if to_set & (ll.SET_ATTR_UID | ll.SET_ATTR_GID):
            ops.chown(path, st.st_uid if to_set & ll.SET_ATTR_UID else -1,
                      st.st_gid if to_set & ll.SET_ATTR_GID else -1, *by_handle)
        if to_set & ll.SET_ATTR_SIZE:
            ops.truncate(path, st.st_size, fh)
        if to_set & (ll.SET_ATTR_ATIME | ll.SET_ATTR_MTIME):
            ops.utimens(path, (self._time(st.st_atimespec, to_set, ll.SET_ATTR_ATIME,
                                          ll.SET_ATTR_ATIME_NOW),
                               self._time(st.st_mtimespec, to_set, ll.SET_ATTR_MTIME,
                                          ll.SET_ATTR_MTIME_NOW)), *by_handle)
        attrs = ops.getattr(path, fh)
        ll.reply_attr(req, ll.STAT.pack(*self._stat_fields(attrs, ino)), self.attr_timeout)

    @staticmethod
    def _time(ts, to_set, given, now):
        """What mfusepy passes utimens: ns, or UTIME_NOW / UTIME_OMIT."""
        if to_set & now:
            return UTIME_NOW
        if to_set & given:
            return ts.tv_sec * _NS + ts.tv_nsec
        return UTIME_OMIT

    @request
    def _readlink(self, req, ino):
        target = self.operations.readlink(self._path(ino))
        ll.reply_readlink(req, target.encode(self.encoding, self.errors))

    @request
    def _mkdir(self, req, parent, raw, mode):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.mkdir(path, mode)
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @request
    def _mknod(self, req, parent, raw, mode, rdev):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.mknod(path, mode, rdev)
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @request
    def _symlink(self, req, target, parent, raw):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.symlink(path, self._name(target))
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @request
    def _link(self, req, ino, new_parent, raw):
        name = self._name(raw)
        path = self._child(new_parent, name)
        self.operations.link(path, self._path(ino))     # mfusepy order: new name first
        self._reply_entry(req, new_parent, name, self.operations.getattr(path))

    @request
    def _unlink(self, req, parent, raw):
        name = self._name(raw)
        self.operations.unlink(self._child(parent, name))
        self.inodes.unlinked(parent, name)
        ll.reply_err(req, 0)

    @request
    def _rmdir(self, req, parent, raw):
        name = self._name(raw)
        self.operations.rmdir(self._child(parent, name))
        self.inodes.unlinked(parent, name)
        ll.reply_err(req, 0)

    @request
    def _rename(self, req, parent, raw, new_parent, new_raw, flags):
        name, new_name = self._name(raw), self._name(new_raw)
        self.operations.rename(self._child(parent, name), self._child(new_parent, new_name),
                               flags)
        self.inodes.moved(parent, name, new_parent, new_name)
        ll.reply_err(req, 0)
