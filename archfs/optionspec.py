"""How an ``-o`` option is declared: name, value, default, help, check.

archfs's own mount options and a plugin's options are declared the same
way, so ``archfs mount --help``, the README's table and the checks before a
mount all come from one list. A plugin declares its options as a class
attribute, ``options = {name: Option(...)}`` (see ``zipfilearchive.py``);
a plain tuple of names is still accepted, and then listed without help.

A check (``convert``) takes the text after ``=`` and returns the value to
use, or raises ``ValueError`` whose message says what the option needs
("needs a whole number from 0 to 9"); the caller adds the option's name and
the bad value.
"""

import math
import os
from typing import Callable, Dict, Iterable, NamedTuple, Optional


class Option(NamedTuple):
    name: str
    metavar: Optional[str]      # None: a flag that takes no value
    default: str                # as shown in --help and the README
    help: str
    convert: Optional[Callable[[str], object]] = None
    loose: bool = False         # declared by name only: any value or none is passed on

    @property
    def label(self) -> str:
        return self.name if self.metavar is None else "%s=%s" % (self.name, self.metavar)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError("needs a number of seconds, 0 or more")
    return value


def whole(low: int = 0, high: Optional[int] = None) -> Callable[[str], int]:
    wants = ("needs a whole number from %d to %d" % (low, high) if high is not None
             else "needs a whole number, %d or more" % low)

    def convert(text: str) -> int:
        if not text.strip().isdigit():
            raise ValueError(wants)
        value = int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(wants)
        return value
    return convert


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ValueError("needs a number from 0 to 1")
    return value


_TRUE = ("1", "yes", "on", "true")
_FALSE = ("0", "no", "off", "false")


def boolean(text: str) -> str:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return "1"
    if lowered in _FALSE:
        return "0"
    raise ValueError("needs 1 or 0 (yes/no, on/off)")


def text(value: str) -> str:
    if not value:
        raise ValueError("needs a value")
    return value


def path(value: str) -> str:
    """A local path, made absolute now: the mount daemon leaves the
    caller's working directory."""
    if not value:
        raise ValueError("needs a path")
    return os.path.abspath(os.path.expanduser(value))


def declared(plugin_options) -> Dict[str, Option]:
    """A plugin's ``options`` attribute as {name: Option}, whatever its form."""
    if isinstance(plugin_options, dict):
        return {name: (spec if isinstance(spec, Option) else _loose(name))
                for name, spec in plugin_options.items()}
    return {name: _loose(name) for name in (plugin_options or ())}


def _loose(name: str) -> Option:
    return Option(name, "VALUE", "", "(no description)", None, True)


def names(plugin_options) -> Iterable[str]:
    return declared(plugin_options).keys()
