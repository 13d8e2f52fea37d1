"""Judging what a read-only mount serves against reference zip readers.

Used by the conformance test (``test_zip_conformance.py``, on archives the
builders in ``zip_corpus_builders.py`` generate) and by ``scripts/zipcorpus``
(on a corpus gathered from other projects' test suites, and for the other
mounters). Nothing here imports archfs: the mount is judged from outside.

References: Python's ``zipfile`` (member by member) and 7-Zip (``7zz x``),
7-Zip alone for the methods ``zipfile`` lacks. A member is readable when at
least one reference reads it without an error. Contents are compared by
SHA-256, so members can be judged whatever spelling a reader gives names.

Verdicts, per archive:

- ``ok``: every readable member is served with its exact bytes (when the
  two references read disjoint sets of members, those of either), and every
  file served has the bytes of some member a reference read, or bytes whose
  CRC-32 and size are those a header of the archive records (members no
  reference gets at); or the mount is refused and no reference reads any
  member;
- ``partial``: nothing wrong is served, but some readable member is not;
- ``refused``: the mount was refused although a reference reads members;
- ``wrong``: a file is served whose bytes no reference produced (wrong bytes);
- ``crash``: the daemon died; ``hang``: a mount, walk or read exceeded its time.
"""

import errno
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z") or "7zz"
READ_LIMIT = 1 << 30          # bytes hashed per member at most
CHUNK = 1 << 20


def _digest_stream(read, crc_too: bool = False):
    h = hashlib.sha256()
    total = crc = 0
    while total < READ_LIMIT:
        chunk = read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        if crc_too:
            crc = zlib.crc32(chunk, crc)
        total += len(chunk)
    return (h.hexdigest(), crc, total) if crc_too else h.hexdigest()


def recorded_checks(path: str) -> Set[Tuple[int, int]]:
    """(CRC-32, size) of every local and central header in the file: served
    bytes that match one are what the archive itself records, even where no
    reference reader gets at them."""
    with open(path, "rb") as f:
        data = f.read()
    found = set()
    for sig, crc_at, size_at in ((b"PK\x03\x04", 14, 22), (b"PK\x01\x02", 16, 24)):
        at = data.find(sig)
        while at >= 0:
            if at + size_at + 4 <= len(data):
                crc, = struct.unpack_from("<L", data, at + crc_at)
                size, = struct.unpack_from("<L", data, at + size_at)
                found.add((crc, size))
            at = data.find(sig, at + 1)
    return found


@dataclass
class Reference:
    """What the reference readers made of one archive."""

    readable: Dict[str, str] = field(default_factory=dict)   # digest -> a member name
    counts: Dict[str, int] = field(default_factory=dict)     # digest -> members with it
    failed: Dict[str, str] = field(default_factory=dict)     # member -> why (no reader read it)
    opened: bool = False                                     # some reader listed members
    notes: List[str] = field(default_factory=list)
    recorded: Set[Tuple[int, int]] = field(default_factory=set)  # see recorded_checks
    # when zipfile and 7-Zip read disjoint sets of members (they take different
    # end records for the archive's), serving either set in full is right
    alternatives: List[Dict[str, int]] = field(default_factory=list)

    def add(self, name: str, digest: str, count_it: bool) -> None:
        self.readable.setdefault(digest, name)
        if count_it:
            self.counts[digest] = self.counts.get(digest, 0) + 1


def zipfile_reference(path: str, password: Optional[bytes]) -> Dict[str, object]:
    """member name (``#N`` added to the Nth repeat of a name) -> digest (str)
    or the error (Exception) zipfile gives."""
    out: Dict[str, object] = {}
    with zipfile.ZipFile(path) as zf:
        if password:
            zf.setpassword(password)
        for info in zf.infolist():
            if info.is_dir():
                continue
            key = info.filename
            while key in out:
                key += "#"
            try:
                with zf.open(info) as f:
                    out[key] = _digest_stream(f.read)
            except Exception as exc:   # every error a reader can give is a verdict here
                out[key] = exc
    return out


def sevenzip_reference(path: str, password: Optional[bytes]) -> Dict[str, object]:
    """extracted path -> digest, or the error 7-Zip printed for it."""
    out: Dict[str, object] = {}
    work = tempfile.mkdtemp(prefix="zipref-")
    try:
        args = [SEVEN_ZIP, "x", "-y", "-bb1", "-snld", "-o" + work,
                "-p" + (password or b"").decode("latin-1"), path]
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=300)
        text = proc.stdout.decode("utf-8", "replace")
        failed = set()
        for line in text.splitlines():
            # "ERROR: <what> : <name>": 7-Zip may still have written a file
            if line.startswith("ERROR: ") and " : " in line:
                failed.add(line.split(" : ")[1].strip())
        for root, _dirs, files in os.walk(work):
            for name in files:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, work)
                if rel in failed:
                    out[rel] = RuntimeError("7-Zip: error")
                    continue
                if os.path.islink(full):
                    out[rel] = hashlib.sha256(os.readlink(full).encode("utf-8",
                                              "surrogateescape")).hexdigest()
                    continue
                with open(full, "rb") as f:
                    out[rel] = _digest_stream(f.read)
        if proc.returncode not in (0, 1) and not out:
            out["<archive>"] = RuntimeError("7-Zip cannot open it: " + text.strip()[-200:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def reference(path: str, password: Optional[bytes] = None) -> Reference:
    ref = Reference(recorded=recorded_checks(path))
    try:
        by_zipfile = zipfile_reference(path, password)
    except Exception as exc:
        by_zipfile = {}
        ref.notes.append("zipfile: %s" % exc)
    by_7z = sevenzip_reference(path, password)
    ref.opened = bool(by_zipfile) or (bool(by_7z) and "<archive>" not in by_7z)
    zipfile_digests = set()
    for name, value in by_zipfile.items():
        if isinstance(value, str):
            ref.add(name, value, True)
            zipfile_digests.add(value)
        else:
            ref.failed[name] = "zipfile: %s" % value
    # 7-Zip counts members zipfile could not read (e.g. methods it lacks)
    seven_counts: Dict[str, int] = {}
    for name, value in by_7z.items():
        if isinstance(value, str):
            seven_counts[value] = seven_counts.get(value, 0) + 1
            ref.readable.setdefault(value, name)
    zipfile_counts = dict(ref.counts)
    if zipfile_counts and seven_counts and not set(zipfile_counts) & set(seven_counts):
        ref.alternatives = [zipfile_counts, seven_counts]
    for digest, count in seven_counts.items():
        if ref.counts.get(digest, 0) < count:
            ref.counts[digest] = count
    return ref


# -- the served side ------------------------------------------------------------------

def walk(mountpoint: str) -> Dict[str, object]:
    """path -> digest, or errno of the failed read; symlinks by their target."""
    out: Dict[str, object] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(mountpoint, rel) if rel else mountpoint
        try:
            names = os.listdir(full)
        except OSError as exc:
            out[rel + "/"] = exc.errno
            continue
        for name in names:
            child = os.path.join(rel, name) if rel else name
            path = os.path.join(mountpoint, child)
            try:
                st = os.lstat(path)
            except OSError as exc:
                out[child] = exc.errno
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(path)
                    out[child] = hashlib.sha256(target.encode("utf-8",
                                                "surrogateescape")).hexdigest()
                except OSError as exc:
                    out[child] = exc.errno
            else:
                try:
                    with open(path, "rb", buffering=0) as f:
                        digest, crc, size = _digest_stream(f.read, True)
                        out[child] = "%s %d %d" % (digest, crc, size)
                except OSError as exc:
                    out[child] = exc.errno
    return out


def walk_in_child(mountpoint: str, timeout: float) -> Optional[Dict[str, object]]:
    """``walk`` in a child process; None when it did not finish in time."""
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "walk", mountpoint],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return {"<walk>": errno.EIO}
    return json.loads(proc.stdout)


@dataclass
class Verdict:
    kind: str                     # ok, partial, refused, wrong, crash, hang
    detail: str = ""
    wrong: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return self.kind == "ok"


def judge(ref: Reference, served: Optional[Dict[str, object]], refused: Optional[str] = None,
          crashed: bool = False) -> Verdict:
    if served is None and refused is None:
        return Verdict("hang", "no answer in time")
    if crashed or (served and any(v == errno.ENOTCONN for v in served.values())):
        return Verdict("crash", "the daemon died")
    if refused is not None:
        if not ref.counts:
            return Verdict("ok", "refused, and no reference reads a member: " + refused)
        return Verdict("refused", refused)
    served = {p: v.split(" ")[0] if isinstance(v, str) else v for p, v in served.items()
              if not (isinstance(v, str) and v.count(" ") == 2
                      and v.split(" ")[0] not in ref.readable
                      and (int(v.split(" ")[1]), int(v.split(" ")[2])) in ref.recorded)}
    wrong = sorted(p for p, v in served.items() if isinstance(v, str) and v not in ref.readable)
    got: Dict[str, int] = {}
    for v in served.values():
        if isinstance(v, str):
            got[v] = got.get(v, 0) + 1
    missing = sorted(ref.readable[d] for d, n in ref.counts.items() if got.get(d, 0) < n)
    for counts in ref.alternatives:
        if all(got.get(d, 0) >= n for d, n in counts.items()):
            missing = []
    if wrong:
        return Verdict("wrong", "bytes no reference produced: %s" % ", ".join(wrong[:5]),
                       wrong, missing)
    if missing:
        errors = sorted("%s: %s" % (p, errno.errorcode.get(v, v)) for p, v in served.items()
                        if not isinstance(v, str))
        return Verdict("partial", "not served: %s; errors: %s" % (", ".join(missing[:5]),
                                                                   ", ".join(errors[:5])),
                       [], missing)
    return Verdict("ok")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "walk":
    json.dump(walk(sys.argv[2]), sys.stdout)
