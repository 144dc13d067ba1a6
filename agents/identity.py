"""Finding a file again by its identity ``(st_dev, st_ino)`` after it may have been renamed.

Rotation renames within a directory (``app.log`` -> ``app.log.1``), so a file last seen
under ``path`` is looked for there first, then among its old directory's entries.
"""

from __future__ import annotations

import os

from agents.block import FileKey


def identity(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


GONE = (FileNotFoundError, NotADirectoryError)
"""The only errors that say a file is gone. Any other (out of descriptors, an I/O error, a
directory that cannot be searched) says nothing about it: taking it for "gone" would drop
lines that are still there."""


def find_file(path: str, key: FileKey) -> str | None:
    """Where the file ``key`` last seen as ``path`` is now, or None if it is gone.

    Raises :class:`OSError` when its directory cannot be searched for any reason but
    :data:`GONE`: the file may well be there.
    """
    try:
        if identity(os.stat(path)) == key:
            return path
    except OSError:
        pass  # the directory search below decides
    try:
        with os.scandir(os.path.dirname(path) or ".") as entries:
            for entry in entries:
                if entry.inode() == key[1] and _same(entry, key):
                    return entry.path
    except GONE:
        return None
    return None


def _same(entry: os.DirEntry[str], key: FileKey) -> bool:
    try:
        return identity(entry.stat(follow_symlinks=False)) == key and entry.is_file()
    except GONE:  # removed since the listing
        return False
