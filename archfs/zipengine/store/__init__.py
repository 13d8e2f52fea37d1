"""ZipStore: one zip archive, read and changed in place without ever
rewriting it whole, and never left unreadable.

On-disk protocol
----------------
The durable state of the archive is its last *checkpoint* (a complete
central directory and end records, which makes the file an ordinary zip)
followed by a chain of *journal records*, each listing only what one
commit changed (``journal.py``):

    [prefix][members...][central directory][end records]      <- checkpoint
    [member][member][journal record][member][journal record]  <- journal

archfs writes only after the end of the durable state, with three
exceptions, each done so that no byte the durable state lists is touched:
the atomic rename of a compaction, the space of a dead first member reused
for a filler entry (``firstentry.py``), and the checkpoint written over the
space of the last one (``inplace.py``).

1. A change appends at once: a new or replaced member's local header and
   data go after the current end; a removal, rename or chmod only changes
   the in-memory table.
2. ``commit()`` copies renamed members under a new local header (readers
   require local and central names to agree), ``fdatasync``s the data, then
   appends one journal record (the central records of the rows added or
   changed, the positions of the records they supersede or remove, a CRC,
   a link to the record before) and ``fdatasync``s again: durable. Its cost
   is the change, not the archive: a 1 KiB file in a million-member archive
   adds about 1.3 KiB and two syncs.
3. A checkpoint is written instead of a journal record when it costs no
   more: when the bytes appended since the last one reach the size of a
   central directory, or the directory is small (``journal_from``, 64 KiB:
   small archives are a complete zip after every commit, as always). It is
   appended after the data (fdatasync'ed first), and its end record makes
   it count; the last directory and the journal become dead space.
4. ``checkpoint()`` runs at close (unmount), after ``checkpoint_idle``
   seconds without commits, and from ``archfs repair``: the members written
   since the last checkpoint are moved down into the dead space that begins
   at its directory and the new directory is written after them, so the
   archive does not grow by a directory per session. The steps, and why a
   crash in any of them loses nothing, are in ``inplace.py``. It appends
   instead when the space it would reclaim is small (under ``reuse_from``,
   10% of the file, and 4 MiB: a small directory in a big archive is not
   worth the extra syncs) or when it cannot (a reader has a member there
   open).
5. A crash leaves the durable state followed by an unfinished tail.
   Opening the archive (or ``archfs repair``) takes the newest intact
   journal record whose chain reaches a checkpoint that parses, else the
   newest such checkpoint (``recovery.py``), replays the journal, and cuts
   off the rest if it is archfs's own (else refuses, naming the repair).
6. Compaction moves the members after the first dead byte down in place
   when that reclaims (nearly) all dead space, else writes the live members
   into a new file beside the archive (``.NAME.archfs-compact-*``), fsyncs
   it and renames it over the original. Either way members and their
   records are copied byte for byte (never bigger), and nothing is done
   when less than 1% is dead. It runs on demand and when dead space exceeds
   ``compact_ratio`` of the file (and ``compact_min`` bytes).
7. Another program changing or replacing the file is noticed before every
   write (inode, size and mtime are compared); the store then refuses
   writes (ArchiveChangedError) rather than corrupt either side.
8. Where the transport's ``sync`` publishes atomically (an S3 object, see
   ``archfs.engine.transports``), no reader ever sees a state between two
   syncs, so there is no journal and no checkpoint in place: appends start
   where the central directory starts, every commit writes a complete
   directory after them (copying unchanged records from the published
   version), and ``sync`` is called only on a complete archive. Another
   writer's version, found when publishing, is ArchiveChangedError.

What another program sees while the archive is mounted: after a checkpoint,
an ordinary zip. Between checkpoints, the last checkpoint followed by the
journal, which readers take for trailing bytes: while those are under
64 KiB, ``unzip``, Python's ``zipfile`` and 7-Zip (with a warning) read the
archive as of the last checkpoint, since they look for the end record in
the last 64 KiB; past that, ``unzip`` and ``zipfile`` find no end record
and refuse the file, and 7-Zip still reads the last checkpoint. The journal
lives in the archive, not in a file beside it, so the file alone always
holds every commit: a copy of it, or the archive moved elsewhere after a
crash, loses nothing, and ``archfs repair`` (or the next mount) turns it
into an ordinary zip again.

The store is one class, ``ZipStore``, assembled from single-purpose parts:

- ``zipstore.py``   the class itself: its state, the queries, closing
- ``opening.py``    opening, locking and loading (or recovering) the archive
- ``identity.py``   noticing another program changing the file; writability
- ``reading.py``    opening a member for reading
- ``changes.py``    the change operations (add, remove, rename, mkdir, chmod...)
- ``journaling.py`` a commit as a journal record
- ``commit.py``     commit() and checkpoint(): which kind, and the appended checkpoint
- ``directory.py``  the next central directory, planned from the last one
- ``inplace.py``    the checkpoint written over the space of the last one
- ``idle.py``       the checkpoint after an idle period
- ``firstentry.py`` keeping a listed entry at the archive's start (7-Zip)
- ``compacting.py`` rewriting the archive without dead space
- ``rescue.py``     saving what a commit that failed for good could not store
"""

from archfs.zipengine.store.options import LOCAL_OVERHEAD, StoreOptions
from archfs.zipengine.store.zipstore import ZipStore

__all__ = ["LOCAL_OVERHEAD", "StoreOptions", "ZipStore"]
