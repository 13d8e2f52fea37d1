"""Where each row's central record lies, kept without a pass over every row.

A checkpoint writes the directory anew, mostly by copying runs of the last
one: a million records move by a handful of constant shifts. Rather than
storing every row's new position, rows keep the *address* their record had
when it was written (its position tagged with a generation: ``gen << 44 |
position``), and each checkpoint adds one translation per copied run. An
address is resolved only when it is needed: a journal record naming the
record it supersedes, a copy of a changed row's record. Both are rare.

``EntryTable.durable_at`` and ``record_at`` hold addresses. At generation 0
an address is the plain position, which is what the parser writes and what
replaying a journal relies on (see ``recovery.replay``).
"""

import bisect
from typing import List, Tuple

SHIFT = 44                      # positions below 16 TiB
MASK = (1 << SHIFT) - 1
MAX_GEN = 1 << 18               # far below the sign bit
MAX_ENTRIES = 4096              # then the columns are rewritten with plain positions


class Positions:
    def __init__(self):
        self.gen = 0
        self._starts: List[int] = []
        self._entries: List[Tuple[int, int, int]] = []   # (first address, end address, position)

    def address(self, pos: int) -> int:
        """The address of a record written now at ``pos``."""
        return (self.gen << SHIFT) | pos if pos >= 0 else -1

    def where(self, addr: int) -> int:
        """The position of the record at ``addr`` now, or -1 if it is gone."""
        if addr < 0:
            return -1
        if addr >> SHIFT == self.gen:
            return addr & MASK
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            first, end, pos = self._entries[i]
            if addr < end:
                return pos + addr - first
        return -1

    def advance(self, runs: List[Tuple[int, int, int]]) -> None:
        """A new directory holds copies of these runs: (start, end, new
        position), in positions of now. Records in a run are found at its
        copy from now on; every other record of the old generation is gone."""
        runs = sorted(r for r in runs if r[1] > r[0])
        starts = [r[0] for r in runs]
        entries: List[Tuple[int, int, int]] = []

        def remap(first: int, at: int, length: int) -> None:
            i = max(0, bisect.bisect_right(starts, at) - 1)
            while i < len(runs) and runs[i][0] < at + length:
                a, b, new = runs[i]
                lo, hi = max(a, at), min(b, at + length)
                if lo < hi:
                    entries.append((first + lo - at, first + hi - at, new + lo - a))
                i += 1

        for first, end, pos in self._entries:
            remap(first, pos, end - first)
        base = self.gen << SHIFT
        for a, b, new in runs:
            entries.append((base + a, base + b, new))
        entries.sort()
        self.gen += 1
        self._entries = entries
        self._starts = [e[0] for e in entries]

    def crowded(self) -> bool:
        """Whether the columns should be rewritten with plain positions."""
        return self.gen >= MAX_GEN or len(self._entries) > MAX_ENTRIES

    def materialize(self, *columns) -> None:
        """Write every address in ``columns`` as its plain position (gen 0)."""
        if not self.gen and not self._entries:
            return
        where = self.where
        for column in columns:
            for i, addr in enumerate(column):
                if addr >= 0:
                    column[i] = where(addr)
        self.gen = 0
        self._entries = []
        self._starts = []

    def state(self) -> dict:
        """For the saved index: enough to resolve the columns saved with it."""
        return {"gen": self.gen, "entries": [list(e) for e in self._entries]}

    @classmethod
    def from_state(cls, state: dict) -> "Positions":
        p = cls()
        p.gen = int(state["gen"])
        p._entries = [tuple(int(v) for v in e) for e in state["entries"]]
        p._starts = [e[0] for e in p._entries]
        return p
