"""A model-based test of the zip plugin: random sequences of add, replace,
remove, rename (files and directories), mkdir, rmdir, symlink, chmod, commit
and reopen, checked against a plain dict that behaves like a POSIX tree.

Names come from a two-letter alphabet up to three levels deep (nine paths
in all), so a random step
often lands on an existing name: replacing, renaming onto files and
directories, file/directory clashes and moves into a directory's own
subtree all happen. After every reopen the archive must equal the model
(names, contents, kinds, permission bits) and pass zipfile's testzip and
``unzip -t``.
"""

import itertools
import os
import shutil
import stat
import tempfile
import zipfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import (
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
)
from zip_builders import pseudo_random, unzip_test

PATHS = ["/".join(p) for depth in (1, 2) for p in itertools.product("ab", repeat=depth)]
PATHS += ["a/a/a", "a/b/a", "b/a/b"]
paths = st.sampled_from(PATHS)
datas = st.one_of(st.sampled_from([b"", b"x", b"same content"]), st.binary(max_size=200))
modes = st.sampled_from([0o600, 0o644, 0o755, 0o400])

FILE, DIR, LINK = "file", "dir", "link"
OPS = ["write", "write", "rename", "rename", "remove", "mkdir", "rmdir", "chmod", "symlink",
       "add_large"]


def parent(path):
    return path.rpartition("/")[0]


def ancestors(path):
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class ZipModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="archfs-stateful-")
        self.path = os.path.join(self.dir, "model.zip")
        self.archive = ZipfileArchive(url=self.path, mode="w")
        self.model = {}       # path -> (kind, content or target, mode)
        self.reopens = 0
        self.clean = True     # False while a step runs: a failed step skips the final check

    def teardown(self):
        """Every example ends with a last close, check and reopen."""
        try:
            if not self.clean:
                return
            self.clean = False
            self.archive.close()
            self.check_archive_file()
            self.archive = ZipfileArchive(url=self.path, mode="r")
            self.check_contents()
            self.archive.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model's view of a path ---------------------------------------------------

    def kind(self, path):
        entry = self.model.get(path)
        return entry[0] if entry else None

    def blocked_by_file(self, path):
        return any(self.kind(a) in (FILE, LINK) for a in ancestors(path))

    def absent_errors(self, path):
        """What an operation on a path that does not exist may raise."""
        return {NoSuchFile, NotADirectory} if self.blocked_by_file(path) else {NoSuchFile}

    def missing_parent(self, path):
        return any(self.kind(a) is None for a in ancestors(path))

    def children(self, path):
        return [p for p in self.model if p.startswith(path + "/")]

    def add_parents(self, path):
        for a in ancestors(path):
            if a not in self.model:
                self.model[a] = (DIR, None, 0o755)

    def pick(self, draw, kinds=(FILE, DIR, LINK)):
        """Mostly an existing path of one of ``kinds``, sometimes any path."""
        existing = sorted(p for p, e in self.model.items() if e[0] in kinds)
        if existing and draw(st.integers(0, 3)):
            return draw(st.sampled_from(existing))
        return draw(paths)

    def pick_target(self, draw):
        """Mostly a path whose parent exists (so a rename can land), sometimes any."""
        placeable = [p for p in PATHS if self.kind(parent(p)) == DIR or not parent(p)]
        if draw(st.integers(0, 3)):
            return draw(st.sampled_from(placeable))
        return draw(paths)

    def expect(self, errors, call):
        """Run ``call``: it must raise one of ``errors`` if any apply, else succeed.
        Returns True when it succeeded."""
        if errors:
            try:
                call()
            except tuple(errors):
                return False
            raise AssertionError("expected one of %s" % sorted(e.__name__ for e in errors))
        call()
        return True

    # -- rules ------------------------------------------------------------------------------
    # One rule draws which change to make, so Hypothesis's swarm testing (which
    # switches whole rules off per example) cannot starve any kind of change.

    @rule(ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=3), data=st.data())
    def change(self, ops, data):
        self.clean = False
        for op in ops:
            getattr(self, "op_" + op)(lambda strategy: data.draw(strategy, label=op))
        self.clean = True

    # -- the changes ------------------------------------------------------------------------

    def op_write(self, draw):
        """writedata: create or replace a file; missing parents are implied."""
        path, data = draw(paths), draw(datas)
        errors = set()
        if self.blocked_by_file(path):
            errors.add(NotADirectory)
        elif self.kind(path) == DIR:
            errors.add(IsADirectory)
        if self.expect(errors, lambda: self.archive.writedata(path, data)):
            old = self.model.get(path)
            mode = old[2] if old and old[0] == FILE else 0o644
            if old and old[0] == LINK:
                mode = None           # bits of a file that replaced a symlink: not pinned
            self.add_parents(path)
            self.model[path] = (FILE, data, mode)

    def op_add_large(self, draw):
        """add_localfile of a file over 1 MiB (the streaming path); never replaces."""
        path, seed = draw(paths), draw(st.integers(0, 3))
        data = pseudo_random((1 << 20) + 1000 * seed, seed, alphabet=8)
        local = os.path.join(self.dir, "local")
        with open(local, "wb") as f:
            f.write(data)
        errors = set()
        if self.blocked_by_file(path):
            errors.add(NotADirectory)
        elif self.kind(path) == DIR:
            errors.update((IsADirectory, FileAlreadyExistsError))
        elif self.kind(path) is not None:
            errors.add(FileAlreadyExistsError)
        if self.expect(errors, lambda: self.archive.add_localfile(local, path)):
            self.add_parents(path)
            self.model[path] = (FILE, data, 0o644)

    def op_symlink(self, draw):
        path, link_to = draw(paths), draw(st.sampled_from(["a", "../b", "a/b/target"]))
        errors = set()
        if self.blocked_by_file(path):
            errors.add(NotADirectory)
        elif self.kind(path) is not None:
            errors.add(FileAlreadyExistsError)
        if self.missing_parent(path) and not errors:
            errors.add(NoSuchFile)
            try:       # POSIX says ENOENT; implying the parents is tolerated
                self.archive.symlink(link_to, path)
            except NoSuchFile:
                return
            self.add_parents(path)
            self.model[path] = (LINK, link_to.encode(), 0o777)
            return
        if self.expect(errors, lambda: self.archive.symlink(link_to, path)):
            self.model[path] = (LINK, link_to.encode(), 0o777)

    def op_remove(self, draw):
        path = self.pick(draw, (FILE, LINK))
        errors = set()
        kind = self.kind(path)
        if kind == DIR:
            errors.add(IsADirectory)
        elif kind is None:
            errors |= self.absent_errors(path)
        if self.expect(errors, lambda: self.archive.remove(path)):
            del self.model[path]

    def op_mkdir(self, draw):
        path = self.pick_target(draw)
        errors = set()
        if self.blocked_by_file(path):
            errors.add(NotADirectory)
        elif self.kind(path) is not None:
            errors.add(FileAlreadyExistsError)
        if self.missing_parent(path) and not errors:
            try:       # POSIX says ENOENT; implying the parents is tolerated
                self.archive.mkdir(path)
            except NoSuchFile:
                return
            self.add_parents(path)
            self.model[path] = (DIR, None, 0o755)
            return
        if self.expect(errors, lambda: self.archive.mkdir(path)):
            self.model[path] = (DIR, None, 0o755)

    def op_rmdir(self, draw):
        path = self.pick(draw, (DIR,))
        errors = set()
        kind = self.kind(path)
        if kind in (FILE, LINK):
            errors.add(NotADirectory)
        elif kind is None:
            errors |= self.absent_errors(path)
        elif self.children(path):
            errors.add(DirectoryNotEmpty)
        if self.expect(errors, lambda: self.archive.rmdir(path)):
            del self.model[path]

    def op_rename(self, draw):
        old = self.pick(draw)
        new = self.pick_target(draw)
        errors = set()
        old_kind, new_kind = self.kind(old), self.kind(new)
        if old_kind is None:
            errors |= self.absent_errors(old)
        elif old != new:
            if self.blocked_by_file(new):
                errors.add(NotADirectory)
            elif self.missing_parent(new):
                errors.add(NoSuchFile)
            if old_kind == DIR:
                if new.startswith(old + "/"):
                    errors.add(InvalidMove)
                if new_kind in (FILE, LINK):
                    errors.add(NotADirectory)
                elif new_kind == DIR and self.children(new):
                    errors.add(DirectoryNotEmpty)
            elif new_kind == DIR:
                errors.add(IsADirectory)
        if not self.expect(errors, lambda: self.archive.rename(old, new)) or old == new:
            return
        moved = [old] + (self.children(old) if old_kind == DIR else [])
        taken = {p: self.model.pop(p) for p in moved}
        self.model.pop(new, None)
        for p, entry in taken.items():
            self.model[new + p[len(old):]] = entry

    def op_chmod(self, draw):
        path, mode = self.pick(draw, (FILE,)), draw(modes)
        kind = self.kind(path)
        errors = {NoSuchFile} if kind is None else set()
        if kind is None and self.blocked_by_file(path):
            errors.add(NotADirectory)
        if self.expect(errors, lambda: self.archive.chmod(path, mode)) and kind == FILE:
            self.model[path] = (FILE, self.model[path][1], mode)

    @rule()
    def commit(self):
        self.clean = False
        self.archive.commit()
        with zipfile.ZipFile(self.path) as z:
            assert z.testzip() is None
        self.clean = True

    @rule()
    def reopen(self):
        self.clean = False
        self.archive.close()
        self.reopens += 1
        self.check_archive_file()
        self.archive = ZipfileArchive(url=self.path, mode="a")
        self.check_contents()
        self.clean = True

    @precondition(lambda self: self.reopens == 0)
    @rule()
    def reopen_read_only_first(self):
        """The same state, seen through a read-only open."""
        self.clean = False
        self.archive.close()
        self.reopens += 1
        ro = ZipfileArchive(url=self.path, mode="r")
        try:
            self.check_tree(ro)
        finally:
            ro.close()
        self.archive = ZipfileArchive(url=self.path, mode="a")
        self.clean = True

    # -- checks ----------------------------------------------------------------------------

    def walk(self, archive, path=""):
        out = {}
        for name, mode in archive.listdir(path):
            child = path + "/" + name if path else name
            if stat.S_ISDIR(mode):
                out[child] = DIR
                out.update(self.walk(archive, child))
            else:
                out[child] = LINK if stat.S_ISLNK(mode) else FILE
        return out

    def check_tree(self, archive):
        expected = {p: entry[0] for p, entry in self.model.items()}
        assert self.walk(archive) == expected
        files = sorted(p for p, kind in expected.items() if kind != DIR)
        assert sorted(archive.getnames()) == files

    @invariant()
    def tree_matches(self):
        self.clean = False
        self.check_tree(self.archive)
        self.clean = True

    def check_contents(self):
        archive = self.archive
        self.check_tree(archive)
        for path, (kind, data, mode) in self.model.items():
            st_ = archive.stat(path)
            if kind == FILE:
                with archive.open(path) as f:
                    assert f.read() == data, path
                assert mode is None or stat.S_IMODE(st_.mode) == mode, path
            elif kind == LINK:
                assert archive.readlink(path).encode() == data, path

    def check_archive_file(self):
        with zipfile.ZipFile(self.path) as z:
            assert z.testzip() is None
            infos = z.infolist()
            names = [i.filename for i in infos]
            assert len(names) == len(set(names)), names          # no name twice
            stored = {i.filename: z.read(i) for i in infos if not i.is_dir()}
        expected = {p: e[1] for p, e in self.model.items() if e[0] != DIR}
        assert stored == expected
        if infos:
            unzip_test(self.path)


ZipModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestZipModel = ZipModel.TestCase
