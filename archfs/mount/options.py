"""The ``-o`` mount options: declared once, checked with a one-line error.

Three kinds, all listed by ``archfs mount --help`` and the README's table
(both made from the declarations here, see ``describe`` and
``markdown_table``):

- archfs's own (``ARCHFS``), handled by the mount;
- the options mount(8) and /etc/fstab pass to every filesystem
  (``GENERIC``): passed to the kernel, always in effect, or ignored;
- a plugin's, declared by its class (``options``, see
  ``archfs.optionspec``): any other ``name[=value]`` is kept in
  ``MountOptions.plugin`` and checked once the plugin is known.

A comma inside a value is written ``\\,``. Every problem is an
``OptionError``: an ``InvalidArgument`` (EINVAL) that is also a
``ValueError``, and exit status 2 (usage) for the command.
"""

import textwrap
from typing import Dict, Iterable, List, Optional, Tuple

from archfs import exitcodes
from archfs.optionspec import Option, boolean, declared, path, seconds, whole
from archfs.errors import InvalidArgument


class OptionError(InvalidArgument, ValueError):
    """A bad -o option; the message is the one line the user sees."""

    exit_code = exitcodes.USAGE


ARCHFS = (
    Option("ro", None, "off", "mount read-only"),
    Option("rw", None, "on", "mount read-write"),
    Option("commit_interval", "SECONDS", "1, remote 30",
           "seconds between commits of closed files; 0 commits at every close (a remote "
           "archive's default is longer: each commit is an upload)", seconds),
    Option("allow_other", None, "off",
           "let other users use the mount (for a non-root user it needs user_allow_other "
           "in /etc/fuse.conf); the archive's recorded permissions then decide who reads "
           "what"),
    Option("allow_root", None, "off", "let root use the mount"),
    Option("tmpdir", "DIR", "beside the archive",
           "where files being written wait until they are stored; beside the archive, "
           "a full disk shows at write(2)", path),
    Option("attr_timeout", "SECONDS", "1, read-only 60",
           "how long the kernel caches attributes", seconds),
    Option("entry_timeout", "SECONDS", "1, read-only 60",
           "how long the kernel caches names", seconds),
    Option("readahead_kb", "KIB", "1024",
           "the kernel's readahead, which sets the size of reads (set by root only; 0 keeps "
           "the kernel's default)", whole(0)),
    Option("file_readahead", "0/1", "1",
           "read-only mounts: while a program reads a directory's small files in listing "
           "order (grep -r, tar, cp -r), decode the next ones ahead and put them into the "
           "kernel's page cache; 0 turns it off", boolean),
)
KNOWN: Dict[str, Option] = {opt.name: opt for opt in ARCHFS}

# What mount(8) and fstab lines pass on: (names, effect, help). Effects:
# "kernel" -> given to libfuse; "always" -> already archfs's behaviour;
# "sync" -> commit_interval=0; "ignored" -> accepted, nothing to do.
# A name ending in "*" is a prefix.
GENERIC: Tuple[Tuple[Tuple[str, ...], str, str], ...] = (
    (("noexec", "exec"), "kernel", "whether programs in the mount may be run (passed to "
                                   "the kernel)"),
    (("noatime", "atime", "relatime", "norelatime", "strictatime", "nostrictatime",
      "nodiratime", "diratime", "lazytime", "nolazytime"), "kernel",
     "access-time flags (passed to the kernel)"),
    (("nodev", "nosuid"), "always", "always in effect"),
    (("dev", "suid"), "ignored",
     "ignored: archfs always mounts nodev,nosuid, so an archive's device entries and "
     "set-user-ID bits never take effect (mount.fuse3 adds dev,suid to every mount)"),
    (("sync",), "sync", "commit every file as it is closed (commit_interval=0)"),
    (("async",), "ignored", "the default: commits every commit_interval"),
    (("auto", "noauto", "user", "users", "nouser", "owner", "group", "defaults", "_netdev",
      "nofail", "user=*", "x-*", "comment=*"), "ignored",
     "for mount(8) and systemd; ignored by archfs"),
)


def generic_effect(name: str, item: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """(effect, names of its group) for a mount(8) option, else None."""
    for names, effect, _ in GENERIC:
        for known in names:
            if known.endswith("*") and item.startswith(known[:-1]):
                return effect, names
            if not known.endswith("*") and name == known:
                return effect, names
    return None


class MountOptions:
    """The options of a mount. A plain class: the dataclasses module imports
    inspect, ast and dis, which a mount's start-up does not otherwise need."""

    def __init__(self, read_only: bool = False, commit_interval: Optional[float] = None,
                 allow_other: bool = False, allow_root: bool = False,
                 tmpdir: Optional[str] = None, attr_timeout: Optional[float] = None,
                 entry_timeout: Optional[float] = None, readahead_kb: int = 1024,
                 file_readahead: str = "1",
                 kernel: Optional[List[str]] = None, ignored: Optional[List[str]] = None,
                 plugin: Optional[Dict[str, Optional[str]]] = None):
        self.read_only = read_only
        self.commit_interval = commit_interval    # None: see commit_interval() below
        self.allow_other = allow_other
        self.allow_root = allow_root
        self.tmpdir = tmpdir
        self.attr_timeout = attr_timeout
        self.entry_timeout = entry_timeout
        self.readahead_kb = readahead_kb
        self.file_readahead = file_readahead
        self.kernel: List[str] = [] if kernel is None else kernel    # mount(8) flags
        self.ignored: List[str] = [] if ignored is None else ignored  # accepted, no effect
        self.plugin: Dict[str, Optional[str]] = {} if plugin is None else plugin  # None: no value

    def __repr__(self) -> str:
        return "MountOptions(%s)" % ", ".join("%s=%r" % kv for kv in self.__dict__.items())

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def to_dict(self) -> dict:
        """Plain data, to hand the options to a daemon in another process."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "MountOptions":
        return cls(**data)


def split_option_text(text: str) -> List[str]:
    """``a,b=c\\,d`` -> ``['a', 'b=c,d']``."""
    items, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _convert(spec: Option, has_value: bool, value: str):
    if spec.loose:
        return value if has_value else ""
    if spec.metavar is None:
        if has_value:
            raise OptionError("option %s takes no value" % spec.name)
        return True
    if not has_value:
        raise OptionError("option %s needs a value: -o %s=%s" % (spec.name, spec.name,
                                                                 spec.metavar))
    if spec.convert is None:
        return value
    try:
        return spec.convert(value)
    except ValueError as exc:
        raise OptionError("option %s %s, not %r" % (spec.name, exc, value)) from None


def parse_items(items: Iterable[Tuple[str, Optional[str]]]) -> MountOptions:
    """(name, value or None) pairs, in order; later settings win."""
    opts = MountOptions()
    for name, value in items:
        name = name.strip()
        has_value = value is not None
        value = value if has_value else ""
        if not name:
            raise OptionError("empty option name in -o %s=%s" % (name, value))
        spec = KNOWN.get(name)
        if spec is not None:
            converted = _convert(spec, has_value, value)
            if name in ("ro", "rw"):
                opts.read_only = name == "ro"
            elif name in ("allow_other", "allow_root"):
                setattr(opts, name, True)
            else:
                setattr(opts, name, converted)
            continue
        item = name + ("=" + value if has_value else "")
        generic = generic_effect(name, item)
        if generic is not None:
            effect, _ = generic
            if has_value and not item.startswith(("x-", "comment=", "user=")):
                raise OptionError("option %s takes no value" % name)
            if effect == "kernel":
                opts.kernel.append(name)
            elif effect == "sync":
                opts.commit_interval = 0.0
            elif effect == "ignored":
                opts.ignored.append(item)
            continue
        opts.plugin[name] = value if has_value else None
    if opts.allow_other and opts.allow_root:
        raise OptionError("options allow_other and allow_root exclude each other")
    return opts


def parse_options(texts: Iterable[str]) -> MountOptions:
    """Every ``-o`` argument given, in order; later settings win."""
    items = []
    for text in texts:
        for item in split_option_text(text):
            name, has_value, value = item.partition("=")
            items.append((name, value if has_value else None))
    return parse_items(items)


def items_from_keywords(options: dict) -> List[Tuple[str, Optional[str]]]:
    """Python keywords (``ro=True, commit_interval=2``) as option items.

    True is a flag, False or None leaves an option out (``ro=False`` is
    ``rw``), anything else is its text.
    """
    items = []
    for name, value in options.items():
        if value is None or value is False:
            if name == "ro" and value is False:
                items.append(("rw", None))
            continue
        items.append((name, None if value is True else str(value)))
    return items


def plugin_options(opts: MountOptions, cls) -> Dict[str, object]:
    """The plugin's options, checked and converted; refuses ones nobody knows."""
    specs = declared(getattr(cls, "options", ()))
    unknown = sorted(name for name in opts.plugin if name not in specs)
    if unknown:
        known = list(KNOWN) + sorted(specs)
        raise OptionError("unknown option %s for a %s archive (known: %s; see archfs mount "
                          "--help)" % (", ".join(unknown), cls.name, ", ".join(known)))
    result = {}
    for name, value in opts.plugin.items():
        result[name] = _convert(specs[name], value is not None, value or "")
    return result


# -- help and the README's table ----------------------------------------------

def _plugin_groups() -> List[Tuple[str, List[Option]]]:
    from archfs.archives import plugins
    from archfs.engine.transports import OPTIONS as REMOTE
    groups = []
    for name, cls in sorted(plugins().items()):
        specs = [spec for spec in declared(getattr(cls, "options", ())).values()
                 if spec.name not in REMOTE]
        if specs:
            groups.append((name, specs))
    groups.append(("remote", list(REMOTE.values())))   # shared by the formats that take URLs
    return groups


def _sections() -> List[Tuple[str, List[Tuple[str, str, str]]]]:
    """(title, [(label, default or None, help)]) for help and the README."""
    sections = [("options for -o (comma-separated, may be repeated; later ones win):",
                 [(spec.label, spec.default, spec.help) for spec in ARCHFS])]
    for plugin, specs in _plugin_groups():
        sections.append(("options of %s archives:" % plugin,
                         [(spec.label, spec.default or "none", spec.help) for spec in specs]))
    sections.append(("options mount(8) and /etc/fstab pass on:",
                     [(", ".join(names), None, text) for names, _, text in GENERIC]))
    return sections


def describe(width: int = 79) -> str:
    """Every -o option with its default, for ``archfs mount --help``."""
    sections = _sections()
    column = min(28, 4 + max(len(label) for _, rows in sections for label, _, _ in rows))
    out = []
    for title, rows in sections:
        if out:
            out.append("")
        out.append(title)
        for label, default, text in rows:
            if default is not None:
                text = "%s (default: %s)" % (text, default)
            wrapped = textwrap.wrap(text, max(30, width - column), break_on_hyphens=False)
            first = "  " + label
            if len(first) + 2 > column:
                out.extend(textwrap.wrap(label, width - 2, initial_indent="  ",
                                         subsequent_indent="  "))
                first = ""
            out.append(first.ljust(column) + wrapped[0])
            out.extend(" " * column + more for more in wrapped[1:])
    return "\n".join(out)


def markdown_table() -> str:
    """The README's table of -o options (a test keeps the two the same)."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for title, rows in _sections():
        plugin = title.split()[2] if title.startswith("options of ") else None
        for label, default, text in rows:
            names = ", ".join("`%s`" % name for name in label.split(", "))
            if plugin:
                names += " (%s)" % plugin
            lines.append("| %s | %s | %s |" % (names, (default or "").replace("|", "\\|"),
                                             text.replace("|", "\\|")))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m archfs.mount.options: the README table
    print(markdown_table())


LOCAL_COMMIT_INTERVAL = 1.0
REMOTE_COMMIT_INTERVAL = 30.0     # each commit of a remote archive is an upload


def commit_interval(options: "MountOptions", remote: bool = False) -> float:
    """The commit interval in effect: the option, else the default for the
    archive's kind."""
    if options.commit_interval is not None:
        return options.commit_interval
    return REMOTE_COMMIT_INTERVAL if remote else LOCAL_COMMIT_INTERVAL
