"""SHA-256 for cache and state file names, without importing hashlib.

Where CPython has its own module (``_sha2`` from 3.12, ``_sha256`` before)
it is used: hashlib loads OpenSSL's libcrypto, a noticeable part of a second
mount's start, and of ``archfs unmount``'s, from a cold page cache. The
module found is kept: a failed import is not cached by Python, and would
search every directory of the path again at each call.
"""

_constructor = None


def sha256(data: bytes):
    global _constructor
    if _constructor is None:
        _constructor = _find()
    return _constructor(data)


def _find():
    for name in ("_sha2", "_sha256"):        # 3.12 and later, 3.10-3.11
        try:
            return __import__(name).sha256
        except (ImportError, AttributeError):
            continue
    import hashlib
    return hashlib.sha256
