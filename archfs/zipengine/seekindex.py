"""Seek points of compressed members: decoder states kept while decoding,
so a later read starts near its offset instead of at the member's start.
One budget (``SEEK_BUDGET``) bounds the points of all members together.
"""

import bisect
import threading
import weakref
from collections import OrderedDict
from typing import NamedTuple, Optional

SEEK_SPACING = 2 << 20
SEEK_POINT_BYTES = 40 << 10       # what one deflate state copy costs
SEEK_BUDGET = 96 << 20            # all seek points of all members together


class SeekPoint(NamedTuple):
    out_pos: int
    comp_pos: int
    crc: int
    decoder: object
    decrypter: object


class SeekIndex:
    """The seek points of one member, in output order."""

    def __init__(self, key=None, cache: Optional["SeekIndexCache"] = None):
        self.key = key
        self.positions = []
        self.points = []
        self.lock = threading.Lock()
        self.charged = 0         # bytes the cache counts for it (under the cache's lock)
        self._cache = cache

    def add(self, point: SeekPoint) -> bool:
        added = self._add(point)
        if added and self._cache is not None:
            self._cache.grew(self)
        return added

    def _add(self, point: SeekPoint) -> bool:
        with self.lock:
            if self.positions and point.out_pos < self.positions[-1] + SEEK_SPACING:
                i = bisect.bisect_right(self.positions, point.out_pos)
                before = self.positions[i - 1] if i else -SEEK_SPACING
                after = self.positions[i] if i < len(self.positions) else None
                if point.out_pos < before + SEEK_SPACING or (
                        after is not None and after < point.out_pos + SEEK_SPACING):
                    return False
                self.positions.insert(i, point.out_pos)
                self.points.insert(i, point)
                return True
            self.positions.append(point.out_pos)
            self.points.append(point)
            return True

    def wants(self, out_pos: int) -> bool:
        """Whether a point at out_pos would be added (cheap check before copying)."""
        i = bisect.bisect_right(self.positions, out_pos)
        if i and out_pos < self.positions[i - 1] + SEEK_SPACING:
            return False
        return i == len(self.positions) or self.positions[i] >= out_pos + SEEK_SPACING

    def best(self, offset: int) -> Optional[SeekPoint]:
        with self.lock:
            i = bisect.bisect_right(self.positions, offset)
            return self.points[i - 1] if i else None

    def __len__(self):
        return len(self.points)


class SeekIndexCache:
    """Seek indexes by member, the least recently used dropped past the budget.

    Every call costs the same however many members were opened before: the
    bytes held are a running total, kept up to date as indexes gain points,
    and an index without points (a member read only at its start, or too
    small to get any) is not kept once no reader holds it.
    """

    def __init__(self, budget: int = SEEK_BUDGET):
        self._indexes = OrderedDict()      # key -> SeekIndex with points, oldest first
        self._empty = weakref.WeakValueDictionary()   # key -> SeekIndex a reader holds
        self._budget = budget
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key) -> SeekIndex:
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
                return index
            index = self._empty.get(key)
            if index is None:
                index = self._empty[key] = SeekIndex(key, self)
            return index

    def grew(self, index: SeekIndex) -> None:
        """(called by ``index`` after it gained a point) Count it, keep it, evict."""
        with self._lock:
            held = self._indexes.get(index.key)
            if held is not index:
                if held is not None:
                    self._used -= held.charged
                    held.charged = 0
                self._indexes[index.key] = index
                self._empty.pop(index.key, None)
            else:
                self._indexes.move_to_end(index.key)
            self._used += SEEK_POINT_BYTES
            index.charged += SEEK_POINT_BYTES
            while self._used > self._budget and len(self._indexes) > 1:
                _, dropped = self._indexes.popitem(last=False)
                self._used -= dropped.charged
                dropped.charged = 0

    @property
    def used(self) -> int:
        """Bytes of seek points held (an estimate: SEEK_POINT_BYTES each)."""
        return self._used

    def __len__(self):
        """Indexes held with points (the empty ones are not counted)."""
        return len(self._indexes)
