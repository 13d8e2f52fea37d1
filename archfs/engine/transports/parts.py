"""Planning a multipart upload that rebuilds an object from its old self.

A publish replaces the object with [unchanged ranges of the old object]
interleaved with [changed ranges held locally]. S3 copies an unchanged
range server-side (UploadPartCopy with a byte range), so only changed
bytes cross the network, within S3's rules:

- every part but the last holds at least ``MIN_PART`` (5 MiB) bytes;
- a copied part holds at most ``MAX_COPY`` (5 GiB); at most ``MAX_PARTS``
  (10,000) parts in all.

A changed range shorter than 5 MiB that is not at the end is padded with
unchanged bytes that follow it (read and sent again), and an unchanged range
shorter than 5 MiB is sent rather than copied: a change costs at most about
10 MiB more than its own size. An object under 5 MiB is simply sent whole.
"""

from typing import List, NamedTuple, Sequence, Tuple

MIN_PART = 5 << 20
MAX_COPY = 5 << 30
UPLOAD_PART = 16 << 20          # bytes per part sent (memory held per part in flight)
MAX_PARTS = 10000


class Part(NamedTuple):
    copy: bool          # True: copied from the old object; False: sent
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def merge(ranges: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[List[int]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def plan(size: int, changed: Sequence[Tuple[int, int]], valid: int,
         min_part: int = MIN_PART, max_copy: int = MAX_COPY,
         upload_part: int = UPLOAD_PART, max_parts: int = MAX_PARTS) -> List[Part]:
    """Parts that make an object of ``size`` bytes whose ``changed`` ranges
    (and everything from ``valid`` on) are sent and the rest copied."""
    if size < min_part:
        return [Part(False, 0, size)]
    upload_part = max(upload_part, 2 * min_part)
    while True:
        parts = _plan(size, changed, valid, min_part, max_copy, upload_part)
        if len(parts) <= max_parts:
            return parts
        if upload_part >= max_copy:
            raise ValueError("an object of %d bytes needs more than %d parts" % (size, max_parts))
        upload_part = min(max_copy, upload_part * 2)


def _plan(size, changed, valid, min_part, max_copy, upload_part) -> List[Part]:
    sent = merge([(max(0, a), min(b, size)) for a, b in changed] + [(min(valid, size), size)])
    segments: List[List] = []        # [copy?, start, end]
    pos = 0
    for a, b in sent:
        if a > pos:
            segments.append([True, pos, a])
        segments.append([False, a, b])
        pos = b
    if pos < size:
        segments.append([True, pos, size])
    # an unchanged stretch too short to be a part (unless last) is sent
    for i, seg in enumerate(segments):
        if seg[0] and seg[2] - seg[1] < min_part and i != len(segments) - 1:
            seg[0] = False
    segments = _joined(segments)
    # a sent stretch too short to be a part (unless last) takes bytes after it
    i = 0
    while i < len(segments) - 1:
        seg, nxt = segments[i], segments[i + 1]
        short = min_part - (seg[2] - seg[1])
        if seg[0] or short <= 0:
            i += 1
            continue
        last = i + 1 == len(segments) - 1
        if nxt[2] - nxt[1] - short >= min_part or (last and nxt[2] - nxt[1] > short):
            seg[2] += short
            nxt[1] += short
            i += 1
        else:
            nxt[0] = False              # take all of it, and look again
            segments = _joined(segments)
    parts: List[Part] = []
    for copy, start, end in segments:
        parts.extend(_split(copy, start, end, max_copy if copy else upload_part))
    return parts


def _joined(segments: List[List]) -> List[List]:
    out: List[List] = []
    for seg in segments:
        if out and out[-1][0] == seg[0]:
            out[-1][2] = seg[2]
        else:
            out.append(list(seg))
    return out


def _split(copy: bool, start: int, end: int, most: int) -> List[Part]:
    """Equal pieces of at most ``most`` bytes (each at least most/2 when
    there are several, so none falls under the minimum)."""
    count = max(1, -(-(end - start) // most))
    bounds = [start + (end - start) * k // count for k in range(count + 1)]
    return [Part(copy, bounds[k], bounds[k + 1]) for k in range(count)]
