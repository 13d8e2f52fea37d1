"""scripts/lib/setup.sh: waiting for the package manager's lock, one line per
step, apt's output in the log. apt itself is not run: a lock file of the
test's own stands for dpkg's, and a stand-in apt-get on PATH for the real one."""

import subprocess
import sys
import time
from pathlib import Path

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "lib" / "setup.sh"

HOLDER = """
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)          # an fcntl lock, as dpkg and apt take them
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(lock: Path, seconds: float) -> subprocess.Popen:
    lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def bash(script: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    prelude = 'source "%s"\nARCHFS_APT_LOCKS=("%s")\nARCHFS_SETUP_LOG="%s"\n' % (
        SETUP, tmp_path / "dpkg.lock", tmp_path / "setup.log")
    return subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True,
                          timeout=60, env=dict(env, PATH="%s:/usr/bin:/bin" % tmp_path,
                                               HOME=str(tmp_path)))


def test_gives_up_on_a_held_lock_with_one_clear_line(tmp_path):
    holder = hold(tmp_path / "dpkg.lock", 30)
    try:
        started = time.monotonic()
        result = bash("ARCHFS_APT_LOCK_TIMEOUT=2\narchfs_wait_for_apt_lock\necho free",
                      tmp_path)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1 and "free" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("archfs setup: waiting for another package manager")
    assert "pid %d, python" % holder.pid in lines[0]
    assert lines[1].startswith("archfs setup: gave up after waiting 2 s") and \
        "pid %d" % holder.pid in lines[1]
    assert 2 <= waited < 20


def test_waits_for_the_lock_then_goes_on_saying_so_once(tmp_path):
    holder = hold(tmp_path / "dpkg.lock", 2)
    try:
        result = bash("archfs_wait_for_apt_lock\narchfs_wait_for_apt_lock\necho free",
                      tmp_path)
    finally:
        holder.wait()
    assert result.returncode == 0 and result.stdout.strip() == "free"
    assert result.stderr.count("waiting for another package manager") == 1


def test_apt_output_goes_to_the_log_and_a_lost_race_is_retried(tmp_path):
    """A stand-in apt-get: the first call finds the lock taken (as when another
    program grabs it between our check and apt's), the second succeeds."""
    fake = tmp_path / "apt-get"
    fake.write_text('#!/bin/sh\n'
                    'if [ ! -e "%s/tried" ]; then touch "%s/tried"\n'
                    '  echo "E: Could not get lock /var/lib/dpkg/lock-frontend" >&2; exit 100\n'
                    'fi\n'
                    'echo "Selecting previously unselected package fuse3."\n'
                    'echo "Unpacking fuse3 ..." ; echo "args: $*"\n' % (tmp_path, tmp_path))
    fake.chmod(0o755)
    result = bash("archfs_apt install -y fuse3 && echo done", tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert result.stderr == ""                      # nothing of apt's on the terminal
    log = (tmp_path / "setup.log").read_text()
    assert "Could not get lock" in log and "Unpacking fuse3" in log
    assert "DPkg::Lock::Timeout=" in log and "install -y fuse3" in log


def test_a_failing_step_shows_the_end_of_the_log(tmp_path):
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package nosuchpackage' >&2\n"
                    "exit 100\n")
    fake.chmod(0o755)
    result = bash('archfs_apt install -y nosuchpackage || archfs_failed "apt-get install"',
                  tmp_path)
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first == "archfs setup: apt-get install failed; the last lines of %s:" % (
        tmp_path / "setup.log")
    assert any("Unable to locate package nosuchpackage" in line for line in rest)


def test_system_tools_list_is_one_entry_a_line():
    """Other scripts and engineers add tools with one line: keep the list so."""
    text = SETUP.read_text()
    block = text[text.index("ARCHFS_SYSTEM_TOOLS=("):]
    block = block[:block.index("\n)\n")]
    entries = [line.strip() for line in block.splitlines()[1:]]
    assert entries and all(e.startswith('"') and e.endswith('"') and ":" in e
                           for e in entries)
    assert '"7zz|7z:7zip|p7zip-full"' in entries
