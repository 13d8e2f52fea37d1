"""What every archive engine needs, whatever the format.

- ``fileaccess``: the archive file behind a small interface (pread, size,
  identity; append, sync, truncate when writable), so another transport can
  take the local file's place.
- ``transports``: those other transports: S3 (read-write, each sync an
  atomic publish), HTTP(S) and any fsspec URL, through a block cache.
- ``compressed``: a compressed stream read as if it were plain, through
  seek points built once and saved (gzip, bzip2, xz, zstd).
- ``indexcache``: saved indexes, valid only for the exact file they describe.
- ``digest``: sha256 for cache and state file names, without hashlib.
- ``segments``, ``segcodecs``: compressed files of independent segments
  (what archfs writes compressed tars as), their streams and their codecs.
- ``tree``: the directory tree over a table of member names (``BaseTree``:
  what every format's tree does alike).
- ``memberfile``: a member as a seekable file object over its ``pread``.
- ``sharing``: reference counting of the file and streams readers hold.
- ``changeguard``: the writer's side: noticing other programs' changes
  before every write.
"""
