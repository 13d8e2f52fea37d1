"""Who checks permissions: the kernel (``default_permissions``) on every
mount others can reach, archfs itself where root mounts privately (every
caller is then root, and the kernel's checks would only cost a GETATTR of
the parent directory per created file). Either way root sees what it sees
on a local disk."""

import errno
import os
import subprocess
import zipfile

import pytest

from mount_fixtures import run

ROOT = os.geteuid() == 0


def _super_options(path) -> set:
    """The mount's options as the kernel reports them (mountinfo's last field)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return set(fields[-1].split(","))
    raise AssertionError("%s is not in /proc/self/mountinfo" % target)


def _archive(tmp_path):
    path = tmp_path / "perm.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, mode in (("plain.txt", 0o644), ("tool.sh", 0o755), ("locked.txt", 0o000),
                           ("readonly.txt", 0o444), ("closed/", 0o000)):
            info = zipfile.ZipInfo(name)
            info.external_attr = ((0o040000 if name.endswith("/") else 0o100000) | mode) << 16
            zf.writestr(info, b"" if name.endswith("/") else b"#!/bin/sh\necho ran\n")
        info = zipfile.ZipInfo("closed/inside.txt")
        info.external_attr = (0o100644) << 16
        zf.writestr(info, b"inside\n")
    return path


@pytest.mark.parametrize("api", ["low", "high"])
def test_who_checks_permissions(tmp_path, mounter, monkeypatch, api):
    monkeypatch.setenv("ARCHFS_FUSE_API", api)
    (tmp_path / "other").mkdir()
    private = mounter(_archive(tmp_path), kind="zip")
    shared = mounter(_archive(tmp_path / "other"), "allow_other", kind="zip")
    assert "default_permissions" in _super_options(shared.path)
    if ROOT:
        assert "default_permissions" not in _super_options(private.path)
    else:       # a private mount of anyone else: the kernel checks
        assert "default_permissions" in _super_options(private.path)
    private.unmount()
    shared.unmount()


@pytest.mark.skipif(not ROOT, reason="root's view of permissions: run as root (CI is)")
@pytest.mark.parametrize("options", [(), ("allow_other",)], ids=["private", "allow_other"])
def test_root_sees_permissions_as_on_a_local_disk(tmp_path, mounter, options):
    """The same answers whether the kernel or archfs checks: root reads and
    writes anything and searches any directory, but runs only files with an
    x bit, and access(2) says so."""
    m = mounter(_archive(tmp_path), *options, kind="zip")
    assert os.access(m / "tool.sh", os.X_OK)
    assert not os.access(m / "plain.txt", os.X_OK)
    assert not os.access(m / "locked.txt", os.X_OK)
    assert os.access(m / "locked.txt", os.R_OK | os.W_OK)
    assert os.access(m / "closed", os.X_OK | os.R_OK | os.W_OK)
    assert not os.access(m / "missing", os.F_OK)
    assert run([str(m / "tool.sh")]).stdout == "ran\n"
    with pytest.raises(PermissionError):
        subprocess.run([str(m / "plain.txt")], check=False)
    assert (m / "locked.txt").read_bytes().startswith(b"#!/bin/sh")
    (m / "readonly.txt").write_bytes(b"root writes anyway\n")
    assert (m / "closed" / "inside.txt").read_text() == "inside\n"
    (m / "closed" / "new.txt").write_text("made in a 000 directory\n")
    os.chdir(m / "closed")
    try:
        assert sorted(os.listdir(".")) == ["inside.txt", "new.txt"]
    finally:
        os.chdir(tmp_path)
    m.unmount()
    with zipfile.ZipFile(m.archive) as zf:
        assert zf.read("readonly.txt") == b"root writes anyway\n"
        assert zf.read("closed/new.txt") == b"made in a 000 directory\n"
        assert zf.testzip() is None


@pytest.mark.skipif(not ROOT, reason="needs a read-only mount made by root")
def test_read_only_private_mount_refuses_writes_through_access(tmp_path, mounter):
    m = mounter(_archive(tmp_path), "ro", kind="zip")
    assert "default_permissions" not in _super_options(m.path)
    assert os.access(m / "plain.txt", os.R_OK)
    assert not os.access(m / "plain.txt", os.W_OK)
    with pytest.raises(OSError) as err:
        (m / "plain.txt").write_bytes(b"no")
    assert err.value.errno == errno.EROFS
    m.unmount()
