"""Inode numbers for the low-level FUSE binding: which path each one names.

The kernel refers to files by the number a lookup gave it and says, with
``forget``, when it no longer needs one. Each known inode records its parent
and name (not its whole path), so a rename moves a directory with everything
below it by changing one record. Numbers are never reused, so the kernel
never confuses an old inode with a new one (generation stays 0).

An inode whose name was removed while the kernel still holds it is
``unlinked``: it keeps its number but names no path (requests on it go to
the open file handle, as with libfuse's ``hard_remove``).
"""

import threading
from typing import Dict, Optional, Tuple

ROOT = 1


class Node:
    __slots__ = ("parent", "name", "lookups", "stored")

    def __init__(self, parent: int, name: str):
        self.parent = parent
        self.name = name
        self.lookups = 0
        self.stored = False     # its content was pushed into the kernel's page cache


class InodeTable:
    def __init__(self):
        self._nodes: Dict[int, Node] = {ROOT: Node(0, "")}
        self._by_name: Dict[Tuple[int, str], int] = {}
        self._next = ROOT + 1
        self._lock = threading.Lock()

    def path(self, ino: int) -> Optional[str]:
        """``/a/b`` for an inode, ``/`` for the root; None if unknown or unlinked."""
        if ino == ROOT:
            return "/"
        nodes = self._nodes
        parts = []
        while ino != ROOT:
            node = nodes.get(ino)
            if node is None or node.parent == 0:
                return None
            parts.append(node.name)
            ino = node.parent
        parts.reverse()
        return "/" + "/".join(parts)

    def child_path(self, parent: int, name: str) -> Optional[str]:
        base = self.path(parent)
        if base is None:
            return None
        return base + name if base == "/" else base + "/" + name

    def remember(self, parent: int, name: str, count: int = 1) -> int:
        """The inode of ``name`` in ``parent`` (made if new), its lookup count
        raised by ``count``: the kernel was just told about it."""
        key = (parent, name)
        with self._lock:
            ino = self._by_name.get(key)
            if ino is None:
                ino = self._next
                self._next += 1
                self._nodes[ino] = Node(parent, name)
                self._by_name[key] = ino
            self._nodes[ino].lookups += count
            return ino

    def mark_stored(self, ino: int) -> bool:
        """Note that ``ino``'s content went into the kernel's page cache;
        False if that was done already (or the inode is unknown)."""
        node = self._nodes.get(ino)
        if node is None or node.stored:
            return False
        node.stored = True
        return True

    def node(self, ino: int) -> Optional[Node]:
        return self._nodes.get(ino)

    def unstored(self, parent: int, name: str) -> int:
        """The inode of ``name`` in ``parent`` if the kernel holds one whose
        content was not stored yet, else 0."""
        ino = self.peek(parent, name)
        node = self._nodes.get(ino) if ino else None
        return ino if node is not None and not node.stored else 0

    def parent(self, ino: int) -> int:
        """The inode of the directory holding ``ino``; 0 for the root, an
        unknown or an unlinked inode."""
        node = self._nodes.get(ino)
        return node.parent if node is not None and ino != ROOT else 0

    def peek(self, parent: int, name: str) -> int:
        """The inode of ``name`` in ``parent`` if the kernel holds one, else 0."""
        return self._by_name.get((parent, name), 0)

    def forget(self, ino: int, count: int) -> bool:
        """Lower the lookup count; True if the inode is gone now."""
        if ino == ROOT:
            return False
        with self._lock:
            node = self._nodes.get(ino)
            if node is None:
                return False
            node.lookups -= count
            if node.lookups > 0:
                return False
            del self._nodes[ino]
            key = (node.parent, node.name)
            if self._by_name.get(key) == ino:
                del self._by_name[key]
            return True

    def unlinked(self, parent: int, name: str) -> None:
        """``name`` was removed from ``parent``: its inode names nothing now."""
        with self._lock:
            ino = self._by_name.pop((parent, name), None)
            if ino is not None:
                node = self._nodes.get(ino)
                if node is not None:
                    node.parent = 0

    def moved(self, parent: int, name: str, new_parent: int, new_name: str) -> None:
        """A rename: what ``new_name`` named before is gone, and the inode of
        ``name`` (with everything below it) now lives at the new place."""
        with self._lock:
            replaced = self._by_name.pop((new_parent, new_name), None)
            if replaced is not None:
                node = self._nodes.get(replaced)
                if node is not None:
                    node.parent = 0
            ino = self._by_name.pop((parent, name), None)
            if ino is not None:
                node = self._nodes[ino]
                node.parent, node.name = new_parent, new_name
                self._by_name[(new_parent, new_name)] = ino

    def __len__(self):
        return len(self._nodes)
