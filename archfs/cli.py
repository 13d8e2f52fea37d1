"""The ``archfs`` command: argument parsing, then the mount package does the work."""

import argparse
import logging
import os
import sys

from archfs import __version__

EXAMPLES = """\
examples:
  archfs mount photos.zip ~/photos         mount read-write, in the background
  ls ~/photos; cp a.jpg ~/photos/2024/     then use it like any folder
  archfs unmount ~/photos                  commit everything and unmount
  archfs mount -o ro photos.zip ~/photos   read-only
  archfs mount -f -v data/ ~/mnt           a directory, in the foreground, debug log
  archfs repair photos.zip                 make a damaged or interrupted archive whole
  archfs compact photos.zip                reclaim the space of replaced members
"""


def _mount_epilog() -> str:
    from archfs.mount import options, statefiles
    return (EXAMPLES + "\noptions for -o (comma-separated, may be repeated):\n"
            + options.describe()
            + "\n\nA missing archive is created (read-write mounts). An archive that is not"
            "\nwritable is mounted read-only, with a warning. The command returns once the"
            "\nmount is live, or fails with one line saying why."
            "\n\nBackground mounts log to %s unless --log-file is given;"
            "\n-f logs to stderr. SIGTERM or SIGINT to the daemon commits and unmounts."
            % statefiles.log_path_hint())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archfs", description="Mount an archive (zip) or a directory as a read-write folder.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="archfs " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    mount = commands.add_parser(
        "mount", help="mount ARCHIVE on MOUNTPOINT", epilog=_mount_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mount ARCHIVE (a zip file or a directory) on the empty directory MOUNTPOINT.")
    mount.add_argument("archive", metavar="ARCHIVE")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT")
    mount.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS",
                       help="mount options, see below")
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="stay in the foreground until unmounted")
    mount.add_argument("-v", "--verbose", action="count", default=0,
                       help="debug logging (-vv: also libfuse calls)")
    mount.add_argument("-q", "--quiet", action="store_true", help="only errors")
    mount.add_argument("--log-file", metavar="FILE", help="write the daemon's log to FILE")

    unmount = commands.add_parser(
        "unmount", aliases=["umount"], help="commit and unmount MOUNTPOINT",
        description="Unmount MOUNTPOINT and wait until the daemon has committed everything.")
    unmount.add_argument("mountpoint", metavar="MOUNTPOINT")
    unmount.add_argument("-z", "--lazy", action="store_true",
                         help="detach now even if busy; the daemon commits when the last "
                              "file is closed")
    unmount.add_argument("--timeout", type=float, metavar="SECONDS",
                         help="give up waiting for the daemon after SECONDS")
    unmount.add_argument("-q", "--quiet", action="store_true", help="only errors")

    repair = commands.add_parser(
        "repair", help="make a damaged or interrupted ARCHIVE readable again",
        description="Cut off an unfinished commit (bytes that are not archfs's own are "
                    "saved beside the archive first), or, when no central directory is "
                    "usable, salvage every intact member into a new one. Run it on an "
                    "archive that is not mounted.")
    repair.add_argument("archive", metavar="ARCHIVE")
    repair.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")

    compact = commands.add_parser(
        "compact", help="rewrite ARCHIVE without the space of replaced members",
        description="Write a fresh copy of ARCHIVE holding only its live members and "
                    "rename it over the original (atomically). Run it on an archive that "
                    "is not mounted; mounts also compact by themselves past a threshold.")
    compact.add_argument("archive", metavar="ARCHIVE")
    compact.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")
    return parser


def _mount(args) -> int:
    from archfs.mount.daemon import MountRequest, run_background, run_foreground
    from archfs.mount.options import OptionError, parse_options

    try:
        options = parse_options(args.options)
    except OptionError as exc:
        print("archfs: %s" % exc, file=sys.stderr)
        return 2
    log_file = os.path.abspath(os.path.expanduser(args.log_file)) if args.log_file else None
    request = MountRequest(
        archive=os.path.abspath(os.path.expanduser(args.archive)),
        mountpoint=os.path.realpath(os.path.abspath(os.path.expanduser(args.mountpoint))),
        options=options, foreground=args.foreground, verbose=args.verbose,
        quiet=args.quiet, log_file=log_file)
    if options.tmpdir:
        options.tmpdir = os.path.abspath(os.path.expanduser(options.tmpdir))
    return run_foreground(request) if args.foreground else run_background(request)


def _unmount(args) -> int:
    from archfs.mount.unmount import UnmountError, unmount

    try:
        return unmount(args.mountpoint, lazy=args.lazy, timeout=args.timeout, quiet=args.quiet)
    except UnmountError as exc:
        print("archfs: %s" % exc, file=sys.stderr)
        return 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "mount":
            return _mount(args)
        if args.command in ("repair", "compact"):
            from archfs import maintenance
            logging.basicConfig(level=logging.WARNING, format="archfs: %(message)s")
            work = maintenance.repair if args.command == "repair" else maintenance.compact
            return work(os.path.abspath(os.path.expanduser(args.archive)), args.quiet)
        return _unmount(args)
    except KeyboardInterrupt:
        print("archfs: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. the state directory cannot be made
        text = exc.strerror or str(exc)
        print("archfs: %s%s" % ("%s: " % exc.filename if exc.filename else "", text),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
