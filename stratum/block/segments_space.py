"""Giving a segment's space back: freeing records in place, and measuring segment files.

**Freeing a record** (:func:`free_record`, called when the garbage collector frees a small
volume, or for the records of a put that failed): its bytes are deallocated in place with
``fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`` (ext4, xfs, btrfs, ZFS, tmpfs), so
the space comes back at once without rewriting the file, and the record reads back as zeros:
scans, recovery included, no longer find it. A filesystem deallocates only the whole blocks
inside the range; the range is therefore widened over the zeros next to it up to block
boundaries, so that the last record freed in a block frees the block. The widening is safe
with appends going on (the writer of another process may be appending to the segment): it
covers only bytes below the file size seen first and only zeros, and zeros stay zeros.
Where holes cannot be punched only the record's header is zeroed (the record is dead to scans;
its space waits for compaction).

Before freeing, the record header at the offset must be the one the caller expects (volume,
sizes, CRC): freeing twice (a collection pass repeated after a crash) or a location that no
longer names that record (its segment was compacted away and the number reused) frees nothing.

**Measuring** (:func:`measure`): a segment's size, the bytes its blocks take on the disk
(``st_blocks``; punched holes take none) and its header flags. What is *reclaimable* is the
allocation beyond the live records' bytes: the blocks freed records share with live ones, and
records no collection has freed. Who knows which records are live (the metadata) says how many
bytes are; see :mod:`stratum.maintenance.compaction`.

Everything here blocks: call it from an executor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stratum.block.segments_format import (
    FLAG_COMPACTED,
    FLAG_SEALED,
    FREE_BLOCK,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    SegmentFormatError,
    decode_record_header,
    decode_segment_header,
    list_segments,
    pwritev_all,
    read_full,
    segment_name,
)

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    """libc's ``fallocate64`` (64-bit offsets on 32-bit ARM too), or None off Linux/glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        func = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


_fallocate = _load_fallocate()


def punch_hole(fd: int, start: int, end: int) -> bool:
    """Deallocate bytes [start, end) of an open file, keeping its size (reads give zeros).

    False if the filesystem or platform cannot punch holes; OSError for other failures.
    """
    if _fallocate is None or end <= start:
        return False
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _fallocate(fd, mode, start, end - start) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, f"fallocate(PUNCH_HOLE): {os.strerror(code)}")


def _zeros(fd: int, start: int, end: int) -> bool:
    data = read_full(fd, end - start, start)
    return len(data) == end - start and not data.strip(b"\0")


def free_record(fd: int, offset: int, expect: Callable[[RecordHeader], bool]) -> int:
    """Free the record at ``offset`` of an open segment if ``expect(header)`` holds.

    Returns the record's size, or 0 when no such record is there (already freed, or another
    record). See the module docstring for the widening over neighbouring zeros.
    """
    header = decode_record_header(read_full(fd, RECORD_HEADER_SIZE, offset), offset)
    if header is None or not expect(header):
        return 0
    st = os.fstat(fd)
    block = max(st.st_blksize, FREE_BLOCK) if st.st_blksize % FREE_BLOCK == 0 else FREE_BLOCK
    start, end = offset, header.end
    low = start - start % block
    if SEGMENT_HEADER_SIZE <= low < start and _zeros(fd, low, start):
        start = low
    high = min(end + (-end % block), st.st_size)
    if high > end and _zeros(fd, end, high):
        end = high
    if not punch_hole(fd, start, end):
        pwritev_all(fd, [bytes(RECORD_HEADER_SIZE)], offset)
    return header.record_size


@dataclass(frozen=True)
class SegmentFile:
    """One segment file as :func:`measure` found it."""

    number: int
    size: int  # bytes, holes included
    allocated: int  # bytes its blocks take on the disk
    flags: int  # header flags (0 when the header cannot be read)

    @property
    def sealed(self) -> bool:
        return bool(self.flags & FLAG_SEALED)

    @property
    def compacted(self) -> bool:
        return bool(self.flags & FLAG_COMPACTED)


def measure(seg_dir: Path) -> list[SegmentFile]:
    """Every segment file of a disk with its size, allocation and flags (blocking).

    Files that vanish meanwhile (compacted away) are left out.
    """
    out: list[SegmentFile] = []
    for number in list_segments(seg_dir):
        try:
            fd = os.open(seg_dir / segment_name(number), os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            st = os.fstat(fd)
            try:
                flags = decode_segment_header(read_full(fd, SEGMENT_HEADER_SIZE, 0), number).flags
            except SegmentFormatError:
                flags = 0
        finally:
            os.close(fd)
        out.append(SegmentFile(number, st.st_size, st.st_blocks * 512, flags))
    return out
