"""Compressed tars written by archfs (placeholder until the segment writer lands)."""

import os

from archfs.engine import compressed
from archfs.tarengine import headers as hd


def empty_archive_bytes(path: str) -> bytes:
    lowered = path.lower()
    for kind, suffixes in compressed.SUFFIXES.items():
        if lowered.endswith(suffixes):
            raise NotImplementedError(kind)
    return bytes(hd.RECORD)
