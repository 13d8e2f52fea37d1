"""What the kernel has mounted, from /proc/self/mounts."""

import re
from typing import Dict, Optional

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> Dict[str, str]:
    """Mountpoint -> filesystem type (the last mount on a path wins)."""
    table = {}
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3:
                    table[_unescape(fields[1])] = fields[2]
    except OSError:
        pass
    return table


def mount_type(path: str) -> Optional[str]:
    """The filesystem type mounted exactly at ``path`` (a real path), or None."""
    return mounts().get(path)


def is_archfs(fstype: Optional[str]) -> bool:
    return fstype == "fuse.archfs"
