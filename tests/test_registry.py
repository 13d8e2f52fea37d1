"""The plugin registry: lookup by name, MIME type, suffix and signature, and
discovery through entry points. Uses dummy plugins, not the zip plugin."""

import errno
from importlib.metadata import EntryPoint

import pytest

import archfs.archives as registry
from archfs.archives import ArchivePluginNotFound, FileAlreadyExistsError
from archfs.archives.abstractarchive import AbstractArchive
from archfs.archives.filesystemarchive import FilesystemArchive
from archfs import errors


class DummyArchive(AbstractArchive):
    """Records how the registry opened it; does nothing else."""

    name = "dummy"
    description = "test plugin"
    authors = "tests"
    version = "0.0.1"
    url = ""
    mimetypes = ["application/x-dummy"]
    suffixes = (".dmy",)
    magic = (b"DUMMY1",)

    def __init__(self, transport=None, url=None, mode="r", read_directory_only=False,
                 opts=None):
        super().__init__(self.name, self.description, self.authors, self.version,
                         self.url, self.mimetypes)
        self.opened = (url, mode, opts)

    def use_query(self):
        return False

    def getnames(self, files=None):
        return []

    def getmembers(self, files=None):
        return []

    def open(self, member, mode="rb"):
        raise NotImplementedError

    def to_localfile(self, member):
        raise NotImplementedError

    def add_localfile(self, local_file, filename):
        raise NotImplementedError

    def writedata(self, filename, data):
        raise NotImplementedError

    def is_file(self, member):
        return False

    def close(self):
        pass


class TarDummyArchive(DummyArchive):
    name = "tardummy"
    mimetypes = ["application/x-tar-dummy"]
    suffixes = (".tar.dmy",)
    magic = ()


class ZipStandIn(DummyArchive):
    """Registered as "zip" so the zip signature is tested without the real plugin."""

    name = "zip"
    mimetypes = ["application/zip"]
    suffixes = (".zip",)
    magic = ()


@pytest.fixture
def dummies():
    registry.register_plugin(DummyArchive)
    registry.register_plugin(TarDummyArchive)
    yield
    registry.unregister_plugin("dummy")
    registry.unregister_plugin("tardummy")


@pytest.fixture
def zip_stand_in():
    registry.register_plugin(ZipStandIn)
    yield
    registry.unregister_plugin("zip")


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Replace installed entry points with the given list for one test."""
    def install(*eps):
        monkeypatch.setattr(registry, "entry_points", lambda group: [
            ep for ep in eps if ep.group == group])
        registry.reload_plugins()
    yield install
    monkeypatch.undo()
    registry.reload_plugins()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_reexported_errors():
    assert FileAlreadyExistsError is errors.FileAlreadyExistsError
    assert ArchivePluginNotFound is errors.ArchivePluginNotFound


def test_find_plugin_filesystem(tmp_path):
    archive = registry.find_plugin("filesystem", str(tmp_path / "d"), mode="w")
    assert isinstance(archive, FilesystemArchive)
    assert archive.writable and (tmp_path / "d").is_dir()


def test_find_plugin_unknown_names_the_known_ones():
    with pytest.raises(ArchivePluginNotFound) as info:
        registry.find_plugin("nope", "/tmp")
    message = str(info.value)
    assert "'nope'" in message and "filesystem" in message
    assert isinstance(info.value, LookupError) and info.value.errno == errno.ENOTSUP


def test_find_plugin_passes_url_mode_opts(dummies):
    archive = registry.find_plugin("dummy", "x.dmy", mode="a", opts={"k": 1})
    assert isinstance(archive, DummyArchive)
    assert archive.opened == ("x.dmy", "a", {"k": 1})


def test_find_mimetype_plugin(dummies, tmp_path):
    archive = registry.find_mimetype_plugin("application/x-dummy", "u")
    assert isinstance(archive, DummyArchive)
    assert isinstance(registry.find_mimetype_plugin(None, str(tmp_path)), FilesystemArchive)
    for unknown in ("text/plain", "*/*"):
        with pytest.raises(ArchivePluginNotFound, match="MIME type"):
            registry.find_mimetype_plugin(unknown, "u")


def test_find_suffix_plugin(dummies, tmp_path):
    assert isinstance(registry.find_suffix_plugin("data.DMY"), DummyArchive)
    assert isinstance(registry.find_suffix_plugin("a/b.tar.dmy"), TarDummyArchive)  # longest
    assert isinstance(registry.find_suffix_plugin(str(tmp_path)), FilesystemArchive)
    assert isinstance(registry.find_suffix_plugin("file://" + str(tmp_path)), FilesystemArchive)
    with pytest.raises(ArchivePluginNotFound, match="suffix of data.xyz"):
        registry.find_suffix_plugin("data.xyz")


def test_open_archive_directory_and_suffix(dummies, tmp_path):
    assert isinstance(registry.open_archive(str(tmp_path)), FilesystemArchive)
    archive = registry.open_archive(str(tmp_path / "new.dmy"), mode="w")
    assert isinstance(archive, DummyArchive) and archive.opened[1] == "w"


def test_open_archive_sniffs_plugin_magic(dummies, tmp_path):
    path = write(tmp_path / "no-suffix", b"DUMMY1 and then data")
    assert isinstance(registry.open_archive(path), DummyArchive)


@pytest.mark.parametrize("head", [b"PK\x03\x04rest", b"PK\x05\x06" + bytes(18)])
def test_open_archive_sniffs_zip_signature(zip_stand_in, tmp_path, head):
    path = write(tmp_path / "download.bin", head)
    assert isinstance(registry.open_archive(path), ZipStandIn)


def test_open_archive_unknown_content(dummies, tmp_path):
    path = write(tmp_path / "notes.txt", b"just text")
    with pytest.raises(ArchivePluginNotFound, match="cannot tell the archive format"):
        registry.open_archive(path)
    with pytest.raises(ArchivePluginNotFound):
        registry.open_archive(str(tmp_path / "new-without-suffix"), mode="w")


def test_open_archive_missing_path(tmp_path):
    with pytest.raises(errors.NoSuchFile, match="no such archive"):
        registry.open_archive(str(tmp_path / "absent"))


def test_register_plugin_rejects_bad_classes():
    with pytest.raises(TypeError, match="AbstractArchive"):
        registry.register_plugin(object)

    class Nameless(DummyArchive):
        name = ""

    with pytest.raises(TypeError, match="'name'"):
        registry.register_plugin(Nameless)


def test_registered_class_overrides_builtin(tmp_path):
    class MyFilesystem(FilesystemArchive):
        pass

    registry.register_plugin(MyFilesystem)
    try:
        assert isinstance(registry.open_archive(str(tmp_path)), MyFilesystem)
    finally:
        registry.unregister_plugin("filesystem")
    assert type(registry.open_archive(str(tmp_path))) is FilesystemArchive


def test_entry_point_plugin_is_found(fake_entry_points):
    fake_entry_points(EntryPoint("tardummy", __name__ + ":TarDummyArchive",
                                 registry.ENTRY_POINT_GROUP),
                      EntryPoint("other", __name__ + ":DummyArchive", "another.group"))
    assert registry.plugin_class("tardummy") is TarDummyArchive
    assert isinstance(registry.find_suffix_plugin("x.tar.dmy"), TarDummyArchive)
    with pytest.raises(ArchivePluginNotFound):
        registry.plugin_class("other")  # another group is not ours
    assert registry.plugin_class("filesystem") is FilesystemArchive  # builtin still there


def test_broken_entry_point_is_reported_not_fatal(fake_entry_points, tmp_path):
    fake_entry_points(EntryPoint("broken", "no_such_module_for_archfs:Plugin",
                                 registry.ENTRY_POINT_GROUP))
    with pytest.raises(ArchivePluginNotFound) as info:
        registry.find_plugin("broken", "x")
    assert "failed to load" in str(info.value) and "no_such_module_for_archfs" in str(info.value)
    assert "broken" not in registry.plugins()
    assert isinstance(registry.open_archive(str(tmp_path)), FilesystemArchive)


def test_installed_entry_points_name_the_builtins():
    """pyproject.toml declares both builtins; a stale install would show here."""
    names = {ep.name: ep.value for ep in registry.entry_points(group=registry.ENTRY_POINT_GROUP)}
    if not names:
        pytest.skip("archfs is not installed (source checkout without pip install)")
    assert names["filesystem"] == "archfs.archives.filesystemarchive:FilesystemArchive"
    assert names["zip"] == "archfs.archives.zipfilearchive:ZipfileArchive"


def test_plugin_class_attributes():
    assert FilesystemArchive.name == "filesystem"
    assert FilesystemArchive.mimetypes == ["*"]
    assert FilesystemArchive.suffixes == ()
