"""The read-ahead's decoders: processes of their own that decode small
files and store them straight into the kernel's page cache.

Decoded in a thread of the daemon, read-ahead competes for Python's one
lock (the GIL) with the thread that answers the walker's READs, and each
READ then waits for it. A process has its own: it decodes what the plugin
describes as plain data (``small_plans``) through the archive's inherited
descriptor, and writes each file to the FUSE device as a NOTIFY_STORE
message (the kernel takes those from any holder of the descriptor), while
the daemon goes on answering. Two of them (on two cores or more) take
batches in turn; they start with the mount's first read-ahead, hold no
index (a few MB each), and end with the daemon (their input closes; the
kernel kills them if the daemon dies first).

The protocol on its stdin and stdout: frames of a 4-byte length and a
``marshal``-ed body; in, (decoder, inodes, plans); out, the inodes stored.
"""

import collections
import marshal
import os
import struct
import sys
import threading

# struct fuse_out_header, then struct fuse_notify_store_out (linux/fuse.h)
_HEADER = struct.Struct("<IiQQQII")
FUSE_NOTIFY_STORE = 4
_LEN = struct.Struct("<I")


def _send(fd: int, body) -> None:
    data = marshal.dumps(body)
    frame = _LEN.pack(len(data)) + data
    while frame:
        frame = frame[os.write(fd, frame):]


def _recv(fd: int):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, _LEN.unpack(head)[0])
    return None if body is None else marshal.loads(body)


def _read_exact(fd: int, size: int):
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


# decoder processes: two keep ahead of a walker that reads cached files
# faster than one decodes them (grep -r: about 15 µs a file against 15-20)
DECODERS = max(1, min(2, os.cpu_count() or 1))


class DecoderProcess:
    """The daemon's side: ``DECODERS`` children, started at the first
    batch, given batches in turn."""

    def __init__(self, fuse_fd: int, count: int = DECODERS):
        self._fuse_fd = fuse_fd
        self._count = count
        self._procs = []
        self._turn = 0
        self._sent = collections.deque()    # the child of each batch not yet answered
        self._fds = ()
        self._broken = False
        self._lock = threading.Lock()

    def send(self, decoder, inodes, plans) -> bool:
        """Give a child a batch: decode ``plans``, store them as ``inodes``;
        False when none can (the batch is then not done). The answers come
        from ``receive`` in the order sent: a caller may send more batches
        first, so that no child waits for the caller."""
        module, name, args, fds = decoder
        with self._lock:
            if self._broken:
                return False
            if not self._procs:
                self._start(fds)
            if not self._procs or not set(fds) <= set(self._fds):
                return False
            proc = self._procs[self._turn]
            self._turn = (self._turn + 1) % len(self._procs)
            try:
                _send(proc.stdin.fileno(), ((module, name, args), list(inodes), plans))
            except OSError:
                self._fail()
                return False
            self._sent.append(proc)
            return True

    def receive(self):
        """The inodes stored by the oldest batch sent; None if it failed."""
        with self._lock:
            if not self._sent:
                return None
            proc = self._sent.popleft()
            try:
                stored = _recv(proc.stdout.fileno())
            except OSError:
                stored = None
            if stored is None:
                self._fail()
            return stored

    def _start(self, fds) -> None:
        import subprocess   # (here: a mount's start-up needs none of it)
        self._fds = tuple(fds)
        try:
            for _ in range(self._count):
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "archfs.mount.decoderproc", str(self._fuse_fd)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    pass_fds=(self._fuse_fd,) + self._fds, close_fds=True))
        except OSError:
            self._fail()

    def close(self) -> None:
        with self._lock:
            self._fail()

    def _fail(self) -> None:
        self._broken = True
        self._sent.clear()
        procs, self._procs = self._procs, []
        for proc in procs:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except Exception:   # (TimeoutExpired) stuck on a page lock of a dead mount
                proc.kill()
                proc.wait()


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child(fuse_fd: int) -> None:
    import importlib
    _die_with_parent()
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    decoders = {}
    while True:
        msg = _recv(inp)
        if msg is None:
            return
        spec, inodes, plans = msg
        decoder = decoders.get(spec)
        if decoder is None:
            module, name, args = spec
            decoder = decoders[spec] = getattr(importlib.import_module(module), name)(*args)
        stored = []
        for ino, data in zip(inodes, decoder.decode(plans)):
            if not data:
                continue
            head = _HEADER.pack(_HEADER.size + len(data), FUSE_NOTIFY_STORE, 0, ino, 0,
                                len(data), 0)
            try:
                os.writev(fuse_fd, (head, data))
            except OSError:     # the kernel forgot the inode: nothing to store into
                continue
            stored.append(ino)
        _send(out, stored)


if __name__ == "__main__":
    child(int(sys.argv[1]))
