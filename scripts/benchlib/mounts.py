"""One live mount of one tool, and the guarantee that none outlives the bench.

Every Mount registers itself on start; `cleanup_all()` (called from the
driver's finally, also on Ctrl-C or SIGTERM) unmounts and reaps whatever is
left, escalating to a lazy unmount and to signalling only our own daemons.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from benchlib import procs
from benchlib.tools import Tool, fusermount

MOUNT_TIMEOUT = 1800.0
EXIT_TIMEOUT = 1800.0
POLL = 0.005

_live: list["Mount"] = []


class MountError(RuntimeError):
    pass


def mounted(mnt: Path) -> bool:
    target = str(mnt)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == target:
                    return True
    except OSError:
        pass
    return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Mount:
    def __init__(self, tool: Tool, archive: Path, mnt: Path, writable: bool,
                 state: Path, log: Path):
        self.tool, self.archive, self.mnt = tool, archive, mnt.resolve()
        self.writable, self.state, self.log = writable, state, log
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None   # the daemon's PID
        self.exit_code: int | None = None

    # -- life cycle ---------------------------------------------------------
    def start(self) -> float:
        """Mount; returns seconds until the root directory could be listed."""
        if mounted(self.mnt):
            raise MountError(f"{self.mnt} is already a mount point")
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = self.tool.mount_cmd(self.archive, self.mnt, self.writable, self.state)
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.tool.env(self.state), start_new_session=True)
        _live.append(self)
        if self.tool.foreground:
            self.pid = self.proc.pid
        self._wait_mounted(t0)
        os.listdir(self.mnt)
        elapsed = time.monotonic() - t0
        if not self.tool.foreground:
            self.pid = self._find_daemon()
        return elapsed

    def _wait_mounted(self, t0: float) -> None:
        while not mounted(self.mnt):
            code = self.proc.poll()
            if code is not None and (self.tool.foreground or code != 0):
                raise MountError(f"{self.tool.name} exited with {code} before the "
                                 f"mount was live: {_tail(self.log)}")
            if time.monotonic() - t0 > MOUNT_TIMEOUT:
                raise MountError(f"{self.tool.name}: no mount after {MOUNT_TIMEOUT} s")
            time.sleep(POLL)
        if not self.tool.foreground:
            code = self.proc.wait(timeout=MOUNT_TIMEOUT)
            if code != 0:
                raise MountError(f"{self.tool.name} mount exited {code}: {_tail(self.log)}")

    def _find_daemon(self) -> int | None:
        """A background daemon's PID: the live process naming our mountpoint."""
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in (me, self.proc.pid):
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [a.decode(errors="replace") for a in argv]
            if str(self.mnt) in args and any(self.tool.name in a for a in args):
                return int(entry)
        return None

    def unmount(self) -> float:
        """Ask the tool to unmount; returns seconds until its daemon exited.

        For tools that save on unmount this is the time until the save ended.
        """
        t0 = time.monotonic()
        out = subprocess.run(self.tool.unmount_cmd(self.mnt), capture_output=True,
                             text=True, timeout=EXIT_TIMEOUT)
        if out.returncode != 0:
            raise MountError(f"unmount failed ({out.returncode}): "
                             f"{(out.stdout + out.stderr).strip()}")
        self._wait_exit(EXIT_TIMEOUT)
        elapsed = time.monotonic() - t0
        self._forget()
        return elapsed

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self.tool.foreground:
            try:
                self.exit_code = self.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        while self.pid is not None and procs.alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    def _forget(self) -> None:
        if self in _live:
            _live.remove(self)

    def close(self) -> None:
        """Best-effort teardown; never raises. Safe to call twice."""
        if self not in _live:
            return
        try:
            if mounted(self.mnt):
                subprocess.run(self.tool.unmount_cmd(self.mnt), capture_output=True,
                               timeout=120)
            if mounted(self.mnt):
                subprocess.run([fusermount(), "-uz", str(self.mnt)],
                               capture_output=True, timeout=60)
            if not self._wait_exit(120):
                self._signal(signal.SIGTERM)
                if not self._wait_exit(20):
                    self._signal(signal.SIGKILL)
                    self._wait_exit(20)
            if mounted(self.mnt):
                subprocess.run([fusermount(), "-uz", str(self.mnt)],
                               capture_output=True, timeout=60)
            self._forget()
        except Exception as exc:  # cleanup must go on for the other mounts
            print(f"warning: cleanup of {self.mnt} failed: {exc}")

    def _signal(self, sig: int) -> None:
        if self.pid is not None and procs.alive(self.pid):
            os.kill(self.pid, sig)

    def __enter__(self) -> "Mount":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cleanup_all() -> None:
    """Tear down every mount still live; a second Ctrl-C cannot cut it short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for m in list(reversed(_live)):
            m.close()
    finally:
        signal.signal(signal.SIGINT, previous)
