"""Small filesystem helpers for crash-safe writes.

These calls block (fsync can take milliseconds on a USB disk): callers run them
in an executor or a dedicated thread, never on the event loop. The exception is
:func:`pread_cached`, which by design never waits for a disk.
"""

from __future__ import annotations

import os
from pathlib import Path

# Linux >= 4.14 for buffered reads; elsewhere pread_cached always says "not cached".
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def pread_cached(fd: int, size: int, offset: int) -> bytearray | None:
    """``size`` bytes at ``offset`` if every one is in the page cache, else None at once.

    ``preadv(RWF_NOWAIT)`` fails with EAGAIN rather than wait for the disk, so this may run
    on the event loop: a hit saves the hand-off to an executor thread and back, which costs
    more than copying a few hundred KiB from the page cache. None also for a short read, an
    error or an OS without the flag: the caller then reads in its executor, which waits for
    the disk and reports errors.
    """
    if _RWF_NOWAIT is None:
        return None
    buf = bytearray(size)
    try:
        if os.preadv(fd, [buf], offset, _RWF_NOWAIT) != size:
            return None
    except OSError:
        return None
    return buf


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a create, rename or unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that after a crash it holds either the old or the new bytes.

    tmp file -> fsync -> rename -> fsync the directory.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
