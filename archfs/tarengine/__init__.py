"""The tar engine: reading every tar dialect, plain or compressed, and writing
in place (no FUSE here). ``store.py`` reads, ``writer.py`` writes (with
``namechanges``, ``rewriting`` and, for compressed tars, ``recompress``)."""
