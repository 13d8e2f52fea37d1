"""Shell completion for bash and zsh, through argcomplete when it is installed
(``pip install 'archfs[completion]'``; see the README).

The shell runs ``archfs`` with ``_ARGCOMPLETE`` set; ``autocomplete`` then
answers and exits. The completers below are plain functions set on the
parser's arguments, so archfs needs argcomplete only when a shell asks.
They never raise: a half-typed command line is the normal case.
"""

import os


def autocomplete(parser) -> None:
    try:
        import argcomplete
    except ImportError:
        return      # nothing to answer with; the shell falls back to file names
    argcomplete.autocomplete(parser)


def _entries(prefix: str, only_dirs: bool):
    directory, _, start = prefix.rpartition("/")
    where = os.path.expanduser(directory + "/" if directory else ".")
    try:
        with os.scandir(where) as found:
            names = [(entry.name, entry.is_dir()) for entry in found]
    except OSError:
        return []
    head = directory + "/" if directory else ""
    return sorted(head + name + ("/" if is_dir else "") for name, is_dir in names
                  if name.startswith(start) and (is_dir or not only_dirs)
                  and (start.startswith(".") or not name.startswith(".")))


def files(prefix, **_):
    """Archives: files and directories (a directory is mounted too)."""
    return _entries(prefix, only_dirs=False)


def directories(prefix, **_):
    return _entries(prefix, only_dirs=True)


def mounts(prefix, **_):
    """archfs mounts, for unmount."""
    from archfs.mount import mounttable
    return sorted(point for point, fstype in mounttable.mounts().items()
                  if mounttable.is_archfs(fstype) and point.startswith(
                      os.path.abspath(os.path.expanduser(prefix)) if prefix else ""))


def mount_options(prefix, parsed_args=None, **_):
    """-o names: archfs's, every plugin's and mount(8)'s; ``name=`` when it takes a value."""
    try:
        from archfs.archives import plugins
        from archfs.optionspec import declared
        from archfs.mount import options
        head, _, piece = prefix.rpartition(",")
        head = head + "," if head else ""
        candidates = {spec.name: spec.metavar is not None for spec in options.ARCHFS}
        for cls in plugins().values():
            for spec in declared(getattr(cls, "options", ())).values():
                candidates[spec.name] = spec.metavar is not None
        for names, _, _ in options.GENERIC:
            for name in names:
                if not name.endswith("*"):
                    candidates.setdefault(name, False)
        return [head + name + ("=" if takes_value else "")
                for name, takes_value in sorted(candidates.items()) if name.startswith(piece)]
    except Exception:
        return []


def members(prefix, parsed_args=None, **_):
    """Paths inside the archive named earlier on the line (read through its plugin)."""
    try:
        from archfs import browse
        directory, _, start = prefix.rpartition("/")
        with browse.open_source(parsed_args.archive, getattr(parsed_args, "options", [])) as a:
            children = a.listdir(directory.strip("/"))
        head = directory + "/" if directory else ""
        import stat
        return sorted(head + entry[0] + ("/" if stat.S_ISDIR(entry[1]) else "")
                      for entry in children if entry[0].startswith(start))
    except Exception:
        return []
