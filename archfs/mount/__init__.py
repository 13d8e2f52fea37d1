"""Serving an archive plugin through FUSE; and ``archfs.mount(...)``.

``operations`` translates FUSE calls to the plugin API; ``openfiles`` keeps
open files and unsaved content; ``committer`` copies content back and
commits; ``errnomap`` turns exceptions into errno; ``options``, ``preflight``,
``daemon``, ``unmount`` and ``statefiles`` run the mount's life; ``handle``
is the Python API. Nothing here knows an archive format.

The Python API is ``archfs.mount(source, mountpoint, **options)``: this
package is callable (see ``handle.mount`` for the arguments). A module
cannot be a function, and a function named ``archfs.mount`` would be
replaced by this package the first time a submodule is imported, so the
package's class is swapped for one with a ``__call__``.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, source, mountpoint, **options):
        from archfs.mount.handle import mount
        return mount(source, mountpoint, **options)


sys.modules[__name__].__class__ = _CallablePackage
