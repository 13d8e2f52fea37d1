"""archfs: mount archives as ordinary directories."""

__version__ = "0.1.0"
