# PYTHON_ARGCOMPLETE_OK  (lets argcomplete's global completion find this command)
"""The ``archfs`` command: argument parsing and start-up only.

``archfs SOURCE MOUNTPOINT [-o OPTIONS]`` without a subcommand is ``archfs
mount``: that is how mount(8) runs a FUSE filesystem (through mount.fuse3)
for ``mount -t fuse.archfs`` and /etc/fstab. Every command ends with one
line per problem and an exit status from ``archfs.exitcodes``.
"""

import os
import sys

from archfs import __version__, exitcodes

# Start-up cost matters here: `archfs unmount` is on the path of every save a
# script waits for, and `archfs mount` on every mount. Modules only some
# commands need (logging, sources, the mount machinery) are imported by them.

COMMANDS = ("mount", "unmount", "umount", "ls", "cat", "info", "repair", "compact")

EXAMPLES = """\
examples:
  archfs mount photos.zip ~/photos         mount read-write, in the background
  ls ~/photos; cp a.jpg ~/photos/2024/     then use it like any folder
  archfs unmount ~/photos                  commit everything and unmount
  archfs mount -o ro photos.zip ~/photos   read-only
  archfs photos.zip ~/photos -o ro         the same, as mount(8) runs it
  archfs mount -f -v data/ ~/mnt           a directory, in the foreground, debug log
  archfs ls -lR photos.zip                 list members without mounting
  archfs cat photos.zip 2024/notes.txt     print a member
  archfs info photos.zip                   format, sizes, dead space, encryption
  archfs repair photos.zip                 make a damaged or interrupted archive whole
  archfs compact photos.zip                reclaim the space of replaced members
"""


def exit_status_text() -> str:
    return "exit status:\n" + "\n".join("  %-4d %s" % (code, text.replace("`", ""))
                                        for code, text in exitcodes.TABLE)


def _mount_epilog() -> str:
    from archfs.mount import options, statefiles
    return (EXAMPLES + "\n" + options.describe()
            + "\n\nA missing archive is created (read-write mounts). An archive that is not"
            "\nwritable is mounted read-only, with a warning. The command returns once the"
            "\nmount is live, or fails with one line saying why."
            "\n\nBackground mounts log to %s unless --log-file is given;"
            "\n-f logs to stderr. SIGTERM or SIGINT to the daemon commits and unmounts."
            "\n\n%s" % (statefiles.log_path_hint(), exit_status_text()))


_PARSER_CLASS = []


def _parser_class():
    """An ArgumentParser whose epilog may be made only when help is shown
    (the mount options' list imports every plugin). Defined at first use:
    argparse and what its help formatter imports are a fifth of the start of
    a plain ``archfs unmount MOUNTPOINT``, which needs no parser."""
    if not _PARSER_CLASS:
        import argparse

        class _Parser(argparse.ArgumentParser):
            def __init__(self, *args, epilog_factory=None, **kwargs):
                super().__init__(*args, **kwargs)
                self._epilog_factory = epilog_factory

            def format_help(self):
                if self._epilog_factory is not None:
                    self.epilog, self._epilog_factory = self._epilog_factory(), None
                return super().format_help()
        _PARSER_CLASS.append(_Parser)
    return _PARSER_CLASS[0]


def _para(text: str) -> str:
    """A description wrapped for the raw help formatter (the epilogs are laid out by hand)."""
    import textwrap
    return textwrap.fill(" ".join(text.split()), 79)


def _options_argument(parser, what: str):
    return parser.add_argument("-o", dest="options", action="append", default=[],
                               metavar="OPTIONS", help=what)


class _Unused:
    """Stands in for a subcommand's parser that this run does not need
    (building all of them was a tenth of a mount's start-up)."""

    def add_argument(self, *args, **kwargs):
        return self


def build_parser(only=None) -> "argparse.ArgumentParser":  # noqa: F821
    """The command line's parser; ``only``: build just that subcommand's."""
    import argparse

    from archfs import completion

    _Parser = _parser_class()
    parser = _Parser(
        prog="archfs", description=_para("Mount an archive (zip) or a directory as a "
                                         "read-write folder, or look into it without "
                                         "mounting."),
        epilog=EXAMPLES + "\n" + exit_status_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="archfs " + __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True

    class commands:      # noqa: N801  (subparsers.add_parser, for the wanted ones only)
        @staticmethod
        def add_parser(name, aliases=(), **kwargs):
            if only is not None and only != name and only not in aliases:
                return _Unused()
            return subparsers.add_parser(name, aliases=aliases, **kwargs)
    raw = argparse.RawDescriptionHelpFormatter

    mount = commands.add_parser(
        "mount", help="mount SOURCE on MOUNTPOINT (also: archfs SOURCE MOUNTPOINT)",
        epilog_factory=_mount_epilog, formatter_class=raw,
        description=_para("Mount SOURCE (a zip file or a directory) on the empty directory "
                    "MOUNTPOINT. 'archfs SOURCE MOUNTPOINT -o OPTIONS', without the word "
                    "mount, is the same: mount(8) and /etc/fstab run it that way."))
    mount.add_argument("archive", metavar="SOURCE").completer = completion.files
    mount.add_argument("mountpoint", metavar="MOUNTPOINT").completer = completion.directories
    _options_argument(mount, "mount options, see below").completer = completion.mount_options
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="stay in the foreground until unmounted")
    mount.add_argument("-v", "--verbose", action="count", default=0,
                       help="debug logging (-vv: also libfuse calls)")
    mount.add_argument("-q", "--quiet", action="store_true", help="only errors")
    mount.add_argument("--log-file", metavar="FILE", help="write the daemon's log to FILE")

    unmount = commands.add_parser(
        "unmount", aliases=["umount"], help="commit and unmount MOUNTPOINT",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("Unmount MOUNTPOINT and wait until the daemon has committed everything "
                    "(umount(8) returns before that). A mount whose daemon was killed is "
                    "removed, with a warning."))
    unmount.add_argument("mountpoint", metavar="MOUNTPOINT").completer = completion.mounts
    unmount.add_argument("-z", "--lazy", action="store_true",
                         help="detach now even if busy; the daemon commits when the last "
                              "file is closed")
    unmount.add_argument("--timeout", type=float, metavar="SECONDS",
                         help="give up waiting for the daemon after SECONDS")
    unmount.add_argument("-q", "--quiet", action="store_true", help="only errors")

    browse_options = "options of the archive's plugin, e.g. password_file=PATH"
    ls = commands.add_parser(
        "ls", help="list the members of ARCHIVE without mounting it",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("List the entries of PATH in ARCHIVE (default: its top), one per line, "
                    "sorted by name. A member file is listed by itself."))
    ls.add_argument("archive", metavar="ARCHIVE").completer = completion.files
    ls.add_argument("path", metavar="PATH", nargs="?", default="").completer = completion.members
    ls.add_argument("-l", dest="long", action="store_true",
                    help="long listing: mode, size, modification time, symlink target")
    ls.add_argument("-R", dest="recursive", action="store_true",
                    help="recursive: every entry below PATH, as a path relative to it")
    _options_argument(ls, browse_options)

    cat = commands.add_parser(
        "cat", help="print members of ARCHIVE without mounting it",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("Write the content of each MEMBER to standard output (symlinks inside "
                    "the archive are followed)."))
    cat.add_argument("archive", metavar="ARCHIVE").completer = completion.files
    cat.add_argument("members", metavar="MEMBER", nargs="+").completer = completion.members
    _options_argument(cat, browse_options)

    info = commands.add_parser(
        "info", help="describe ARCHIVE: format, members, sizes, dead space, encryption",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("Show the format, member counts and sizes, compression, dead space, "
                    "encryption, damaged members and what archfs repair would do, without "
                    "mounting and without reading member data. Exits 3 when the archive "
                    "cannot be opened (after showing what it can)."))
    info.add_argument("archive", metavar="ARCHIVE").completer = completion.files
    info.add_argument("--json", action="store_true", help="machine-readable output")
    _options_argument(info, browse_options)

    repair = commands.add_parser(
        "repair", help="make a damaged or interrupted ARCHIVE readable again",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("Cut off an unfinished commit (bytes that are not archfs's own are "
                    "saved beside the archive first), or, when no central directory is "
                    "usable, salvage every intact member into a new one. Run it on an "
                    "archive that is not mounted; archfs info ARCHIVE says what it would do."))
    repair.add_argument("archive", metavar="ARCHIVE").completer = completion.files
    repair.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")

    compact = commands.add_parser(
        "compact", help="rewrite ARCHIVE without the space of replaced members",
        epilog=exit_status_text(), formatter_class=raw,
        description=_para("Write a fresh copy of ARCHIVE holding only its live members and "
                    "rename it over the original (atomically). Run it on an archive that "
                    "is not mounted; mounts also compact by themselves past a threshold."))
    compact.add_argument("archive", metavar="ARCHIVE").completer = completion.files
    compact.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")
    return parser


# Flags of `archfs mount` that take a value, for finding the first positional.
_MOUNT_VALUE_FLAGS = ("-o", "--log-file")


def mount8_form(argv):
    """``archfs SOURCE MOUNTPOINT [-o ...]`` (how mount.fuse3 runs a
    filesystem) -> the same with ``mount`` in front. A source named like a
    command is written ``./NAME``."""
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help", "--version", "--"):
            break
        if arg in _MOUNT_VALUE_FLAGS:
            i += 2
            continue
        if not arg.startswith("-"):
            positional.append(arg)
        i += 1
    if len(positional) >= 2 and positional[0] not in COMMANDS:
        return ["mount"] + argv
    return argv


def _mount(args) -> int:
    from archfs import sources
    from archfs.mount.daemon import MountRequest, run_background, run_foreground
    from archfs.mount.options import parse_options

    options = parse_options(args.options)
    log_file = os.path.abspath(os.path.expanduser(args.log_file)) if args.log_file else None
    request = MountRequest(
        archive=sources.normalize(args.archive),
        mountpoint=os.path.realpath(os.path.abspath(os.path.expanduser(args.mountpoint))),
        options=options, foreground=args.foreground, verbose=args.verbose,
        quiet=args.quiet, log_file=log_file)
    if not args.foreground:
        return run_background(request)
    status = run_foreground(request)
    # The daemon has committed, unmounted and logged its end: it leaves as the
    # background daemon does, without tearing down its member index object by
    # object (that made `archfs unmount` wait for the exit of a big mount).
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _unmount(args) -> int:
    from archfs.mount.unmount import unmount

    for warning in unmount(args.mountpoint, lazy=args.lazy, timeout=args.timeout,
                           quiet=args.quiet):
        print("archfs: warning: %s" % warning, file=sys.stderr)
    return exitcodes.OK


def _browse(args) -> int:
    from archfs import browse

    out = sys.stdout.buffer
    tty = sys.stdout.isatty()
    if args.command == "info":
        ok = browse.info(args.archive, args.options, out, args.json, tty)
        return exitcodes.OK if ok else exitcodes.ARCHIVE
    with browse.open_source(args.archive, args.options) as archive:
        if args.command == "ls":
            browse.ls(archive, args.archive, args.path, args.long, args.recursive, out, tty)
            return exitcodes.OK
        status = exitcodes.OK
        for member in args.members:
            try:
                browse.cat(archive, args.archive, member, out)
            except BrokenPipeError:
                raise
            except OSError as exc:   # like cat: report it, go on with the next one
                out.flush()
                status = status or _report(exc)
        return status


def _maintain(args) -> int:
    from archfs import maintenance, sources
    from archfs.errors import NoSuchFile

    path = sources.normalize(args.archive)
    if not sources.is_url(path) and not os.path.lexists(path):
        raise NoSuchFile("no such archive: %s" % path)
    work = maintenance.repair if args.command == "repair" else maintenance.compact
    return work(path, args.quiet)


def _report(exc: BaseException) -> int:
    """Print the one line for ``exc``; its exit status."""
    problem = exitcodes.failure(exc)
    print("archfs: %s" % problem["message"], file=sys.stderr)
    if problem["exit"] == exitcodes.INTERNAL and os.environ.get("ARCHFS_DEBUG"):
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    return problem["exit"]


HANDLERS = {"mount": _mount, "unmount": _unmount, "umount": _unmount, "ls": _browse,
            "cat": _browse, "info": _browse, "repair": _maintain, "compact": _maintain}


def _plain_unmount(argv):
    """The arguments of ``archfs unmount MOUNTPOINT`` without options (what a
    script waiting for a save runs), read without a parser; else None."""
    if len(argv) == 2 and argv[0] in ("unmount", "umount") and \
            not argv[1].startswith("-") and "_ARGCOMPLETE" not in os.environ:
        import types
        return types.SimpleNamespace(command=argv[0], mountpoint=argv[1], lazy=False,
                                     timeout=None, quiet=False)
    return None


def _mount_source(argv):
    """The SOURCE of ``archfs mount ... SOURCE MOUNTPOINT``, else None."""
    if not argv or argv[0] != "mount":
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help", "--"):
            return None
        if arg in _MOUNT_VALUE_FLAGS:
            i += 2
            continue
        if not arg.startswith("-"):
            return arg
        i += 1
    return None


_MOUNT_FLAGS = {"-f": "foreground", "--foreground": "foreground", "-q": "quiet",
                "--quiet": "quiet"}


def _plain_mount(argv):
    """The arguments of a plain ``archfs mount`` (SOURCE MOUNTPOINT with
    -o, -f, -v, -q, --log-file as separate words), read without argparse,
    whose imports are a noticeable part of a second mount's start; None for
    anything else (help, errors, other spellings), which argparse reads."""
    if not argv or argv[0] != "mount" or "_ARGCOMPLETE" in os.environ:
        return None
    import types
    args = types.SimpleNamespace(command="mount", options=[], foreground=False, verbose=0,
                                 quiet=False, log_file=None)
    positional = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _MOUNT_VALUE_FLAGS:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            if arg == "-o":
                args.options.append(argv[i + 1])
            else:
                args.log_file = argv[i + 1]
            i += 2
            continue
        if arg in _MOUNT_FLAGS:
            setattr(args, _MOUNT_FLAGS[arg], True)
        elif arg == "--verbose" or (len(arg) > 1 and arg.strip("v") == "-"):
            args.verbose += 1 if arg == "--verbose" else len(arg) - 1
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        return None
    args.archive, args.mountpoint = positional
    return args


def main(argv=None) -> int:
    command = argv is None                # the command itself, not a caller in Python
    argv = mount8_form(list(sys.argv[1:] if argv is None else argv))
    source = _mount_source(argv) if command else None
    if source is not None and "_ARGCOMPLETE" not in os.environ:
        from archfs import startup       # the disk reads ahead while we start (see there)
        startup.prefetch(source)
        # The collector would walk the young objects of every module imported
        # from here on, finding nothing (a sixth of the imports' CPU); the mount
        # daemon freezes what it loaded and turns it back on (mount.daemon.serve).
        import gc
        gc.disable()
    args = _plain_unmount(argv) or _plain_mount(argv)
    if args is None:
        wanted = argv[0] if argv and argv[0] in COMMANDS and \
            "_ARGCOMPLETE" not in os.environ else None
        parser = build_parser(only=wanted)
        if "_ARGCOMPLETE" in os.environ:   # a shell asks for completions: answer and exit
            from archfs import completion
            completion.autocomplete(parser)
        args = parser.parse_args(argv)     # a usage error exits with status 2 here
    if args.command not in ("unmount", "umount"):   # which logs nothing
        import logging
        logging.basicConfig(level=logging.WARNING, format="archfs: %(message)s")
    try:
        return HANDLERS[args.command](args)
    except KeyboardInterrupt:
        print("archfs: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    except BrokenPipeError:            # `archfs cat ... | head`: the reader had enough
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return exitcodes.OK
    except Exception as exc:
        return _report(exc)


if __name__ == "__main__":
    sys.exit(main())
