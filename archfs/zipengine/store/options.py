"""The store's options, and the accounting constant every part shares."""

from dataclasses import dataclass
from typing import Callable, Optional

from archfs.zipengine import format as fmt

LOCAL_OVERHEAD = fmt.LOCAL_HEADER.size + 50   # header plus typical name/extra, for accounting
REUSE_ALWAYS = 4 << 20


@dataclass
class StoreOptions:
    level: int = 6                     # compression level for new members; 0 stores
    method: int = 8                    # compression method for new members (-o compression=)
    password: Optional[bytes] = None   # for traditional PKWARE encryption
    compact_ratio: float = 0.5
    compact_min: int = 8 << 20
    progress: Optional[Callable[[str, int, int], None]] = None
    index_cache: bool = True           # save/load the member index of big archives
    index_dir: Optional[str] = None    # default: $XDG_CACHE_HOME/archfs/index
    checkpoint_idle: float = 5.0       # seconds without commits before a checkpoint; 0: never
    journal_from: int = 64 << 10       # a smaller central directory is written at every commit
    # the checkpoint reuses the last directory's space (inplace.py) when that
    # and the journal are this share of the file, or REUSE_ALWAYS bytes
    reuse_from: float = 0.1
