"""--install-peers: fuse-zip and archivemount from apt, ratarmount into its own venv.

ratarmount goes into .bench/peers-venv so its dependencies never touch the
project's .venv.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from benchlib.settings import PEERS_VENV

APT_PACKAGES = ["fuse-zip", "archivemount"]


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def install_peers() -> None:
    missing = [p for p in APT_PACKAGES if not shutil.which(p)]
    if missing:
        if not shutil.which("apt-get"):
            raise SystemExit(f"cannot install {', '.join(missing)}: no apt-get here")
        if os.geteuid() != 0:
            raise SystemExit("not root; install the peers with: sudo apt-get install -y "
                             + " ".join(missing))
        _run(["apt-get", "update"])
        _run(["apt-get", "install", "-y", "--no-install-recommends"] + missing)
    ratarmount = PEERS_VENV / "bin" / "ratarmount"
    if not ratarmount.exists():
        python = shutil.which("python3") or sys.executable
        _run([python, "-m", "venv", str(PEERS_VENV)])
        _run([str(PEERS_VENV / "bin" / "pip"), "install", "--quiet", "ratarmount"])
    if not has_s3fs():      # ratarmount reads s3:// through fsspec (the remote rows)
        _run([str(PEERS_VENV / "bin" / "pip"), "install", "--quiet", "s3fs"])
    print("peers installed", file=sys.stderr)


def has_s3fs() -> bool:
    python = PEERS_VENV / "bin" / "python"
    return python.exists() and subprocess.run(
        [str(python), "-c", "import s3fs"], capture_output=True).returncode == 0
