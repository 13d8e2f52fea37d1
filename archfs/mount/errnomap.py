"""The one place where an exception becomes the errno a FUSE call answers.

An ``OSError`` carries its errno (every ``archfs.errors`` class is one), so
it is passed on as is; anything else is a bug or an unforeseen failure and
becomes EIO. Every failure is logged: ordinary answers such as ENOENT at
debug level (a shell asks for missing names all the time), real faults (EIO,
ENOSPC, unexpected errnos) as errors, and non-OSErrors with their traceback,
so nothing the user sees as an error code is without a cause in the log.
A member archfs cannot read for want of a password or of a feature (AES,
an unknown compression method) answers EACCES or ENOTSUP like an ordinary
refusal, but its reason is logged as a warning, once per message, since it
is the only place the user learns what is missing.
"""

import errno
import functools
import logging
import os
import threading

from archfs.errors import PasswordRequired, UnsupportedFeature

log = logging.getLogger("archfs.mount")

# Answers a filesystem gives in normal use; not worth more than a debug line.
_ORDINARY = frozenset({
    errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR,
    errno.EROFS, errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENAMETOOLONG,
    errno.ENOTSUP, errno.ENODATA, errno.ERANGE, errno.EXDEV, errno.ELOOP,
    errno.EBUSY, errno.ENOSYS,
})


_explained = set()
_explained_lock = threading.Lock()
_EXPLAINED_MAX = 1000


def _first_time(text: str) -> bool:
    with _explained_lock:
        if text in _explained or len(_explained) >= _EXPLAINED_MAX:
            return False
        _explained.add(text)
        return True


def errno_of(exc: BaseException) -> int:
    """The errno that answers ``exc``."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    return code if isinstance(code, int) and code > 0 else errno.EIO


def log_failure(operation: str, path, exc: BaseException) -> int:
    """Log ``exc`` as the cause of a failed operation; return its errno."""
    code = errno_of(exc)
    where = "%s %s" % (operation, path)
    if not isinstance(exc, OSError) or exc.errno != code:
        log.error("%s failed: %s: %s", where, type(exc).__name__, exc, exc_info=exc)
    elif isinstance(exc, (PasswordRequired, UnsupportedFeature)) and _first_time(str(exc)):
        log.warning("%s: %s", where, exc)
    elif code in _ORDINARY:
        log.debug("%s: %s", where, exc)
    else:
        log.error("%s failed: %s", where, exc)
    return code


def fuse_errors(method):
    """Decorate an Operations method: any exception leaves it as an OSError
    with the errno the user should see (mfusepy turns that into -errno)."""

    @functools.wraps(method)
    def wrapper(self, path, *args, **kwargs):
        try:
            return method(self, path, *args, **kwargs)
        except Exception as exc:
            code = log_failure(method.__name__, path, exc)
            raise OSError(code, os.strerror(code)) from None

    return wrapper
