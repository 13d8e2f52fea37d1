"""Small helpers shared by the hostile-archive, fault, load and security tests.

``scaled(n)`` is how many iterations a stress test runs: ``n`` times the
environment variable ``ARCHFS_STRESS`` (default 1), so a long run is
``ARCHFS_STRESS=20 scripts/test tests/test_faults_sigkill.py``.
"""

import hashlib
import os
import shutil
import zipfile

from mount_fixtures import run


def stress_factor() -> float:
    try:
        return max(0.1, float(os.environ.get("ARCHFS_STRESS", "1")))
    except ValueError:
        return 1.0


def scaled(n: int) -> int:
    return max(1, int(round(n * stress_factor())))


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def one_line_error(result, pattern=None):
    """The command failed with exactly one ``archfs: ...`` line on stderr."""
    import re
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, "expected one line, got:\n" + result.stderr
    assert lines[0].startswith("archfs: "), lines[0]
    if pattern:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def read_errno(path) -> int:
    """0 if the file reads to its end, else the errno the read failed with."""
    try:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except OSError as exc:
        return exc.errno
    return 0


def assert_valid_zip(path) -> dict:
    """Python's zipfile and ``unzip -t`` accept the archive; returns name -> bytes."""
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        contents = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    if contents and shutil.which("unzip"):
        result = run(["unzip", "-tqq", path], check=False)
        assert result.returncode == 0, "unzip -t %s: %s%s" % (path, result.stdout, result.stderr)
    return contents


def fusermount():
    return shutil.which("fusermount3") or shutil.which("fusermount")


_HELP = []


def cli_has(command: str) -> bool:
    """Whether ``archfs --help`` lists ``command`` (repair and compact are new)."""
    if not _HELP:
        from mount_fixtures import archfs
        _HELP.append(archfs("--help").stdout)
    return any(line.split()[:1] == [command] for line in _HELP[0].splitlines())


def repair(path) -> None:
    """``archfs repair ARCHIVE``, or the engine's repair until the command exists."""
    if cli_has("repair"):
        from mount_fixtures import archfs
        result = archfs("repair", path, timeout=120)
        assert result.returncode == 0, "archfs repair: %s%s" % (result.stdout, result.stderr)
    else:
        from archfs.zipengine.repair import repair as engine_repair
        engine_repair(str(path))
