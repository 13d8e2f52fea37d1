"""The exit status of every ``archfs`` command, decided in one place.

Scripts and mount(8) can tell what kind of problem stopped a command
without reading its message: the same kind of problem gives the same status
whichever subcommand met it. The README's "Exit status" table lists them.
"""

import errno as _errno

OK = 0
INTERNAL = 1        # an unexpected exception: a bug in archfs or a plugin
USAGE = 2           # the command line or an -o option is wrong (argparse uses 2 too)
ARCHIVE = 3         # the archive or a member cannot be used as asked
SYSTEM = 4          # mounting, unmounting or the system: FUSE, mountpoint, daemon
INTERRUPTED = 130   # Ctrl-C (128 + SIGINT, as shells report it)

TABLE = (
    (OK, "success (for `archfs unmount`, also a dead mount cleaned up, with a warning)"),
    (INTERNAL, "internal error: a bug in archfs or a plugin (set ARCHFS_DEBUG=1 for the "
               "traceback)"),
    (USAGE, "usage: unknown command or flag, missing argument, bad or unknown `-o` option"),
    (ARCHIVE, "archive problem: no such archive or member, not an archive, damaged, "
              "unsupported, password needed, already mounted read-write, the archive "
              "could not take the changes"),
    (SYSTEM, "mount or system problem: no FUSE, mountpoint missing or unusable, not "
             "mounted, busy, the daemon failed, permission denied outside the archive"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


def of(exc: BaseException) -> int:
    """The exit status for an exception that ended a command.

    An exception may carry its own ``exit_code`` (the mount's checks do, as
    some of them are about the archive); archfs's own errors are archive
    problems, other OS errors system problems, anything else a bug.
    """
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    from archfs.errors import ArchfsError
    if isinstance(exc, ArchfsError):
        return ARCHIVE
    if isinstance(exc, OSError):
        return SYSTEM
    return INTERNAL


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: its message, with the file name when it is not in it."""
    text = exc.strerror or str(exc)
    if getattr(exc, "filename", None) and str(exc.filename) not in text:
        if exc.errno == _errno.ENOENT:
            return "no such file or directory: %s" % exc.filename
        text = "%s: %s" % (exc.filename, text)
    return text


def failure(exc: BaseException) -> dict:
    """What a command needs to report an exception: the one line, the exit
    status, and (for the Python API) the exception's class and errno."""
    code = of(exc)
    if isinstance(exc, OSError):
        message = describe_os_error(exc)
    else:
        message = str(exc) or type(exc).__name__
    if code == INTERNAL:
        message = "internal error: %s: %s" % (type(exc).__name__, exc)
    return {"message": message, "exit": code, "type": type(exc).__name__,
            "errno": getattr(exc, "errno", None)}
