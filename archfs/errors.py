"""The errors every layer of archfs raises.

Each one is an ``OSError`` carrying the errno a filesystem user expects, so the
mount maps any of them to errno by reading ``.errno`` and nothing else. Each
also sits under the builtin class that fits (a read-only error is a
``PermissionError``, a missing member a ``FileNotFoundError``) so plain Python
callers can catch what they already know.

This module imports nothing from archfs: the zip engine, the plugins and the
mount all build on it.
"""

import errno as _errno


class ArchfsError(OSError):
    """Base of archfs's own errors; ``errno`` is set from the class."""

    errno_value = _errno.EIO

    def __init__(self, message="", *args):
        if args:  # raised the OSError way: (errno, strerror[, filename])
            super().__init__(message, *args)
            return
        super().__init__(self.errno_value, message)

    def __str__(self):
        return self.strerror if self.strerror is not None else super().__str__()


# -- names from the seed API ------------------------------------------------

class NoOtherInstance(ArchfsError):
    """Only one instance of this plugin may exist."""


class WriteMultipleArchives(ArchfsError):
    """Writing to a collection of several archives is ambiguous."""

    errno_value = _errno.EINVAL


class NoSuchFile(ArchfsError, FileNotFoundError):
    """The member or archive does not exist."""

    errno_value = _errno.ENOENT


class ReadOnlyError(ArchfsError, PermissionError):
    """The archive was opened read-only."""

    errno_value = _errno.EROFS


class WriteOnFile(ArchfsError, NotADirectoryError):
    """A directory archive was given a file where it needs a directory."""

    errno_value = _errno.ENOTDIR


class FileAlreadyExistsError(ArchfsError, FileExistsError):
    """A member of that name exists already."""

    errno_value = _errno.EEXIST


class ArchivePluginNotFound(ArchfsError, LookupError):
    """No plugin is registered for that name, MIME type or suffix."""

    errno_value = _errno.ENOTSUP


# -- what a filesystem needs beyond the seed --------------------------------

class IsADirectory(ArchfsError, IsADirectoryError):
    errno_value = _errno.EISDIR


class NotADirectory(ArchfsError, NotADirectoryError):
    errno_value = _errno.ENOTDIR


class DirectoryNotEmpty(ArchfsError):
    errno_value = _errno.ENOTEMPTY


class InvalidMove(ArchfsError):
    """A rename that POSIX forbids, such as a directory into itself."""

    errno_value = _errno.EINVAL


class NotSupported(ArchfsError):
    """The plugin cannot do this operation at all."""

    errno_value = _errno.ENOTSUP


class UnsupportedURL(NotSupported, ValueError):
    """A URL whose scheme no plugin or transport reads (also a ValueError)."""


class NameTooLong(ArchfsError):
    errno_value = _errno.ENAMETOOLONG


class CorruptMemberError(ArchfsError):
    """A member's data is damaged: bad CRC, wrong size, broken stream."""

    errno_value = _errno.EIO


class CorruptArchiveError(ArchfsError):
    """The archive as a whole cannot be read (no usable central directory)."""

    errno_value = _errno.EIO


class NotAnArchiveError(CorruptArchiveError):
    """The file is not an archive of the expected format at all."""


class UnsupportedFeature(ArchfsError):
    """A compression method or encryption the engine does not implement."""

    errno_value = _errno.ENOTSUP


class PasswordRequired(ArchfsError, PermissionError):
    """An encrypted member and no password, or the wrong one."""

    errno_value = _errno.EACCES


class ArchiveChangedError(ArchfsError):
    """Another program changed the archive file while it was open for writing."""

    errno_value = _errno.EROFS


class InvalidArgument(ArchfsError):
    """A name or request the archive cannot hold faithfully (EINVAL)."""

    errno_value = _errno.EINVAL


class ArchiveBusy(ArchfsError):
    """The archive is already open for writing by another archfs."""

    errno_value = _errno.EBUSY


class NoSuchAttribute(ArchfsError):
    """The member has no extended attribute of that name."""

    errno_value = getattr(_errno, "ENODATA", 61)


class RemoteError(ArchfsError):
    """The store holding a remote archive failed or could not be reached
    (network, server error); exit status 4, a system problem."""

    errno_value = _errno.EIO
    exit_code = 4


class RemoteAccessDenied(ArchfsError, PermissionError):
    """The remote store refused access (credentials, bucket policy)."""

    errno_value = _errno.EACCES


class ObjectChanged(ArchfsError):
    """A remote archive was replaced while mounted: reads of bytes not cached
    yet fail rather than mix two versions (remount to see the new one)."""

    errno_value = _errno.EIO
