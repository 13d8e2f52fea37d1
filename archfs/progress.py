"""A progress bar for steps that take more than a moment (indexing a big
archive, compaction, repair): one line on a terminal, redrawn at most ten
times a second, nothing at all when the output is not a terminal."""

import sys
import time


class ProgressBar:
    """Callable as ``progress(what, done, total)``; ``total`` may be 0 (unknown)."""

    WIDTH = 30

    def __init__(self, stream=None, enabled=None, delay: float = 0.5):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._started = time.monotonic()
        self._delay = delay            # quick steps never show a bar
        self._last = 0.0
        self._shown = False

    def __call__(self, what: str, done: int, total: int = 0) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._started < self._delay or now - self._last < 0.1:
            return
        self._last = now
        if total > 0:
            fraction = min(1.0, done / total)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = "%s [%s] %3d%% %s/%s" % (what, bar, fraction * 100, _count(done), _count(total))
        else:
            text = "%s %s" % (what, _count(done))
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """Clear the bar's line (before the caller prints its result)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _count(n: int) -> str:
    return "{:,}".format(n)
