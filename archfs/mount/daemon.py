"""Starting a mount: checks, background or foreground, readiness, the end.

Background (the default): the command forks a daemon and waits on a pipe.
The daemon does every check, opens the archive and mounts; it writes
``W text`` lines for warnings, then ``OK`` from FUSE's init (the mount is
live) or ``E text`` (why not). The command prints warnings and errors as one
line each and returns 0 only after ``OK``. The daemon detaches (own session,
stdio to its log file) so a caller capturing the command's output does not
wait for it.

Foreground (``-f``): the same steps in the command's own process.

Either way the daemon records itself in the state directory (for ``archfs
unmount``), lets libfuse handle SIGINT/SIGTERM/SIGHUP (end the loop, unmount)
and then commits in FUSE's destroy before it exits; its exit status says
whether everything reached the archive.
"""

import gc
import json
import logging
import os
import signal
import sys
import time
from typing import List, NamedTuple, Optional

from archfs import exitcodes, sources, startup
from archfs.engine import heap, transports
from archfs.errors import ArchiveBusy
from archfs.mount import fuselib, preflight, statefiles
from archfs.mount.options import MountOptions, commit_interval, plugin_options
from archfs.mount.readahead import set_readahead_when_live
from archfs.mount.scratch import remove_stale
from archfs.progress import ProgressBar

log = logging.getLogger("archfs.mount")

LOG_FORMAT = "%(asctime)s archfs[%(process)d] %(levelname)s %(message)s"
# commits of a remote archive are uploads: fewer, bigger ones (see the README)
TERMINAL_FORMAT = "archfs: %(levelname)s: %(message)s"


class MountRequest:
    """What to mount and how. (Plain classes here and in ``options``: the
    dataclasses module imports inspect, ast and dis, a tenth of the start-up
    of a second mount; ``subprocess`` and ``tempfile`` are imported where used.)"""

    def __init__(self, archive: str, mountpoint: str, options: MountOptions,
                 foreground: bool = False, verbose: int = 0, quiet: bool = False,
                 log_file: Optional[str] = None, lock_fd: Optional[int] = None):
        self.archive = archive            # absolute path, or a URL (see archfs.sources)
        self.mountpoint = mountpoint      # real absolute path
        self.options = options
        self.foreground = foreground
        self.verbose = verbose
        self.quiet = quiet
        self.log_file = log_file
        self.lock_fd = lock_fd            # held for the daemon's life

    def to_dict(self) -> dict:
        data = dict(self.__dict__, options=self.options.to_dict())
        data.pop("lock_fd")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "MountRequest":
        return cls(**dict(data, options=MountOptions.from_dict(data["options"])))


class Reporter:
    """Tells the waiting command (or, in the foreground, the user) how it goes."""

    def __init__(self, fd: Optional[int] = None, progress=None):
        self.fd = fd
        self.outcome: Optional[str] = None
        self._last_progress = 0.0
        if progress is not None:           # foreground: draw it ourselves
            self.progress = progress

    def _send(self, line: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # the command is gone; the log still has it

    def _close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def warn(self, text: str) -> None:
        log.warning(text)
        self._send("W " + text)

    def progress(self, what: str, done: int, total: int) -> None:
        """A long step under way (indexing a big archive), at most 10 a second."""
        now = time.monotonic()
        if now - self._last_progress >= 0.1:
            self._last_progress = now
            self._send("P %d %d %s" % (done, total, what))

    def ready(self) -> None:
        if self.outcome is None:
            self.outcome = "ok"
            self._send("OK")
            self._close()

    def fail(self, problem: dict) -> None:
        """``problem`` as made by ``exitcodes.failure``."""
        if self.outcome is None:
            self.outcome = "failed"
            log.error("cannot mount: %s", problem["message"])
            self._send("E " + json.dumps(problem))
            self._close()


def setup_logging(request: MountRequest, log_file: Optional[str]) -> None:
    level = (logging.DEBUG if request.verbose
             else logging.WARNING if request.quiet else logging.INFO)
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
    for name, lvl in (("archfs", level),
                      ("fuse", logging.DEBUG if request.verbose >= 2 else logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(lvl)
        logger.propagate = False


class StderrCapture:
    """Catches what libfuse prints to stderr while mounting, for the one-line
    error; released (and replayed into the log) once the mount is live."""

    def __init__(self):
        if hasattr(os, "memfd_create"):    # tempfile's imports cost a mount's start
            self._file = os.fdopen(os.memfd_create("archfs-stderr"), "w+b")
        else:
            import tempfile
            self._file = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)

    def release(self, level: int = logging.WARNING) -> List[str]:
        if self._saved is None:
            return []
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        lines = [line.strip() for line in
                 self._file.read().decode("utf-8", "replace").splitlines() if line.strip()]
        self._file.close()
        for line in lines:
            log.log(level, "libfuse: %s", line)
        return lines


# How long a thread that wants the GIL waits before the holder must hand it
# over (Python's default: 5 ms). A request thread then waits at most this
# long behind the committer's Python (placing a group of copied-back files,
# planning a directory: stretches of 0.3-1 ms without a blocking call).
# Measured on cp -r of 10,000 small files, alternating with the default:
# 8-9% less time, 11 of 12 runs faster, source cached or not; sequential
# reads and grep -r unchanged.
SWITCH_INTERVAL = 0.0002


def _kernel_checks_permissions(opts) -> bool:
    """Whether the kernel checks permissions (``default_permissions``).

    Always, except where root mounts without allow_other/allow_root: the
    kernel then lets no process in but the mounting user's, so every caller
    is root, whom those checks never refuse (exec of a file without an x bit
    is refused either way, and ``access`` answers for X_OK). Under them the
    kernel asks for a directory's attributes again after every change in it:
    one GETATTR per file ``cp -r`` creates, a fifth of its requests.
    """
    return os.geteuid() != 0 or bool(opts.allow_other or opts.allow_root)


def _fuse_kwargs(request: MountRequest, read_only: bool, uses_inodes: bool = False) -> dict:
    opts = request.options
    default_timeout = 60.0 if read_only else 1.0
    kwargs = {
        "foreground": True,
        "nothreads": False,
        "raw_fi": True,
        "fsname": transports.redact(request.archive).replace("\\", "\\\\").replace(",", "\\,"),
        "subtype": "archfs",
        "default_permissions": _kernel_checks_permissions(opts),
        # no hard_remove: libfuse then renames a file unlinked while open to a
        # hidden name, which keeps fstat, fchmod, futimens on it working
        # (see OpenFiles.hide); with hard_remove they fail with ESTALE
        "entry_timeout": opts.entry_timeout if opts.entry_timeout is not None
        else default_timeout,
        "attr_timeout": opts.attr_timeout if opts.attr_timeout is not None else default_timeout,
        "negative_timeout": default_timeout,
        "file_readahead": opts.file_readahead != "0",
    }
    if read_only:
        kwargs["ro"] = True
    if opts.allow_other:
        kwargs["allow_other"] = True
    if opts.allow_root:
        kwargs["allow_root"] = True
    for flag in opts.kernel:     # mount(8) flags such as noexec; libfuse hands them on
        kwargs[flag] = True
    if fuselib.major_version() == 2:
        kwargs["big_writes"] = True  # libfuse2 otherwise writes 4 KiB per call
    if uses_inodes:
        kwargs["use_ino"] = True     # the plugin numbers inodes (hard links share one)
    return kwargs


def _open_archive(request: MountRequest, reporter: Reporter):
    """Checks, lock and plugin; returns (archive, read_only)."""
    from archfs.archives import archive_class

    read_only = request.options.read_only
    # the options first: a usage error is reported before any system problem
    cls = archive_class(request.archive, "r" if read_only else "a")
    opts = dict(plugin_options(request.options, cls), progress=reporter.progress)
    preflight.check_fuse_device()
    fuselib.check()
    preflight.check_fusermount()
    preflight.check_mountpoint(request.mountpoint)
    if not sources.is_url(request.archive):
        read_only, warnings = preflight.check_archive(os.path.realpath(request.archive),
                                                      request.mountpoint, read_only)
        for text in warnings:
            reporter.warn(text)
    mode = "r" if read_only else "a"
    remote = transports.is_remote(request.archive)
    request.options.commit_interval = commit_interval(request.options, remote)
    for item in request.options.ignored:
        log.debug("option %s is for mount(8); ignored", item)
    try:
        request.lock_fd = statefiles.lock_archive(_lock_path(request), exclusive=not read_only)
    except BlockingIOError:
        raise ArchiveBusy("%s is already mounted%s by another archfs"
                          % (request.archive, "" if read_only else " (or being written)")
                          ) from None
    archive = cls(url=request.archive, mode=mode, opts=opts)
    for text in getattr(archive, "warnings", ()):
        reporter.warn(text)
    try:
        if not read_only and not archive.writable:
            why = getattr(archive, "why_read_only", None)
            reporter.warn("%s: %s: mounting it read-only" % (transports.redact(request.archive),
                                                             why) if why else
                          "the %s plugin opened %s read-only" % (archive.name, request.archive))
            read_only = True
    except BaseException:
        archive.close()
        raise
    return archive, read_only


def _lock_path(request: MountRequest) -> str:
    return sources.lock_key(request.archive)


def _reason(exc: BaseException) -> str:
    return exitcodes.failure(exc)["message"]


def serve(request: MountRequest, reporter: Reporter) -> int:
    """Mount and serve until unmounted; returns the exit status."""
    from archfs.mount import binding
    from archfs.mount.operations import ArchiveOperations
    from archfs.mount.session import MountSession

    # The index is millions of small objects that live as long as the mount:
    # the collector would walk all of them again and again while they are
    # built (and at every full collection afterwards) without ever finding
    # garbage among them. Collect nothing while loading, then move them out
    # of the collector's sight.
    gc.disable()
    heap.keep_freed_memory()
    try:
        archive, read_only = _open_archive(request, reporter)
    except Exception as exc:
        gc.enable()
        log.debug("mount checks failed", exc_info=True)
        problem = exitcodes.failure(exc)
        reporter.fail(problem)
        if request.lock_fd is not None:
            statefiles.unlock_archive(_lock_path(request), request.lock_fd)
        return problem["exit"]

    gc.freeze()
    gc.enable()
    sys.setswitchinterval(SWITCH_INTERVAL)
    os.chdir("/")  # do not keep the caller's directory busy (the archive is open now)
    capture = None
    ready: list = []            # what was loaded when the mount went live

    def on_ready():
        ready.append(startup.snapshot())
        if capture is not None:
            capture.release(logging.DEBUG)  # only libfuse's notes once it mounted
        if request.options.readahead_kb:
            set_readahead_when_live(request.mountpoint, request.options.readahead_kb)
        log.info("mounted %s on %s (%s%s)", transports.redact(request.archive),
                 request.mountpoint,
                 "read-only" if read_only else "read-write",
                 "" if read_only else ", commit interval %gs" % request.options.commit_interval)
        reporter.ready()

    session = MountSession(archive, request.options, on_ready=on_ready)
    if not read_only:
        for path in remove_stale(session.scratch.base):
            reporter.warn("%s holds files an earlier archfs could not store; look through "
                          "it, then delete it" % path)
    operations = ArchiveOperations(session)
    statefiles.write_running(request.mountpoint, {
        "archive": request.archive, "log_file": request.log_file,
        "fusermount": fuselib.find_fusermount(), "read_only": read_only})
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # libfuse installs its handlers only over SIG_DFL
    status, problem = 0, None
    try:
        capture = StderrCapture()
        binding.serve(operations, request.mountpoint,
                      **_fuse_kwargs(request, read_only, getattr(archive, "uses_inodes", False)))
    except Exception as exc:
        lines = capture.release() if capture is not None else []
        if not session.live:
            problem = lines[-1] if lines else "libfuse could not mount %s (%s)" % (
                request.mountpoint, _reason(exc))
        elif isinstance(exc, RuntimeError) and session.finished:
            # libfuse reports a loop ended by SIGINT/SIGTERM/SIGHUP as an error
            # code; the mount was served and finished in destroy all the same.
            log.info("the FUSE loop ended on a signal (libfuse status %s)", exc)
        else:
            problem = "the FUSE loop failed: %s" % _reason(exc)
            log.error(problem, exc_info=True)
    finally:
        if capture is not None:
            capture.release()
        session.finish()
    if not session.live:
        problem = problem or "libfuse could not mount %s" % request.mountpoint
        status = exitcodes.SYSTEM
        reporter.fail({"message": problem, "exit": status, "type": "MountError",
                       "errno": None})
    elif session.problem or problem:
        # what could not be stored is the archive's problem; a failed loop the mount's
        status = exitcodes.ARCHIVE if session.problem else exitcodes.SYSTEM
        problem = session.problem or problem
        log.error("unmounted with a problem: %s", problem)
    else:
        log.info("unmounted %s; everything is committed", request.mountpoint)
    if request.lock_fd is not None:
        statefiles.unlock_archive(_lock_path(request), request.lock_fd)
    statefiles.write_exit(request.mountpoint, status, problem)
    if ready:
        startup.record(ready[0])        # what the next mount reads ahead (archfs.startup)
    startup.reap()
    return status


def _redirect_stdio(log_file: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


class Started(NamedTuple):
    """How a background start went, as the daemon reported it."""

    ok: bool
    problem: Optional[dict]     # see ``exitcodes.failure``; None when ok
    warnings: List[str]
    pid: int


def _read_reports(fd: int, quiet: bool, show_warnings: bool):
    """Relay the daemon's lines; returns (ok, problem or None, warnings)."""
    bar = ProgressBar(enabled=False if quiet else None)
    warnings = []
    try:
        with os.fdopen(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                kind, _, text = line.partition(" ")
                if kind == "P":
                    done, total, what = text.split(" ", 2)
                    bar(what, int(done), int(total))
                    continue
                bar.finish()
                if kind == "W":
                    warnings.append(text)
                    if show_warnings and not quiet:
                        print("archfs: warning: %s" % text, file=sys.stderr)
                elif kind == "OK":
                    return True, None, warnings
                elif kind == "E":
                    return False, json.loads(text), warnings
    finally:
        bar.finish()
    return False, None, warnings


def _ended_early(log_file: str) -> dict:
    return {"message": "the mount daemon ended before the mount was ready (see %s)" % log_file,
            "exit": exitcodes.SYSTEM, "type": "MountError", "errno": None}


LOG_ROTATE_BYTES = 10 << 20


def _log_file(request: MountRequest) -> str:
    """The daemon's log: --log-file, else the default one (keeping one older log
    when it has grown large)."""
    if request.log_file:
        return request.log_file
    log_file = statefiles.log_path(request.mountpoint)
    try:
        if os.path.getsize(log_file) > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file + ".1")
    except OSError:
        pass
    return log_file


def run_background(request: MountRequest) -> int:
    """The command's way: fork the daemon, relay its reports, return the exit status."""
    request.log_file = _log_file(request)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon
        status = exitcodes.INTERNAL
        startup.disown()
        try:
            os.close(read_fd)
            os.setsid()
            _redirect_stdio(request.log_file)
            setup_logging(request, request.log_file)
            status = serve(request, Reporter(write_fd))
        except BaseException:
            logging.getLogger("archfs").exception("the mount daemon failed")
        finally:
            logging.shutdown()
            os._exit(status)
    os.close(write_fd)
    ok, problem, _ = _read_reports(read_fd, request.quiet, show_warnings=True)
    if ok:
        return exitcodes.OK
    os.waitpid(pid, 0)
    problem = problem or _ended_early(request.log_file)
    print("archfs: %s" % problem["message"], file=sys.stderr)
    return problem["exit"]


_CHILD = "from archfs.mount.daemon import child_main; child_main()"


def start_detached(request: MountRequest) -> Started:
    """The Python API's way: start the daemon as a new interpreter, not a fork
    (forking a program that runs threads can deadlock the child). The request,
    which may hold a password, goes through a pipe rather than the command line."""
    import subprocess

    import archfs
    request.log_file = _log_file(request)
    read_fd, write_fd = os.pipe()
    top = os.path.dirname(os.path.dirname(os.path.abspath(archfs.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (top, env.get("PYTHONPATH")) if p)
    try:
        with open(request.log_file, "ab") as log_out:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=log_out,
                stderr=log_out, pass_fds=(write_fd,), start_new_session=True, env=env)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        child.stdin.write(json.dumps({"request": request.to_dict(), "fd": write_fd}).encode())
        child.stdin.close()
    except BrokenPipeError:
        pass
    ok, problem, warnings = _read_reports(read_fd, quiet=True, show_warnings=False)
    if not ok:
        child.wait()
        problem = problem or _ended_early(request.log_file)
    _children.append(child)    # reaped when it ends (see reap)
    return Started(ok, problem, warnings, child.pid)


_children: list = []          # subprocess.Popen objects


def reap() -> None:
    """Collect daemons started by ``start_detached`` that have ended."""
    _children[:] = [child for child in _children if child.poll() is None]


def child_main() -> None:
    """The daemon process ``start_detached`` runs."""
    data = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    request = MountRequest.from_dict(data["request"])
    status = exitcodes.INTERNAL
    try:
        setup_logging(request, request.log_file)
        status = serve(request, Reporter(data["fd"]))
    except BaseException:
        logging.getLogger("archfs").exception("the mount daemon failed")
    finally:
        logging.shutdown()
        os._exit(status)


def run_foreground(request: MountRequest) -> int:
    setup_logging(request, request.log_file)
    bar = ProgressBar(enabled=False if request.quiet else None)
    reporter = Reporter(None, progress=bar)
    try:
        return serve(request, reporter)
    finally:
        bar.finish()
