"""pjdfstest against archfs and its peers: per-subset pass rates.

Run through ``scripts/pjdfstest`` (which installs autotools, a C compiler and
perl as root). Every subset gets a fresh mount of a fresh archive, so one
subset's leftovers cannot change another's result; a test script's planned
assertions that never ran (it hung or died) count as failures. The pass rate
is passed assertions / planned assertions; pjdfstest's own ``todo`` marks are
ignored (an assertion passes or it does not).

For archfs each subset also ends with an unmount that must succeed (all
committed) and an archive that ``unzip -t`` accepts.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = "https://github.com/pjd/pjdfstest"
CORE = ["open", "unlink", "mkdir", "rmdir", "rename", "truncate", "ftruncate", "chmod",
        "utimensat"]
OPTIONAL = ["chown", "symlink", "mknod", "mkfifo"]
MOUNT_TIMEOUT = 60.0
SCRIPT_TIMEOUT = 600.0


def log(text: str) -> None:
    print("pjdfstest: %s" % text, file=sys.stderr, flush=True)


# -- getting and building pjdfstest ----------------------------------------------

def source_dir(given) -> Path:
    if given:
        path = Path(given).resolve()
        if not (path / "configure.ac").is_file() or not (path / "tests").is_dir():
            sys.exit("pjdfstest: %s is not a pjdfstest source tree (no configure.ac, tests/)"
                     % path)
        return path
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archfs"
    target = cache / "pjdfstest-src"
    if not (target / "configure.ac").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        log("cloning %s into %s" % (UPSTREAM, target))
        if subprocess.run(["git", "clone", "--depth", "1", UPSTREAM, str(target)]).returncode:
            sys.exit("pjdfstest: git clone %s failed; pass --source DIR instead" % UPSTREAM)
    return target


def build(src: Path, work: Path) -> Path:
    """Build in a copy (the source tree stays clean); returns the tests directory."""
    tree = work / "pjdfstest"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".git"))
    log("building pjdfstest from %s" % src)
    for cmd in (["autoreconf", "-ifs"], ["./configure"], ["make", "pjdfstest"]):
        out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
        if out.returncode:
            sys.exit("pjdfstest: %s failed:\n%s" % (" ".join(cmd),
                                                    (out.stdout + out.stderr)[-3000:]))
    tree.chmod(0o755)
    return tree / "tests"


# -- mounting each tool ---------------------------------------------------------

def _mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == str(mnt) for line in f)


class ToolMount:
    """One foreground mount of one tool on a fresh archive."""

    def __init__(self, tool: str, work: Path, log_path: Path):
        self.tool = tool
        self.archive = work / "test.zip"
        self.mnt = work / "mnt"
        self.log_path = log_path
        self.proc = None

    def command(self):
        if self.tool == "archfs":
            return [str(REPO / ".venv" / "bin" / "archfs"), "mount", "-f", "-o", "allow_other",
                    str(self.archive), str(self.mnt)]
        binary = shutil.which(self.tool)
        if binary is None:
            raise RuntimeError("%s is not installed" % self.tool)
        return [binary, "-f", "-o", "allow_other,default_permissions", str(self.archive),
                str(self.mnt)]

    def start(self) -> None:
        self.mnt.mkdir(mode=0o755)
        # every tool gets the same small archive (archivemount cannot open an empty zip)
        with zipfile.ZipFile(self.archive, "w") as z:
            z.writestr("README", "pjdfstest works in this archive\n")
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not _mounted(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s did not mount (see %s)" % (self.tool, self.log_path))
            time.sleep(0.05)

    def stop(self) -> str:
        """Unmount and wait for the daemon; returns a problem, or ""."""
        problem = ""
        if _mounted(self.mnt):
            cmd = ([str(REPO / ".venv" / "bin" / "archfs"), "unmount", str(self.mnt)]
                   if self.tool == "archfs" else ["umount", str(self.mnt)])
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if out.returncode:
                problem = "unmount failed: %s" % (out.stdout + out.stderr).strip()
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        if self.proc is not None:
            # archfs must finish its commits; a peer saving its archive at
            # unmount (archivemount takes minutes) is stopped: only the
            # answers it gave while mounted are measured
            try:
                code = self.proc.wait(timeout=600 if self.tool == "archfs" else 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()       # our own child, by PID
                code = self.proc.wait()
            if code and self.tool == "archfs":
                problem = problem or "daemon exited with %d (see %s)" % (code, self.log_path)
            self.proc = None
        if self.tool == "archfs" and not problem:
            test = subprocess.run(["unzip", "-tq", str(self.archive)], capture_output=True,
                                  text=True)
            if test.returncode:
                problem = "unzip -t: %s" % (test.stdout + test.stderr).strip()[-500:]
        return problem


# -- running the tests -----------------------------------------------------------

_PLAN = re.compile(r"^1\.\.(\d+)")
_OK = re.compile(r"^ok (\d+)")
_NOT_OK = re.compile(r"^not ok (\d+)")


def run_script(script: Path, cwd: Path):
    """(passed, planned, failure lines) of one .t file."""
    try:
        out = subprocess.run(["/bin/sh", str(script)], cwd=cwd, capture_output=True,
                             text=True, errors="replace", timeout=SCRIPT_TIMEOUT).stdout
        note = ""
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        note = "timed out after %d s" % SCRIPT_TIMEOUT
    planned = passed = ran = 0
    failures = []
    for line in out.splitlines():
        if _PLAN.match(line) and not planned:
            planned = int(_PLAN.match(line).group(1))
        elif _OK.match(line):
            passed += 1
            ran += 1
        elif _NOT_OK.match(line):
            ran += 1
            failures.append(line)
    planned = max(planned, ran)
    if ran < planned:
        failures.append("%d of %d assertions never ran%s" % (planned - ran, planned,
                                                             ": " + note if note else ""))
    return passed, planned, failures


def run_subset(tool: str, subset: str, tests: Path, work: Path, verbose: bool) -> dict:
    sub_work = work / tool / subset
    sub_work.mkdir(parents=True)
    sub_work.chmod(0o755)
    mount = ToolMount(tool, sub_work, work / ("%s-%s.log" % (tool, subset)))
    result = {"passed": 0, "planned": 0, "failures": [], "problem": ""}
    try:
        mount.start()
    except RuntimeError as exc:
        result["problem"] = str(exc)
        return result
    try:
        for script in sorted((tests / subset).glob("*.t")):
            passed, planned, failures = run_script(script, mount.mnt)
            result["passed"] += passed
            result["planned"] += planned
            result["failures"] += ["%s/%s: %s" % (subset, script.name, f) for f in failures]
            if verbose and failures:
                for f in failures:
                    log("%s %s/%s: %s" % (tool, subset, script.name, f))
    finally:
        result["problem"] = mount.stop()
    return result


def _cell(res: dict) -> str:
    if not res["planned"]:
        return "n/a (%s)" % res["problem"] if res["problem"] else "n/a"
    text = "%.1f%% (%d/%d)" % (100.0 * res["passed"] / res["planned"], res["passed"],
                                res["planned"])
    return text + (" !" if res["problem"] else "")


def table(results: dict, tools, subsets) -> str:
    lines = ["| subset | " + " | ".join(tools) + " |",
             "|---|" + "---:|" * len(tools)]
    for subset in subsets:
        lines.append("| %s | %s |" % (subset, " | ".join(_cell(results[t][subset])
                                                        for t in tools)))
    core = [s for s in subsets if s in CORE]
    if core:
        cells = []
        for t in tools:
            passed = sum(results[t][s]["passed"] for s in core)
            planned = sum(results[t][s]["planned"] for s in core)
            cells.append("**%.1f%%** (%d/%d)" % (100.0 * passed / planned, passed, planned)
                         if planned else "n/a")
        lines.append("| core subsets together | %s |" % " | ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/pjdfstest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="a pjdfstest source tree (default: clone %s)"
                        % UPSTREAM)
    parser.add_argument("--tools", default="archfs",
                        help="comma-separated: archfs, archivemount, fuse-zip (default archfs)")
    parser.add_argument("--subsets", default=",".join(CORE + OPTIONAL),
                        help="comma-separated test directories (default: the core subsets "
                             "%s and the optional %s)" % (",".join(CORE), ",".join(OPTIONAL)))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("pjdfstest: run as root (the tests change owners and switch users)")
    if not os.path.exists("/dev/fuse"):
        sys.exit("pjdfstest: /dev/fuse is missing")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()]
    src = source_dir(args.source)
    work = Path(tempfile.mkdtemp(prefix="archfs-pjdfstest-"))
    work.chmod(0o755)          # the tests run as other users too: they must reach the mount
    results = {}
    try:
        tests = build(src, work)
        for subset in subsets:
            if not (tests / subset).is_dir():
                sys.exit("pjdfstest: no such subset: %s" % subset)
        for tool in tools:
            (work / tool).mkdir()
            (work / tool).chmod(0o755)
            results[tool] = {}
            for subset in subsets:
                started = time.monotonic()
                res = results[tool][subset] = run_subset(tool, subset, tests, work,
                                                         args.verbose)
                log("%-12s %-10s %s in %.0f s%s" % (tool, subset, _cell(res),
                                                     time.monotonic() - started,
                                                     "; " + res["problem"] if res["problem"]
                                                     else ""))
    finally:
        if args.keep:
            log("logs and archives kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print("pjdfstest %s, as root, %s" % (commit or "(unknown commit)", time.strftime("%Y-%m-%d")))
    print(table(results, tools, subsets))
    if any(r["problem"] for t in results.values() for r in t.values()):
        print("\n! = the mount reported a problem at unmount:")
        for tool, by_subset in results.items():
            for subset, r in by_subset.items():
                if r["problem"]:
                    print("- %s %s: %s" % (tool, subset, r["problem"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pjdfstest": commit, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
