"""A bounded cache of fixed-size blocks of a remote object, with readahead.

Remote reads cost a round trip each, so they are made big and few:

- a read fetches the blocks it misses, a contiguous run of them in one
  ranged GET (a run longer than ``PIECE`` in several, in parallel);
- a read that continues the previous one (a sequential stream) doubles
  that stream's readahead window, up to ``READAHEAD``, and the blocks ahead
  are fetched in the background, ``PIECE`` bytes per GET, ``WORKERS`` at once;
- ``will_read(pos, size)`` marks a range about to be read (a zip's central
  directory): a miss in it fetches up to ``MAX_GET`` bytes of it in one GET;
- two readers missing the same block wait for one fetch;
- the least recently used blocks go once ``capacity`` bytes are held, so
  memory stays bounded whatever is read.

``fetch(start, end)`` does the request and returns exactly those bytes.
"""

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger("archfs.remote")

BLOCK = 1 << 20
PIECE = 8 << 20           # bytes per background GET
READAHEAD = 32 << 20      # the largest readahead window
MAX_GET = 32 << 20        # bytes per GET of an announced range
WORKERS = 4
CAPACITY = 64 << 20
STREAMS = 8               # sequential readers followed at once
BEHIND = 4 << 20          # how far behind its front a read still continues a stream


class BlockCache:
    def __init__(self, fetch: Callable[[int, int], bytes], limit: int,
                 capacity: int = CAPACITY, block: int = BLOCK, workers: int = WORKERS):
        self._fetch = fetch
        self.limit = limit                    # the object's size: nothing is read past it
        self.block = block
        self.capacity = max(capacity, 4 * block)
        self._blocks: "OrderedDict[int, bytes]" = OrderedDict()
        self._pending: Dict[int, Tuple[Future, int]] = {}   # block -> (its run, run's first)
        self._lock = threading.Lock()
        self._gen = 0
        self._streams: List[List[int]] = []   # [next position, window, start]
        self._expected: List[Tuple[int, int]] = []
        self._pool: Optional[ThreadPoolExecutor] = None
        self._workers = workers
        self._closed = False

    # -- reading --------------------------------------------------------------

    def read(self, size: int, pos: int) -> bytes:
        end = min(pos + size, self.limit)
        if pos >= end:
            return b""
        b0, b1 = pos // self.block, (end - 1) // self.block
        with self._lock:
            runs = self._claim_missing(b0, b1, self._extend_for_expected(b1))
            ahead = self._follow(pos, end)
            for start, stop in self._expected:
                if ahead is not None and start <= pos < stop:   # no further than announced
                    ahead = (ahead[0], min(ahead[1], stop))
        # the first run is fetched here; the rest (a long read) in parallel
        for run in runs[1:]:
            self._submit(run)
        if runs:
            self._run_fetch(runs[0])
            failed = runs[0][2].exception()
            if failed is not None:
                raise _read_error(failed) from failed
        if ahead is not None:
            self._read_ahead(*ahead)
        return self._gather(b0, b1, pos, end)

    def will_read(self, pos: int, size: int) -> None:
        """The range [pos, pos+size) is read next: fetch it in as few GETs as
        the cache can hold (see ``MAX_GET``)."""
        end = min(pos + size, self.limit)
        if end > pos:
            with self._lock:
                self._expected = [r for r in self._expected if r[1] > pos][-3:] + [(pos, end)]

    def invalidate(self, start: int = 0, end: Optional[int] = None) -> None:
        """Forget cached blocks overlapping [start, end); fetches under way are
        not kept either."""
        with self._lock:
            self._gen += 1
            first = start // self.block
            last = None if end is None else (end - 1) // self.block
            for b in [b for b in self._blocks if b >= first and (last is None or b <= last)]:
                del self._blocks[b]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            self._blocks.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def held(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._blocks.values())

    # -- internals --------------------------------------------------------------

    def _extend_for_expected(self, b1: int) -> int:
        """(lock held) How far a miss ending at block ``b1`` should fetch."""
        for start, end in self._expected:
            if start // self.block <= b1 < (end + self.block - 1) // self.block:
                limit = min(end, b1 * self.block + min(MAX_GET, self.capacity // 2))
                return max(b1, (limit - 1) // self.block)
        return b1

    def _claim_missing(self, b0: int, b1: int, upto: int) -> List[Tuple[int, int, Future]]:
        """(lock held) Runs of blocks in [b0, upto] neither cached nor being
        fetched, each now registered as pending: [(first, last, future)].
        Blocks past ``b1`` are fetched only as part of a run that starts by b1."""
        runs = []
        b = b0
        last_block = (self.limit - 1) // self.block
        upto = min(upto, last_block)
        while b <= upto:
            if b in self._blocks or b in self._pending:
                if b > b1:
                    break
                b += 1
                continue
            first = b
            while b <= upto and b not in self._blocks and b not in self._pending:
                b += 1
            runs.extend(self._register(first, b - 1))
        return runs

    def _register(self, first: int, last: int) -> List[Tuple[int, int, Future]]:
        """(lock held) Split a run into pieces of at most PIECE (when longer
        than MAX_GET) and mark them pending."""
        per = max(1, (MAX_GET if last - first + 1 <= MAX_GET // self.block else PIECE)
                  // self.block)
        out = []
        b = first
        while b <= last:
            stop = min(last, b + per - 1)
            future: Future = Future()
            for i in range(b, stop + 1):
                self._pending[i] = (future, b)
            out.append((b, stop, future))
            b = stop + 1
        return out

    def _run_fetch(self, run: Tuple[int, int, Future]) -> None:
        first, last, future = run
        if not future.set_running_or_notify_cancel():
            return
        gen = self._gen
        start, end = first * self.block, min((last + 1) * self.block, self.limit)
        try:
            data = self._fetch(start, end)
            if len(data) != end - start:
                raise OSError(5, "remote read of bytes %d-%d returned %d bytes"
                              % (start, end - 1, len(data)))
        except BaseException as exc:
            with self._lock:
                for b in range(first, last + 1):
                    if self._pending.get(b, (None,))[0] is future:
                        del self._pending[b]
            future.set_exception(exc)
            return
        with self._lock:
            for b in range(first, last + 1):
                if self._pending.get(b, (None,))[0] is future:
                    del self._pending[b]
                if gen == self._gen and not self._closed:
                    at = (b - first) * self.block
                    self._blocks[b] = data[at:at + self.block]
                    self._blocks.move_to_end(b)
            self._evict()
        future.set_result(data)

    def _evict(self) -> None:
        held = len(self._blocks) * self.block
        while held > self.capacity and self._blocks:
            self._blocks.popitem(last=False)
            held -= self.block

    def _submit(self, run) -> None:
        with self._lock:
            if self._closed:
                run[2].cancel()
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="archfs-get")
            pool = self._pool
        try:
            pool.submit(self._run_fetch, run)
        except RuntimeError:      # shut down meanwhile
            run[2].cancel()

    def _gather(self, b0: int, b1: int, pos: int, end: int) -> bytes:
        parts = []
        for b in range(b0, b1 + 1):
            with self._lock:
                data = self._blocks.get(b)
                if data is not None:
                    self._blocks.move_to_end(b)
                    waiting = None
                else:
                    waiting = self._pending.get(b)
            if data is None:
                if waiting is None:       # evicted or dropped meanwhile: fetch it alone
                    data = self._fetch(b * self.block, min((b + 1) * self.block, self.limit))
                else:
                    future, first = waiting
                    try:
                        run = future.result()
                    except Exception as exc:
                        raise _read_error(exc) from exc
                    at = (b - first) * self.block
                    data = run[at:at + self.block]
            lo = max(pos, b * self.block) - b * self.block
            hi = min(end, (b + 1) * self.block) - b * self.block
            parts.append(data[lo:hi] if (lo, hi) != (0, len(data)) else data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _follow(self, pos: int, end: int) -> Optional[Tuple[int, int]]:
        """(lock held) Track sequential streams; the range to read ahead, if any."""
        for stream in self._streams:
            # the kernel sends a reader's reads from several threads: a read
            # a little behind the stream's front still belongs to it
            if stream[0] - BEHIND <= pos <= stream[0] + self.block:
                stream[0] = max(stream[0], end)
                self._streams.remove(stream)
                self._streams.append(stream)
                front = stream[0]
                if front - stream[2] < self.block:
                    return None     # small reads close together: not a stream (yet)
                stream[1] = min(READAHEAD, max(PIECE, stream[1] * 2))
                window = min(stream[1], self.capacity // 2)
                return front, min(self.limit, front + window)
        self._streams.append([end, 0, pos])     # [next position, window, start]
        del self._streams[:-STREAMS]
        return None

    def _read_ahead(self, start: int, end: int) -> None:
        """Fetch what is missing of [start, end) once less than half of it is
        there or on its way, so GETs go out in batches of big pieces."""
        if start >= end:
            return
        b0, b1 = start // self.block, (end - 1) // self.block
        with self._lock:
            b = b0
            while b <= b1 and (b in self._blocks or b in self._pending):
                b += 1
            if b > b1 or (b - b0) * self.block > (end - start) // 2:
                return
            per = max(1, PIECE // self.block)      # whole pieces, no stray single blocks
            b1 = min((self.limit - 1) // self.block, b + -(-(b1 - b + 1) // per) * per - 1,
                     max(b1, (start + self.capacity * 3 // 4) // self.block - 1))
            runs = []
            while b <= b1:
                if b in self._blocks or b in self._pending:
                    b += 1
                    continue
                first = b
                while b <= b1 and b not in self._blocks and b not in self._pending \
                        and b - first < PIECE // self.block:
                    b += 1
                runs.extend(self._register(first, b - 1))
        for run in runs:
            self._submit(run)


def _read_error(exc: BaseException) -> OSError:
    if isinstance(exc, OSError):
        return exc
    return OSError(5, "remote read failed: %s" % exc)
