"""What every low-level request handler shares: the pinned Python thread
state and the turning of exceptions into error replies."""

import ctypes
import errno
import logging
import threading

from archfs.mount import fusell as ll

log = logging.getLogger("archfs.mount")

_NS = 1_000_000_000
_thread_state = threading.local()


def pin_thread_state() -> None:
    """Keep this libfuse thread's Python thread state for the thread's life
    (ctypes would otherwise make and free one around every callback)."""
    if not getattr(_thread_state, "pinned", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_state.pinned = True


def pinned() -> bool:
    return getattr(_thread_state, "pinned", False)


def errno_of(exc: BaseException) -> int:
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    return code if isinstance(code, int) and code > 0 else errno.EIO


def request(method):
    """A request handler: pins the thread state; any exception becomes the
    error reply (the handler replies itself only when it succeeds)."""
    def handler(self, req, *args):
        if not getattr(_thread_state, "pinned", False):
            pin_thread_state()
        try:
            method(self, req, *args)
        except OSError as exc:
            ll.reply_err(req, errno_of(exc))
        except BaseException:
            log.exception("FUSE request %s failed", method.__name__)
            ll.reply_err(req, errno.EIO)
    handler.__name__ = method.__name__
    return handler
