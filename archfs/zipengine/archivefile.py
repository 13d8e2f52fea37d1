"""The open archive file, shared by every reader and the writer: the
engine's transport interface (``archfs.engine.fileaccess``), which a remote
archive's transport implements as well."""

from archfs.engine.fileaccess import ArchiveFile, fsync_dir

__all__ = ["ArchiveFile", "fsync_dir"]
