"""Measure read-only mounts on a corpus of zip archives (``scripts/zipcorpus``).

Every archive below CORPUS is mounted read-only by each tool asked for
(archfs, and the peers ratarmount, fuse-zip, archivemount when installed),
walked and read in a child process with a time bound, and judged against
Python's zipfile and 7-Zip (see ``tests/zip_conformance.py`` for the
verdicts). Prints one line per archive and tool where the verdict is not
``ok``, then a table; ``--json`` keeps every verdict.

The corpus is not part of archfs: gather it from other projects' test
suites (the README says which) into a directory of your own.
"""

import argparse
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import zip_conformance as zc  # noqa: E402

PASSWORDS = [b"foofoofoo", b"1234", b"12345", b"test", b"password", b"secret", b"foo",
             b"s3cret pass", b"", b"123456", b"foofoo"]
TOOLS = ("archfs", "ratarmount", "fuse-zip", "archivemount")
MOUNT_TIMEOUT = 60.0


def find_tool(name: str):
    if name == "archfs":
        return [sys.executable, "-m", "archfs"]
    if name == "ratarmount":
        for candidate in (shutil.which("ratarmount"),
                          str(HERE.parent / ".bench/peers-venv/bin/ratarmount"),
                          "/work/main/.bench/peers-venv/bin/ratarmount"):
            if candidate and os.path.exists(candidate):
                return [candidate]
        return None
    found = shutil.which(name)
    return [found] if found else None


def guess_password(path: str):
    """The first candidate password with which zipfile or 7-Zip reads an
    encrypted member (None when nothing is encrypted)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as zf:
            encrypted = [i for i in zf.infolist() if i.flag_bits & 1]
            if not encrypted:
                return None
            for pw in PASSWORDS:
                try:
                    zf.open(encrypted[0], pwd=pw).read(1)
                    return pw
                except Exception:
                    continue
    except Exception:
        pass
    for pw in PASSWORDS:
        proc = subprocess.run([zc.SEVEN_ZIP, "t", "-p" + pw.decode(), path],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=120)
        text = proc.stdout.decode("utf-8", "replace")
        if "Wrong password" not in text and "Everything is Ok" in text:
            return pw
    return None


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == path for line in f)


def daemon_pids(mnt: str):
    """PIDs of processes whose command line names this (private) mountpoint."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mnt.encode() in args and int(entry) != os.getpid():
            pids.append(int(entry))
    return pids


def unmount(tool, mnt: str, pids) -> None:
    if tool == "archfs":
        subprocess.run([sys.executable, "-m", "archfs", "unmount", mnt], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if is_mounted(mnt):
        subprocess.run(["fusermount3" if shutil.which("fusermount3") else "fusermount",
                        "-u", "-z", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def mount_and_walk(tool: str, command, archive: str, password, work: str, timeout: float):
    """(served, refused, crashed) for one tool on one archive."""
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=work)
    log = os.path.join(work, "log-%s.txt" % tool)
    if tool == "archfs":
        args = command + ["mount", archive, mnt, "-o", "ro", "--log-file", log]
        if password:
            args += ["-o", "password=" + password.decode("latin-1")]
    elif tool == "ratarmount":
        args = command + ["--index-file", ":memory:", archive, mnt]
        if password:
            args += ["--password", password.decode("latin-1")]
    elif tool == "fuse-zip":
        args = command + ["-r", archive, mnt]
    else:
        args = command + ["-o", "readonly", archive, mnt]
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=MOUNT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pids = daemon_pids(mnt)
        unmount(tool, mnt, pids)
        return None, None, False
    if proc.returncode != 0 or not is_mounted(mnt):
        pids = daemon_pids(mnt)
        unmount(tool, mnt, pids)
        text = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        return None, (text[-1] if text else "exit %d" % proc.returncode), False
    pids = daemon_pids(mnt)
    served = zc.walk_in_child(mnt, timeout)
    crashed = False
    try:
        os.stat(mnt)
    except OSError as exc:
        crashed = exc.errno == errno.ENOTCONN
    if pids and not any(_alive(p) for p in pids):
        crashed = True
    unmount(tool, mnt, pids)
    try:
        os.rmdir(mnt)
    except OSError:
        pass
    return served, None, crashed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/zipcorpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="directory of zip archives (searched recursively)")
    parser.add_argument("--tools", nargs="+", default=["archfs"], choices=TOOLS)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to walk and read one mount (default 120)")
    parser.add_argument("--json", help="write every verdict here")
    parser.add_argument("--only", help="archives whose path contains this")
    args = parser.parse_args(argv)
    archives = sorted(str(p) for p in Path(args.corpus).rglob("*") if p.is_file()
                      and (args.only is None or args.only in str(p)))
    tools = {}
    for name in args.tools:
        command = find_tool(name)
        if command is None:
            print("%s: not installed, left out" % name, file=sys.stderr)
        else:
            tools[name] = command
    results = {name: {} for name in tools}
    work = tempfile.mkdtemp(prefix="zipcorpus-")
    try:
        for archive in archives:
            password = guess_password(archive)
            ref = zc.reference(archive, password)
            for name, command in tools.items():
                served, refused, crashed = mount_and_walk(name, command, archive, password,
                                                          work, args.timeout)
                verdict = zc.judge(ref, served, refused, crashed)
                results[name][archive] = {"kind": verdict.kind, "detail": verdict.detail}
                if not verdict.good:
                    print("%-12s %-8s %s: %s" % (name, verdict.kind,
                                                 os.path.relpath(archive, args.corpus),
                                                 verdict.detail[:300]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    kinds = ["ok", "partial", "refused", "wrong", "crash", "hang"]
    print("%-12s %s  (of %d archives)" % ("tool", " ".join("%8s" % k for k in kinds), len(archives)))
    for name, verdicts in results.items():
        counts = [sum(1 for v in verdicts.values() if v["kind"] == k) for k in kinds]
        print("%-12s %s" % (name, " ".join("%8d" % c for c in counts)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
