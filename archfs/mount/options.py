"""The ``-o`` mount options: parsed once, checked with a one-line error.

Options archfs itself knows are listed in ``KNOWN``; any other ``name`` or
``name=value`` is kept for the archive plugin (``MountOptions.plugin``), and
the mount refuses it unless the plugin class lists the name in its
``options`` attribute. A comma inside a value is written ``\\,``.
"""

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional


class OptionError(ValueError):
    """A bad -o option; the message is the one line the user sees."""


# name -> (takes a value, help text)
KNOWN = {
    "ro": (False, "mount read-only"),
    "rw": (False, "mount read-write (the default)"),
    "commit_interval": (True, "seconds between commits of closed files (default 1; "
                              "0 commits at every close)"),
    "allow_other": (False, "let other users use the mount (needs user_allow_other "
                           "in /etc/fuse.conf)"),
    "allow_root": (False, "let root use the mount"),
    "tmpdir": (True, "directory for files being written (default: beside the archive)"),
    "attr_timeout": (True, "seconds the kernel caches attributes"),
    "entry_timeout": (True, "seconds the kernel caches names"),
    "readahead_kb": (True, "kernel readahead, and so the size of reads (default 1024; "
                           "set by root only; 0 keeps the kernel's default)"),
}


@dataclass
class MountOptions:
    read_only: bool = False
    commit_interval: float = 1.0
    allow_other: bool = False
    allow_root: bool = False
    tmpdir: Optional[str] = None
    attr_timeout: Optional[float] = None
    entry_timeout: Optional[float] = None
    readahead_kb: int = 1024
    plugin: Dict[str, str] = field(default_factory=dict)


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


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise OptionError("option %s needs a number of seconds, not %r" % (name, value)) from None
    if not math.isfinite(number) or number < 0:
        raise OptionError("option %s must be 0 or more seconds, not %r" % (name, value))
    return number


def parse_options(texts: Iterable[str]) -> MountOptions:
    """Every ``-o`` argument given, in order; later settings win."""
    opts = MountOptions()
    for text in texts:
        for item in split_option_text(text):
            name, has_value, value = item.partition("=")
            name = name.strip()
            if name not in KNOWN:
                opts.plugin[name] = value if has_value else ""
                continue
            takes_value = KNOWN[name][0]
            if takes_value and not has_value:
                raise OptionError("option %s needs a value: -o %s=..." % (name, name))
            if not takes_value and has_value:
                raise OptionError("option %s takes no value" % name)
            if name in ("ro", "rw"):
                opts.read_only = name == "ro"
            elif name == "commit_interval":
                opts.commit_interval = _seconds(name, value)
            elif name in ("allow_other", "allow_root"):
                setattr(opts, name, True)
            elif name == "readahead_kb":
                if not value.isdigit():
                    raise OptionError("option readahead_kb needs a whole number of KiB, not %r"
                                      % value)
                opts.readahead_kb = int(value)
            elif name == "tmpdir":
                if not value:
                    raise OptionError("option tmpdir needs a directory")
                opts.tmpdir = value
            else:
                setattr(opts, name, _seconds(name, value))
    if opts.allow_other and opts.allow_root:
        raise OptionError("options allow_other and allow_root exclude each other")
    return opts


def check_plugin_options(opts: MountOptions, plugin_name: str, accepted: Iterable[str]) -> None:
    """Refuse options neither archfs nor the plugin knows."""
    accepted = set(accepted)
    unknown = sorted(name for name in opts.plugin if name not in accepted)
    if unknown:
        known = sorted(KNOWN) + sorted(accepted)
        raise OptionError("unknown option %s for a %s mount (known: %s)"
                          % (", ".join(unknown), plugin_name, ", ".join(known)))


def describe() -> str:
    """The options for --help."""
    width = max(len(name) for name in KNOWN) + 8
    lines = []
    for name, (takes_value, text) in KNOWN.items():
        label = name + ("" if not takes_value else "=DIR" if name == "tmpdir" else "=N")
        lines.append("  %-*s %s" % (width, label, text))
    return "\n".join(lines)
