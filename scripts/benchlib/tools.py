"""The FUSE tools under test: how each is found, mounted and unmounted.

All peers are started in the foreground (-f) as our own child processes so
the bench owns each daemon's PID (for its RSS, for waiting until a save has
finished, and for cleanup). archfs is started the same way when its CLI
offers -f; otherwise its background daemon is located by its command line.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from benchlib.settings import PEERS_VENV, REPO_ROOT


def fusermount() -> str:
    return shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"


def _version_line(cmd: list[str], needle: str) -> str:
    """The line of `cmd`'s output that names `needle` (tools also print FUSE's)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (out.stdout + "\n" + out.stderr).strip().splitlines()
    return next((ln.strip() for ln in lines if needle in ln.lower()), "unknown")


class Tool:
    """One mounter. Subclasses fill in the command lines."""

    name = ""
    writes_back = True          # False: changes never reach the archive
    no_write_reason = ""
    foreground = True           # the mount command *is* the daemon

    def executable(self) -> str | None:
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        return None if self.executable() else f"{self.name} is not installed"

    def version(self) -> str:
        raise NotImplementedError

    def mount_cmd(self, archive: Path, mnt: Path, writable: bool,
                  state: Path) -> list[str]:
        raise NotImplementedError

    def unmount_cmd(self, mnt: Path) -> list[str]:
        return [fusermount(), "-u", str(mnt)]

    def forget_state(self, archive: Path, state: Path) -> None:
        """Make the next mount of `archive` a first mount (drop index caches)."""

    def env(self, state: Path) -> dict:
        return dict(os.environ)


class FuseZip(Tool):
    name = "fuse-zip"
    reads_tar = False

    def executable(self):
        return shutil.which("fuse-zip")

    def version(self):
        return _version_line([self.executable(), "-V"], "fuse-zip")

    def mount_cmd(self, archive, mnt, writable, state):
        return [self.executable(), "-f"] + ([] if writable else ["-r"]) + [
            str(archive), str(mnt)]


class Archivemount(Tool):
    name = "archivemount"

    def executable(self):
        return shutil.which("archivemount")

    def version(self):
        return _version_line([self.executable(), "-V"], "archivemount")

    def mount_cmd(self, archive, mnt, writable, state):
        opts = "nobackup" if writable else "readonly"
        return [self.executable(), "-f", "-o", opts, str(archive), str(mnt)]


class Ratarmount(Tool):
    name = "ratarmount"
    writes_back = False
    no_write_reason = "n/a (overlay)"

    def executable(self):
        venv = PEERS_VENV / "bin" / "ratarmount"
        return str(venv) if venv.exists() else shutil.which("ratarmount")

    def version(self):
        return _version_line([self.executable(), "--version"], "ratarmount")

    def _index(self, archive: Path, state: Path) -> Path:
        return state / f"{archive.name}.index.sqlite"

    def mount_cmd(self, archive, mnt, writable, state):
        return [self.executable(), "-f", "--index-file",
                str(self._index(archive, state)), str(archive), str(mnt)]

    def forget_state(self, archive, state):
        self._index(archive, state).unlink(missing_ok=True)


class Archfs(Tool):
    """archfs; persistent caches are steered into the bench's state dir."""

    name = "archfs"

    def __init__(self):
        self.foreground = self._has_foreground_flag()

    def executable(self):
        venv = REPO_ROOT / ".venv" / "bin" / "archfs"
        return str(venv) if venv.exists() else shutil.which("archfs")

    def _has_foreground_flag(self) -> bool:
        exe = self.executable()
        if not exe:
            return False
        try:
            out = subprocess.run([exe, "mount", "--help"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        text = out.stdout + out.stderr
        return "--foreground" in text or " -f" in text

    def version(self):
        python = REPO_ROOT / ".venv" / "bin" / "python"
        got = subprocess.run([str(python), "-c", "import archfs; print(archfs.__version__)"],
                             capture_output=True, text=True)
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True)
        return (f"archfs {got.stdout.strip() or 'unknown'} "
                f"(git {head.stdout.strip() or '?'})")

    def mount_cmd(self, archive, mnt, writable, state):
        cmd = [self.executable(), "mount"]
        if self.foreground:
            cmd.append("-f")
        cmd += [str(archive), str(mnt)]
        if not writable:
            cmd += ["-o", "ro"]
        return cmd

    def unmount_cmd(self, mnt):
        return [self.executable(), "unmount", str(mnt)]

    def _cache_home(self, state: Path) -> Path:
        return state / "xdg-cache"

    def env(self, state):
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = str(self._cache_home(state))
        return env

    def forget_state(self, archive, state):
        shutil.rmtree(self._cache_home(state), ignore_errors=True)


ALL_TOOLS = ["archfs", "fuse-zip", "archivemount", "ratarmount"]
PEERS = ALL_TOOLS[1:]


def make_tool(name: str) -> Tool:
    return {"archfs": Archfs, "fuse-zip": FuseZip, "archivemount": Archivemount,
            "ratarmount": Ratarmount}[name]()
