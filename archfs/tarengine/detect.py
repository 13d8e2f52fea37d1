"""Is this file a tar (or a compressed stream)? Kept light: the plugin
registry asks it before importing any plugin, on every mount."""

from archfs.engine.compressed import detect
from archfs.tarengine.headers import looks_like_tar


def is_tar_or_compressed(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 512 bytes, when it
    has them) is a compressed stream or a tar."""
    if detect(head) is not None:
        return True
    return len(head) >= 512 and not head[:512].strip(b"\0") == b"" and looks_like_tar(head)
