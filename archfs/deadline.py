"""The wait of a background thread that acts some time after the last
event, while other threads move that moment or stop it: the mount's
committer and the zip engine's idle checkpoint. Format-blind, below every
layer like ``errors``."""

import threading
import time
from typing import Callable, Optional


def wait_due(cond: threading.Condition, due: Callable[[], Optional[float]],
             stopping: Callable[[], bool]) -> bool:
    """With ``cond`` held: wait until the ``time.monotonic()`` moment
    ``due()`` has come (True), or until ``stopping()`` (False). While
    ``due()`` is None there is nothing to wait for but a notify."""
    while not stopping():
        when = due()
        if when is not None:
            wait = when - time.monotonic()
            if wait <= 0:
                return True
            cond.wait(wait)
        else:
            cond.wait()
    return False
