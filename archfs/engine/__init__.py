"""What every archive engine needs, whatever the format.

- ``fileaccess``: the archive file behind a small interface (pread, size,
  identity; append, sync, truncate when writable), so another transport can
  take the local file's place.
- ``transports``: those other transports: S3 (read-write, each sync an
  atomic publish), HTTP(S) and any fsspec URL, through a block cache.
- ``compressed``: a compressed stream read as if it were plain, through
  seek points built once and saved (gzip, bzip2, xz, zstd).
- ``indexcache``: saved indexes, valid only for the exact file they describe.
- ``tree``: the directory tree over a table of member names.
- ``durable``: the writer's side: one writer per archive, noticing other
  programs' changes, atomic replacement of a whole file.
"""
