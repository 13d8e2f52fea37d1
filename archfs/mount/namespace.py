"""Namespace changes over open files: mkdir, symlink, mknod, link, unlink,
rmdir, rename, and libfuse's hiding of files unlinked while open.

Part of ``OpenFiles`` (a mixin sharing its table and locks; see
``openfiles.py`` for the locking rules). Before a change touches a path,
unsaved content at or below it is copied back, so the plugin sees the
current state; entries are then moved or dropped to match. Every change of
a name also moves its directory's mtime and ctime (``_touch_parent``).
"""

import contextlib
from typing import Iterator, List

from archfs.archives.abstractarchive import AbstractArchive
from archfs.errors import DirectoryNotEmpty, FileAlreadyExistsError, NotSupported
from archfs.mount.entry import Entry, is_hidden_name


def below(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or inside it (``""`` is the root)."""
    return top == "" or path == top or path.startswith(top + "/")



class Namespace:
    """Part of OpenFiles: the calls that make, move and remove names."""

    def _entriesbelow(self, top: str) -> List[Entry]:
        with self._table_lock:
            return sorted((e for p, e in self._table.items() if below(p, top)),
                          key=lambda e: e.path)

    @contextlib.contextmanager
    def _locked(self, entries: List[Entry]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for entry in entries:
                stack.enter_context(entry.lock)
            yield

    def _keep_content(self, entry: Entry) -> None:
        """(caller holds the entry's lock) Before the archive loses the member
        of an open entry, keep what its handles need: the content, copied
        locally, when a writer may change it; else its attributes (readers
        go on reading the member through the plugin's open reader)."""
        if not entry.handles or entry.wfile is not None or not entry.in_archive:
            return
        if entry.writers:
            self._materialize(entry)
        else:
            entry.snapshot = self.archive.stat(entry.path)

    def _detach(self, entry: Entry) -> None:
        """Take an entry out of the table as removed (caller holds its lock);
        open handles keep working on it until released."""
        with self._table_lock:
            if self._table.get(entry.path) is entry:
                del self._table[entry.path]
            entry.unlinked = True
            idle = entry.handles == 0
            if idle:
                entry.retired = True
        if idle:
            self._drop_local(entry)

    def _check_free(self, path: str) -> None:
        if self._live_entry(path) is not None:
            raise FileAlreadyExistsError("exists already: %s" % path)

    def mkdir(self, path: str, mode: int, owner=None) -> None:
        self._check_writable()
        with self._namespace:
            self._check_free(path)
            self.on_change()
            self.archive.mkdir(path, mode & 0o7777, **_owner_kw(owner))
            self._touch_parent(path)

    def symlink(self, target: str, path: str, owner=None) -> None:
        self._check_writable()
        with self._namespace:
            self._check_free(path)
            self.on_change()
            self.archive.symlink(target, path, **_owner_kw(owner))
            self._touch_parent(path)

    def mknod(self, path: str, mode: int, rdev: int, owner=None) -> None:
        """A FIFO, socket or device node (the kernel let only root make devices)."""
        self._check_writable()
        with self._namespace:
            self._check_free(path)
            self.on_change()
            self.archive.mknod(path, mode, rdev, **_owner_kw(owner))
            self._touch_parent(path)

    def link(self, target: str, path: str) -> None:
        """A hard link: unsaved content of ``target`` is copied back first."""
        self._check_writable()
        with self._namespace:
            if self._exists(path):
                raise FileAlreadyExistsError("exists already: %s" % path)
            if type(self.archive).link is AbstractArchive.link:     # before any copy-back
                raise NotSupported("hard links are not supported by %s" % self.archive.name)
            entry = self._live_entry(target)
            if entry is not None:
                with entry.lock:
                    if entry.dirty and not entry.unlinked:
                        self._copy_back_locked(entry, force=True)
            self.on_change()
            self.archive.link(target, path)
            self._touch_parent(path)
        self.cache.changed(path)

    def unlink(self, path: str) -> None:
        self._check_writable()
        with self._namespace:
            entry = self._live_entry(path)
            if entry is None:
                if is_hidden_name(path):
                    try:
                        self.archive.stat(path)
                    except FileNotFoundError:
                        return      # libfuse's unlink of a hidden entry already gone
                self.on_change()
                self.archive.remove(path)
            else:
                with entry.lock:  # waits for a copy-back under way
                    if entry.in_archive:
                        self._keep_content(entry)
                        self.on_change()
                        self.archive.remove(path)
                    self._detach(entry)
            if not is_hidden_name(path):
                self._touch_parent(path)
        self.cache.changed(path)

    def rmdir(self, path: str) -> None:
        self._check_writable()
        with self._namespace:
            for entry in self._entriesbelow(path):
                if entry.path != path and not entry.unlinked:
                    if not entry.in_archive:
                        raise DirectoryNotEmpty("directory not empty: %s" % path)
            self.on_change()
            self.archive.rmdir(path)
            self._dir_times.pop(path, None)
            self._touch_parent(path)

    def _exists(self, path: str) -> bool:
        if self._live_entry(path) is not None:
            return True
        try:
            self.archive.stat(path)
        except FileNotFoundError:
            return False
        return True

    def hide(self, path: str, hidden: str) -> None:
        """libfuse's rename of a file unlinked (or renamed over) while open
        to a hidden name: the member leaves the archive as by unlink, and
        the entry lives on under ``hidden`` until the last close."""
        self._check_writable()
        with self._namespace:
            entry = self._live_entry(path)
            if entry is None or not entry.handles:
                # not open here: a user's rename to such a name, or a file
                # closed just now (libfuse counts the open until after our
                # release, then unlinks the hidden name): a plain rename is
                # right for both
                self.rename(path, hidden)
                return
            with entry.lock:        # dirty content stays local: it never reaches the archive
                if entry.in_archive:
                    self._keep_content(entry)
                    self.on_change()
                    self.archive.remove(path)
                with self._table_lock:
                    if self._table.get(path) is entry:
                        del self._table[path]
                    entry.path = hidden
                    entry.in_archive = False
                    entry.unlinked = True
                    if entry.wfile is not None:
                        entry.wfile.member = hidden
                    self._table[hidden] = entry
            self._touch_parent(path)
        self.cache.changed(path)

    def rename(self, old: str, new: str, noreplace: bool = False) -> None:
        """rename(2): settle both sides, let the plugin move, then follow."""
        self._check_writable()
        with self._namespace:
            if noreplace and self._exists(new):
                raise FileAlreadyExistsError("exists already: %s" % new)
            moving = self._entriesbelow(old)
            replaced = [e for e in self._entriesbelow(new) if not below(e.path, old)]
            with self._locked(sorted(moving + replaced, key=lambda e: e.path)):
                for entry in moving + replaced:
                    if entry.dirty and not entry.unlinked:
                        self._copy_back_locked(entry, force=True)
                for entry in replaced:
                    self._keep_content(entry)
                self.on_change()
                self.archive.rename(old, new)
                for entry in replaced:
                    self._detach(entry)
                with self._table_lock:
                    listed = [e for e in moving if self._table.get(e.path) is e]
                    for entry in listed:
                        del self._table[entry.path]
                    for entry in moving:
                        entry.path = new + entry.path[len(old):]
                        if entry.wfile is not None:
                            entry.wfile.member = entry.path
                    for entry in listed:     # hidden ones too: they live in the table
                        if not entry.retired:
                            self._table[entry.path] = entry
                for entry in moving:
                    if entry.path == new:
                        entry.changed()
            self._move_dir_times(old, new)
            self._touch_parent(old)
            self._touch_parent(new)
        self.cache.renamed()

    def _move_dir_times(self, old: str, new: str) -> None:
        for path in [p for p in self._dir_times if below(p, new) or below(p, old)]:
            changed = self._dir_times.pop(path)
            if below(path, old) and old:
                self._dir_times[new + path[len(old):]] = changed


def _owner_kw(owner) -> dict:
    """The ``owner`` keyword for the plugin, only when there is one (the
    mount gives owners only to plugins that set ``keeps_owners``)."""
    return {} if owner is None else {"owner": owner}
