"""The read-ahead's decoder: a process of its own that decodes small files
and stores them straight into the kernel's page cache.

Decoded in a thread of the daemon, read-ahead competes for Python's one
lock (the GIL) with the thread that answers the walker's READs, and each
READ then waits for it. A process has its own: it decodes what the plugin
describes as plain data (``small_plans``) through the archive's inherited
descriptor, and writes each file to the FUSE device as a NOTIFY_STORE
message (the kernel takes those from any holder of the descriptor), while
the daemon goes on answering. It is started by the first batch, holds no
index (a few MB), and ends with the daemon (its input closes; the kernel
kills it if the daemon dies first).

The protocol on its stdin and stdout: frames of a 4-byte length and a
``marshal``-ed body; in, (decoder, inodes, plans); out, the inodes stored.
"""

import marshal
import os
import struct
import subprocess
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


class DecoderProcess:
    """The daemon's side: one child, started at the first batch."""

    def __init__(self, fuse_fd: int):
        self._fuse_fd = fuse_fd
        self._proc = None
        self._fds = ()
        self._broken = False
        self._lock = threading.Lock()

    def send(self, decoder, inodes, plans) -> bool:
        """Give the child a batch: decode ``plans``, store them as
        ``inodes``; False when it cannot (the batch is then not done). Its
        answer comes from ``receive``, in order: a caller may send the next
        batch first, so the child never waits for the caller."""
        module, name, args, fds = decoder
        with self._lock:
            if self._broken:
                return False
            if self._proc is None:
                self._start(fds)
            if self._proc is None or not set(fds) <= set(self._fds):
                return False
            try:
                _send(self._proc.stdin.fileno(), ((module, name, args), list(inodes), plans))
                return True
            except OSError:
                self._fail()
                return False

    def receive(self):
        """The inodes stored by the oldest batch sent; None if the child
        failed."""
        with self._lock:
            if self._proc is None:
                return None
            try:
                stored = _recv(self._proc.stdout.fileno())
            except OSError:
                stored = None
            if stored is None:
                self._fail()
            return stored

    def _fail(self) -> None:
        self._broken = True
        self._end()

    def prepare(self, decoder) -> None:
        """Start the child for ``decoder`` ahead of the first batch."""
        with self._lock:
            if self._proc is None and not self._broken:
                self._start(decoder[3])

    def _start(self, fds) -> None:
        self._fds = tuple(fds)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "archfs.mount.decoderproc", str(self._fuse_fd)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                pass_fds=(self._fuse_fd,) + self._fds, close_fds=True)
        except OSError:
            self._broken = True

    def close(self) -> None:
        with self._lock:
            self._broken = True
            self._end()

    def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:   # stuck on a page lock of a dead mount
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
