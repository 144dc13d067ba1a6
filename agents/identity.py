"""Finding a file again by its identity ``(st_dev, st_ino)`` after it may have been renamed.

Rotation renames within a directory (``app.log`` -> ``app.log.1``), so a file last seen
under ``path`` is looked for there first, then among its old directory's entries.
"""

from __future__ import annotations

import errno
import os

from agents.block import FileKey


def identity(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


TRANSIENT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS,
                              errno.EIO, errno.EINTR, errno.EAGAIN})
"""Errors that say nothing about whether a file exists: out of descriptors or memory, a
flaky disk. Taking them for "gone" would drop lines that are still there."""


def transient(exc: OSError) -> bool:
    return exc.errno in TRANSIENT_ERRNOS


def find_file(path: str, key: FileKey) -> str | None:
    """Where the file ``key`` last seen as ``path`` is now, or None if it is gone.

    Raises the :class:`OSError` when the directory cannot be searched for a :func:`transient`
    reason: the file may well be there.
    """
    try:
        if identity(os.stat(path)) == key:
            return path
    except OSError:
        pass
    try:
        with os.scandir(os.path.dirname(path) or ".") as entries:
            for entry in entries:
                if entry.inode() == key[1] and _same(entry, key):
                    return entry.path
    except OSError as exc:
        if transient(exc):
            raise
        return None
    return None


def _same(entry: os.DirEntry[str], key: FileKey) -> bool:
    try:
        return identity(entry.stat(follow_symlinks=False)) == key and entry.is_file()
    except OSError:
        return False
