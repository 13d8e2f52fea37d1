"""Serving an archive plugin through FUSE.

``operations`` translates FUSE calls to the plugin API; ``openfiles`` keeps
open files and unsaved content; ``committer`` copies content back and
commits; ``errnomap`` turns exceptions into errno; ``options``, ``preflight``,
``daemon``, ``unmount`` and ``statefiles`` run the mount's life. Nothing here
knows an archive format.
"""
