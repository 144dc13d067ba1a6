"""Follow files like ``tail -F``: appended lines, rotation, truncation, late new files.

Files are tracked by identity ``(st_dev, st_ino)``, not by name, so a renamed file is
still the same file. Each poll re-reads the globs: a followed file no longer matched is
still read for ``rotate_wait`` seconds if it was renamed (its writer may not have reopened
the new file yet), then read to its end, its unterminated last line emitted, and closed; a
deleted file is finished at once. A file that shrank below our position was truncated in
place (copytruncate) and is re-read from 0. A poll whose globs cannot be listed (out of
descriptors...) retires nothing: an empty listing must not read as every file gone.

A restarted agent is told which files it knew (``known``): one that was rotated away
while the agent was down is found again in its directory and finished the same way.

Reads use ``os.pread`` in large blocks and split lines in bulk; a poll reads each file to
its end one block at a time, awaiting the sink in between, so a full queue stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import takewhile

from agents.block import READ_SIZE, Block, FileKey, LineBuffer, Sink
from agents.identity import GONE, find_file, identity

log = logging.getLogger(__name__)

Resume = Callable[[str, FileKey, int], int]
"""``(path, identity, size) -> offset`` to start at (the registry's acked offset)."""
Retired = Callable[[FileKey, int], None]
"""``(identity, offset)``: a file was finished and closed after its last line at offset."""
RETIRE_ATTEMPTS = 40
"""Polls that try to finish a file gone from the globs whose reading fails (``EIO``...)
before its unread rest is given up: about 10 s at the default poll interval."""


class Follower:
    """One open file, its identity, and a :class:`LineBuffer` positioned in it."""

    def __init__(self, path: str, fd: int, key: FileKey, offset: int, now: float) -> None:
        self.path = path
        self.fd = fd
        self.key = key
        after_cut = offset > 0 and os.pread(fd, 1, offset - 1) not in (b"\n", b"")
        self.buffer = LineBuffer(offset, after_cut=after_cut)
        self.grew_at = now
        self.left_at: float | None = None
        """When the file was first missed by the globs (None while they find it)."""
        self.failed_retires = 0

    def blocks(self, now: float) -> Iterator[Block]:
        """Blocks of complete lines up to the current end of the file, read lazily."""
        buffer = self.buffer
        while data := os.pread(self.fd, READ_SIZE, buffer.position):
            self.grew_at = now
            start = buffer.offset
            lines, ends = buffer.feed(data)
            if lines:
                yield Block(self.path, time.time(), lines, ends, self.key, start, buffer.cut,
                            buffer.offset)

    def take_partial(self) -> Block | None:
        """The held unterminated line as a one-line block, or None if there is none."""
        start = self.buffer.offset
        lines, ends = self.buffer.take()
        if not lines:
            return None
        return Block(self.path, time.time(), lines, ends, self.key, start, cut=True)

    def truncated(self) -> bool:
        return os.fstat(self.fd).st_size < self.buffer.position

    def linked(self) -> bool:
        """Whether the file still has a name (renamed, not deleted): a writer may add more."""
        st = self._stat()
        return st is not None and st.st_nlink > 0

    def read_to_end(self) -> bool:
        """Whether nothing follows the bytes read: a held partial line is the file's end."""
        st = self._stat()
        return st is not None and st.st_size == self.buffer.position

    def _stat(self) -> os.stat_result | None:
        try:
            return os.fstat(self.fd)
        except OSError:
            return None

    def close(self) -> None:
        os.close(self.fd)


class TailSource:
    """Every regular file matching ``patterns``, followed until :meth:`stop`."""

    finite = False

    def __init__(self, patterns: Sequence[str], *, poll_interval: float,
                 partial_line_timeout: float, resume: Resume,
                 known: Sequence[tuple[str, FileKey]] = (),
                 retired: Retired | None = None, rotate_wait: float = 0.0) -> None:
        self.patterns = [os.path.abspath(p) for p in patterns]  # stable registry keys
        self._dirs = [_fixed_dir(p) for p in self.patterns]
        self.poll_interval = poll_interval
        self.partial_line_timeout = partial_line_timeout
        self._resume = resume
        self._known = list(known)
        self._retired = retired
        self.rotate_wait = rotate_wait
        self._unlisted = False
        self._followers: dict[FileKey, Follower] = {}
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Stop reading; held partial lines are still emitted before :meth:`run` returns."""
        self._stopped.set()

    async def run(self, sink: Sink) -> None:
        clock = asyncio.get_running_loop().time
        try:
            while not self._stopped.is_set():
                await self.poll(sink, clock)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self.poll_interval)
            # The last lines go out at a stop only where they end the file: a stop in the
            # middle of a backlog leaves the rest, this line's end included, to the restart.
            for follower in self._followers.values():
                if follower.read_to_end():
                    await _emit(sink, follower.take_partial())
        finally:
            for follower in self._followers.values():
                follower.close()
            self._followers.clear()

    async def poll(self, sink: Sink, clock: Callable[[], float]) -> None:
        """One pass: retire files gone from the globs (renamed ones after ``rotate_wait``),
        open new ones, read all to the end."""
        found, complete = self._scan()
        if self._known and complete:
            self._adopt_rotated(found, clock())
        for key in [k for k in self._followers if k not in found] if complete else ():
            if not self._waiting(self._followers[key], clock()):
                await self._retire(key, sink, clock())
        for key, path in found.items():
            follower = self._followers.get(key)
            if follower is None:
                self._open(path, clock())
                continue
            follower.left_at, follower.failed_retires = None, 0  # matched again
            if follower.path != path:
                log.info("%s was renamed to %s; still following it", follower.path, path)
                follower.path = path
        for follower in list(self._followers.values()):
            if self._stopped.is_set():
                return
            if follower.failed_retires:
                continue  # a file still being finished (see _retire)
            try:
                await self._read(follower, sink, clock)
            except OSError as exc:  # e.g. EIO: keep the others going, retry next poll
                log.warning("cannot read %s: %s", follower.path, exc)

    def _scan(self) -> tuple[dict[FileKey, str], bool]:
        """Regular files the globs match, and whether every pattern's directory could be
        listed (``glob`` returns nothing, silently, when it cannot)."""
        found: dict[FileKey, str] = {}
        complete = True
        for pattern, directory in zip(self.patterns, self._dirs, strict=True):
            try:
                os.scandir(directory).close()
            except GONE:
                pass  # no such directory yet: truly no files
            except OSError as exc:
                if not self._unlisted:
                    log.warning("cannot list %s (%s): no file counts as gone until it can",
                                directory, exc)
                complete = False
                continue
            for path in sorted(glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between glob and stat
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), path)
        if complete and self._unlisted:
            log.info("the globs can be listed again")
        self._unlisted = not complete
        return found, complete

    def _adopt_rotated(self, found: dict[FileKey, str], now: float) -> None:
        """Open files known from before a restart that left the globs, so they get finished."""
        known, self._known = self._known, []
        for path, key in known:
            if key in found or key in self._followers:
                continue
            try:
                where = find_file(path, key)
            except OSError as exc:
                log.warning("cannot look for the file last seen as %s now (%s): trying again",
                            path, exc)
                self._known.append((path, key))
                continue
            if where is not None:
                log.info("%s (last seen as %s) was rotated away while the agent was down",
                         where, path)
                if not self._open(where, now):
                    self._known.append((path, key))  # the globs will not offer it again

    def _open(self, path: str, now: float) -> bool:
        """Follow ``path``; False if it could not be opened but may still be there."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)
            return isinstance(exc, GONE)
        st = os.fstat(fd)
        key = identity(st)
        if key in self._followers:  # replaced by a followed file since the scan
            os.close(fd)
            return True
        offset = self._resume(path, key, st.st_size)
        log.info("following %s from offset %d", path, offset)
        self._followers[key] = Follower(path, fd, key, offset, now)
        return True

    async def _read(self, follower: Follower, sink: Sink, clock: Callable[[], float]) -> None:
        if follower.truncated():
            log.info("%s was truncated; reading it from the start", follower.path)
            await _emit(sink, follower.take_partial())
            follower.buffer = LineBuffer(0)
        for block in follower.blocks(clock()):
            await sink(block)
            if self._stopped.is_set():
                return
        if follower.buffer.pending and clock() - follower.grew_at >= self.partial_line_timeout:
            await _emit(sink, follower.take_partial())

    def _waiting(self, follower: Follower, now: float) -> bool:
        """Whether a file that left the globs is still read as usual: renamed (not deleted)
        less than ``rotate_wait`` ago, its writer may not have reopened the new file yet
        (like Fluent Bit's ``Rotate_Wait``)."""
        first = follower.left_at is None
        if first:
            follower.left_at = now
        waiting = (not follower.failed_retires and now - follower.left_at < self.rotate_wait
                   and follower.linked())
        if first and waiting:
            log.info("%s left the globs; following it %.1fs more for its writer's last lines",
                     follower.path, self.rotate_wait)
        return waiting

    async def _retire(self, key: FileKey, sink: Sink, now: float) -> None:
        """Finish a file that left the globs: read its tail, emit its last line, close it.

        A read that fails leaves the file to the next poll (the lines already emitted are
        not read again), up to :data:`RETIRE_ATTEMPTS`: one bad file never stops the others.
        """
        follower = self._followers[key]
        if not follower.failed_retires:
            log.info("%s was rotated away or deleted; finishing it", follower.path)
        try:
            for block in follower.blocks(now):
                await sink(block)
        except OSError as exc:
            follower.failed_retires += 1
            if follower.failed_retires < RETIRE_ATTEMPTS:
                log.warning("cannot finish %s: %s; trying again at the next poll",
                            follower.path, exc)
                return
            log.error("giving up on %s after %d failed reads (%s): its bytes from offset %d "
                      "on are not shipped", follower.path, follower.failed_retires, exc,
                      follower.buffer.offset)
        else:
            await _emit(sink, follower.take_partial())
        if self._retired is not None:
            self._retired(follower.key, follower.buffer.offset)
        del self._followers[key]
        follower.close()


async def _emit(sink: Sink, block: Block | None) -> None:
    if block is not None:
        await sink(block)


def _fixed_dir(pattern: str) -> str:
    """The deepest directory of ``pattern`` without glob characters: listed by every glob."""
    fixed = takewhile(lambda part: not glob.has_magic(part), pattern.split(os.sep)[:-1])
    return os.sep.join(fixed) or os.sep
