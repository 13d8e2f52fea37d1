"""Deterministic content: text-like bytes (deflate ratio ~3.5) and noise.

Text is drawn once into a pool of a few MiB from a Zipf-weighted vocabulary;
longer streams are stitched from pool slices at seeded offsets. Deflate only
looks 32 KiB back, so the stitched stream compresses like the pool itself.
"""
from __future__ import annotations

import hashlib
import itertools
import random

POOL_WORDS = 1_200_000
VOCABULARY = 2_000
ZIPF_EXPONENT = 1.2
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 5.9, 4.3, 4, 2.8, 2.4, 2.4,
                  2.2, 2, 1.9, 2, 1.5, 1, 0.8, 0.2, 0.2, 0.1, 0.1, 0.07]


def text_pool(seed: int) -> bytes:
    """About 8 MiB of sentence-like ASCII, the same for the same seed."""
    rng = random.Random(seed)
    vocab: set[str] = set()
    while len(vocab) < VOCABULARY:
        length = max(1, min(14, int(rng.gauss(5, 2.5))))
        vocab.add("".join(rng.choices(LETTERS, LETTER_WEIGHTS, k=length)))
    words_sorted = sorted(vocab)
    rng.shuffle(words_sorted)
    cum = list(itertools.accumulate(
        1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(words_sorted))))
    words = rng.choices(words_sorted, cum_weights=cum, k=POOL_WORDS)
    lines = []
    i = 0
    while i < len(words):
        n = rng.randint(4, 16)
        line = " ".join(words[i:i + n])
        i += n
        if rng.random() < 0.1:
            line += f" {rng.randint(0, 99999)}"
        lines.append(line.capitalize() + ".\n")
    return "".join(lines).encode("ascii")


class TextStream:
    """Yields text chunks stitched from pool slices, deterministically."""

    def __init__(self, pool: bytes, seed: int):
        self.pool = pool
        self.rng = random.Random(seed)

    def take(self, size: int) -> bytes:
        if size <= 0:
            return b""
        size = min(size, len(self.pool))
        start = self.rng.randrange(0, len(self.pool) - size + 1)
        return self.pool[start:start + size]

    def chunks(self, total: int, chunk: int = 1 << 20):
        left = total
        while left > 0:
            piece = self.take(min(chunk, left))
            left -= len(piece)
            yield piece


def noise_chunks(total: int, seed: int, chunk: int = 1 << 20):
    """Incompressible bytes (Mersenne Twister output), deterministic."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk, left)
        left -= n
        yield rng.randbytes(n)


def random_offsets(size: int, count: int, block: int, seed: int) -> list[int]:
    """The seeded offsets the random-read row uses, in read order."""
    rng = random.Random(seed)
    return [rng.randrange(0, size - block) for _ in range(count)]


class BlockDigests:
    """Hashes the bytes at chosen offsets while a stream goes by once.

    Lets the bench check random reads through a mount against the truth
    without inflating the member again.
    """

    def __init__(self, offsets: list[int], block: int):
        self.block = block
        self.wanted = sorted(set(offsets))
        self.parts: dict[int, list[bytes]] = {o: [] for o in self.wanted}
        self.position = 0

    def feed(self, chunk: bytes) -> None:
        start, end = self.position, self.position + len(chunk)
        for off in self.wanted:
            if off >= end:
                break
            if off + self.block <= start:
                continue
            lo = max(off, start) - start
            hi = min(off + self.block, end) - start
            self.parts[off].append(chunk[lo:hi])
        self.position = end
        self.wanted = [o for o in self.wanted if o + self.block > end]

    def digests(self) -> dict[str, str]:
        return {str(o): hashlib.sha256(b"".join(p)).hexdigest()
                for o, p in self.parts.items()}
