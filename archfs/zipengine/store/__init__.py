"""ZipStore: one zip archive, read and changed in place without ever
rewriting it whole, and never left unreadable.

On-disk protocol
----------------
The archive is always ``[prefix][members...][central directory][end records]``
as far as its last committed end record, and archfs only ever writes after
that point, with two exceptions: the atomic rename of a compaction, and the
space of a dead first member, which the last committed central directory
no longer lists, reused for a filler entry (see ``firstentry.py``).

1. A change appends at once: a new or replaced member's local header and
   data go after the current end (past the last end record); a removal or
   rename only changes the in-memory table. Nothing before the end moves.
2. ``commit()`` first copies renamed members under a new local header (a
   reader requires local and central names to agree), ``fdatasync``s the
   appended data, then appends a complete new central directory and end
   records and ``fdatasync``s again. The moment that second sync returns,
   the file ends with a valid end record describing every member: the
   commit is durable. The old central directory is now dead space.
3. A crash anywhere before that leaves the previous end record followed by
   an unfinished tail. Opening the archive (or ``archfs repair``) scans back
   to the newest end record whose central directory parses (see
   ``recovery.py``) and cuts the tail off. Earlier commits are never at risk:
   their bytes are not written again.
4. Compaction writes a fresh archive of the live members beside the old one
   (``.NAME.archfs-compact-*``), fsyncs it, renames it over the original and
   fsyncs the directory: at every instant the path names a complete archive.
   It runs on demand and when dead space exceeds ``compact_ratio`` of the file
   (and ``compact_min`` bytes).
5. Another program changing or replacing the file is noticed before every
   write (inode, size and mtime are compared); the store then refuses
   writes (ArchiveChangedError) rather than corrupt either side.

The store is one class, ``ZipStore``, assembled from single-purpose parts:

- ``zipstore.py``   the class itself: its state, the queries, closing
- ``opening.py``    opening, locking and loading (or recovering) the archive
- ``identity.py``   noticing another program changing the file; writability
- ``reading.py``    opening a member for reading
- ``changes.py``    the change operations (add, remove, rename, mkdir, chmod...)
- ``commit.py``     making changes durable: the central directory and end records
- ``firstentry.py`` keeping a listed entry at the archive's start (7-Zip)
- ``compacting.py`` rewriting the archive without dead space
"""

from archfs.zipengine.store.options import LOCAL_OVERHEAD, StoreOptions
from archfs.zipengine.store.zipstore import ZipStore

__all__ = ["LOCAL_OVERHEAD", "StoreOptions", "ZipStore"]
