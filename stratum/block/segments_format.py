"""On-disk format of small-object segment files, and a scanner for recovery.

Small objects are packed into append-only *segment files*, one directory per disk::

    <disk>/seg/<segment number, 10 digits>.seg     e.g. seg/0000000042.seg
    <disk>/seg/.lock                               flock()ed by the one process owning the disk

A segment is a 48-byte file header followed by records, back to back, no padding.
All integers are little-endian; every CRC is ``zlib.crc32`` (CRC-32/ISO-HDLC, initial value 0).

Segment file header, format version 1 (48 bytes)::

    offset size  field
     0      8    magic  b"STRATSEG"
     8      2    u16  format version (1)
    10      2    u16  header size in bytes (48): where the first record starts
    12      4    u32  flags: bit 0 SEALED (no process appends to the segment any more),
                          bit 1 COMPACTED (written by compaction: records moved out of other
                          segments); other bits 0. Code that predates the flags ignores them.
    16     16    disk id, the 32 hex characters of ``stratum-disk.json`` as 16 raw bytes
    32      8    u64  segment number (same as the file name)
    40      4    u32  reserved, 0
    44      4    u32  CRC32 of bytes 0..43

Record, format version 1 (56-byte header + meta + payload)::

    offset size  field
     0      4    magic  b"SREC"
     4      1    u8   record format version (1)
     5      1    u8   kind: 0 = object data (other values reserved, e.g. delete tombstones)
     6      2    u16  reserved, 0
     8     16    volume id, 32 hex characters as 16 raw bytes
    24      8    u64  offset of this record inside its segment file (self-locating, see below)
    32      4    u32  payload length P
    36      4    u32  CRC32 of the payload
    40      4    u32  meta length M
    44      4    u32  CRC32 of the meta bytes
    48      4    u32  reserved, 0
    52      4    u32  CRC32 of header bytes 0..51
    56      M    meta: compact UTF-8 JSON object (bucket, key, timestamps... chosen by the
                 caller) so that a lost metadata store can be rebuilt from the disks
    56+M    P    payload: the object's bytes

Location record (what the metadata layer stores, :class:`SegLocation` ``to_dict()``)::

    {"v": 1, "volume_id": "<32 hex>", "size": P, "crc32": <payload CRC32>, "meta_size": M,
     "replicas": [["<disk id>", <segment number>, <record offset>], ...]}

``meta_size`` lets a read fetch header + meta + payload with one pread; the read then checks the
header CRC, that the header names the same volume, sizes and CRC, and the payload CRC.

Why the record stores its own offset: a scan that meets damage (bitrot in a header, a torn
tail) searches forward for the next ``b"SREC"`` whose header CRC holds. A payload may
legitimately contain such bytes (someone uploads a segment file as an object); requiring the
stored offset to equal the position found makes a record embedded in a payload fail the check
unless it was crafted for that exact spot.

Freed records: when the garbage collector frees a record, its bytes are deallocated in place
(``fallocate(PUNCH_HOLE)``, see :mod:`stratum.block.segments_space`) and read back as zeros;
on a filesystem that cannot punch holes only its header is zeroed. Either way the record's
header no longer decodes, so scans (recovery, compaction) skip it like any damage: a deleted
object is not brought back by a rebuild from the disks. Compaction moves a segment's live
records elsewhere and then deletes the file.

Crash safety: records are only ever appended, and the writer acknowledges a record after an
``fdatasync`` of the segment (and a directory fsync when the segment is new). A record cut
short by a crash fails its header CRC or runs past the end of the file: a scan stops there (or
skips it when a valid record follows); if only its payload pages were lost (a filesystem that
extends the file with zeros) the scan yields it with ``intact`` false. Nobody points at such a
record because its put never returned. At start-up the newest segments are cut back to their
last whole record before more records are appended (:func:`prepare_for_append`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from stratum.block.errors import StorageError

SEGMENT_MAGIC = b"STRATSEG"
SEGMENT_VERSION = 1
RECORD_MAGIC = b"SREC"
RECORD_VERSION = 1
KIND_DATA = 0
FLAG_SEALED = 1
FLAG_COMPACTED = 2

_SEG_HEAD = struct.Struct("<8sHHI16sQI")  # everything but the trailing CRC
SEGMENT_HEADER_SIZE = _SEG_HEAD.size + 4  # 48
_REC_HEAD = struct.Struct("<4sBBH16sQIIIII")
RECORD_HEADER_SIZE = _REC_HEAD.size + 4  # 56
_CRC = struct.Struct("<I")

LOCATION_VERSION = 1
MAX_META_SIZE = 64 << 10
MAX_PAYLOAD_SIZE = (1 << 32) - 1
_RESYNC_CHUNK = 1 << 20
_IOV_MAX = 1024
_SEGMENT_NAME = re.compile(r"^(\d{10})\.seg$")


class SegmentFormatError(StorageError):
    """A segment file's header is malformed, of an unknown version, or fails its CRC."""


def segment_name(segment_no: int) -> str:
    return f"{segment_no:010d}.seg"


def parse_segment_name(name: str) -> int | None:
    """The segment number of a file name like ``0000000042.seg``, else None."""
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def list_segments(seg_dir: Path) -> list[int]:
    """Segment numbers present in ``seg_dir``, ascending (blocking)."""
    numbers = (parse_segment_name(entry.name) for entry in os.scandir(seg_dir))
    return sorted(n for n in numbers if n is not None)


def id_bytes(hex_id: str, what: str) -> bytes:
    """A 32-hex-character id as its 16 raw bytes; ValueError naming ``what`` otherwise."""
    try:
        raw = bytes.fromhex(hex_id)
    except ValueError:
        raw = b""
    if len(raw) != 16 or len(hex_id) != 32:
        raise ValueError(f"{what} must be 32 hex characters, got {hex_id!r}")
    return raw


# --- what the metadata layer stores -------------------------------------------------------


class Replica(NamedTuple):
    """Where one copy of a record lives: (disk id, segment number, record offset)."""

    disk_id: str
    segment: int
    offset: int


@dataclass(frozen=True)
class SegLocation:
    """Where a small object lives; see "Location record" in the module docstring."""

    volume_id: str
    size: int
    crc32: int
    meta_size: int  # lets a read fetch the whole record with one pread
    replicas: tuple[Replica, ...]

    @property
    def record_size(self) -> int:
        return RECORD_HEADER_SIZE + self.meta_size + self.size

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": LOCATION_VERSION,
            "volume_id": self.volume_id,
            "size": self.size,
            "crc32": self.crc32,
            "meta_size": self.meta_size,
            "replicas": [list(r) for r in self.replicas],
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> SegLocation:
        if record.get("v") != LOCATION_VERSION:
            raise ValueError(f"unknown segment location version {record.get('v')!r}")
        return cls(
            volume_id=str(record["volume_id"]),
            size=int(record["size"]),
            crc32=int(record["crc32"]),
            meta_size=int(record["meta_size"]),
            replicas=tuple(Replica(str(d), int(s), int(o)) for d, s, o in record["replicas"]),
        )


class RecordMismatch(Exception):
    """The bytes read for a replica are not the intact record its location promises."""


def check_record(raw: bytes | memoryview, loc: SegLocation, offset: int) -> tuple[bytes, bytes]:
    """(meta, payload) of the whole record ``raw`` read at ``offset``, checked against ``loc``.

    Raises :class:`RecordMismatch` saying what is wrong.
    """
    if len(raw) < loc.record_size:
        raise RecordMismatch("record cut short")
    header = decode_record_header(raw, offset)
    if header is None:
        raise RecordMismatch("record header damaged")
    found = (header.volume_id, header.payload_size, header.payload_crc32, header.meta_size)
    if found != (loc.volume_id, loc.size, loc.crc32, loc.meta_size):
        raise RecordMismatch("holds another record")
    view = memoryview(raw)
    payload = view[RECORD_HEADER_SIZE + loc.meta_size : loc.record_size]
    if zlib.crc32(payload) != loc.crc32:
        raise RecordMismatch("payload fails its CRC")
    return bytes(view[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + loc.meta_size]), bytes(payload)


# --- file-level helpers (blocking) ---------------------------------------------------------


def read_full(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``: fewer only at the end of the file."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def pwritev_all(fd: int, buffers: list[bytes], offset: int) -> None:
    """Write ``buffers`` back to back at ``offset``, whatever short writes happen."""
    views = [memoryview(b) for b in buffers if b]
    while views:
        written = os.pwritev(fd, views[:_IOV_MAX], offset)
        if written <= 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


# --- segment header -------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentHeader:
    version: int
    header_size: int
    disk_id: str
    segment_no: int
    flags: int = 0


def encode_segment_header(disk_id: str, segment_no: int, flags: int = 0) -> bytes:
    body = _SEG_HEAD.pack(
        SEGMENT_MAGIC,
        SEGMENT_VERSION,
        SEGMENT_HEADER_SIZE,
        flags,
        id_bytes(disk_id, "disk id"),
        segment_no,
        0,
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_segment_header(raw: bytes, where: object) -> SegmentHeader:
    """Parse a segment file header; :class:`SegmentFormatError` naming ``where`` if bad."""
    if len(raw) < SEGMENT_HEADER_SIZE:
        raise SegmentFormatError(f"{where}: segment header truncated ({len(raw)} bytes)")
    body = raw[: _SEG_HEAD.size]
    (crc,) = _CRC.unpack_from(raw, _SEG_HEAD.size)
    magic, version, header_size, flags, disk, segment_no, _res = _SEG_HEAD.unpack(body)
    if magic != SEGMENT_MAGIC:
        raise SegmentFormatError(f"{where}: not a Stratum segment file (bad magic)")
    if zlib.crc32(body) != crc:
        raise SegmentFormatError(f"{where}: segment header fails its CRC")
    if version != SEGMENT_VERSION:
        raise SegmentFormatError(f"{where}: segment format version {version} is not supported")
    return SegmentHeader(version, header_size, disk.hex(), segment_no, flags)


def read_segment_header(path: Path) -> SegmentHeader:
    """The header of the segment file at ``path`` (blocking); OSError or SegmentFormatError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return decode_segment_header(read_full(fd, SEGMENT_HEADER_SIZE, 0), path)
    finally:
        os.close(fd)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordHeader:
    offset: int
    kind: int
    volume_id: str
    payload_size: int
    payload_crc32: int
    meta_size: int
    meta_crc32: int

    @property
    def record_size(self) -> int:
        return RECORD_HEADER_SIZE + self.meta_size + self.payload_size

    @property
    def end(self) -> int:
        return self.offset + self.record_size


def encode_record_header(
    volume_raw: bytes, offset: int, payload_size: int, payload_crc: int, meta: bytes
) -> bytes:
    body = _REC_HEAD.pack(
        RECORD_MAGIC,
        RECORD_VERSION,
        KIND_DATA,
        0,
        volume_raw,
        offset,
        payload_size,
        payload_crc,
        len(meta),
        zlib.crc32(meta),
        0,
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_record_header(raw: bytes | memoryview, offset: int) -> RecordHeader | None:
    """The record header in ``raw[:56]`` found at file ``offset``, or None if it is not valid."""
    if len(raw) < RECORD_HEADER_SIZE:
        return None
    body = bytes(raw[: _REC_HEAD.size])
    (crc,) = _CRC.unpack_from(raw, _REC_HEAD.size)
    if body[:4] != RECORD_MAGIC or zlib.crc32(body) != crc:
        return None
    _m, version, kind, _r, vol, at, psize, pcrc, msize, mcrc, _r2 = _REC_HEAD.unpack(body)
    if version != RECORD_VERSION or at != offset or msize > MAX_META_SIZE:
        return None
    return RecordHeader(offset, kind, vol.hex(), psize, pcrc, msize, mcrc)


def encode_meta(meta: object) -> bytes:
    raw = json.dumps(meta, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    if len(raw) > MAX_META_SIZE:
        raise ValueError(f"record meta is {len(raw)} bytes, the limit is {MAX_META_SIZE}")
    return raw


@dataclass(frozen=True)
class SegmentRecord:
    """One record found by :func:`scan_segment`.

    ``intact`` is false when the payload or meta fails its CRC (the header was good, so the
    record's extent is known); ``meta`` is None when the meta bytes are damaged or not JSON.
    ``freed`` (never with ``intact``): the record's body reads as zeros where a freed record's
    would (:func:`looks_freed`), so it is garbage whose header outlived the hole punched over
    it (a crash in between), not damage.
    """

    header: RecordHeader
    meta: dict[str, Any] | None
    payload: bytes
    intact: bool
    freed: bool = False

    @property
    def offset(self) -> int:
        return self.header.offset

    @property
    def volume_id(self) -> str:
        return self.header.volume_id


FREE_BLOCK = 4096  # the smallest block a filesystem deallocates when a hole is punched
_ZERO_BLOCK = bytes(FREE_BLOCK)


def looks_freed(body: bytes | memoryview, at: int) -> bool:
    """Whether a record body (meta + payload) read at file offset ``at``, which fails its CRC,
    is one whose hole was punched: all zeros, or an aligned block of zeros inside it (a punch
    deallocates whole blocks; a crash may keep the zeroing of the partial blocks around them
    from reaching the disk). A payload that held such zeros and was then damaged elsewhere is
    taken for freed too: either way no intact copy is left here."""
    view = memoryview(body)
    if not bytes(view).strip(b"\0"):
        return True
    first = -at % FREE_BLOCK
    for start in range(first, len(view) - FREE_BLOCK + 1, FREE_BLOCK):
        if view[start : start + FREE_BLOCK] == _ZERO_BLOCK:
            return True
    return False


def _resync(fd: int, start: int, file_size: int) -> RecordHeader | None:
    """The first valid record header at or after ``start`` (reading forward in chunks)."""
    pos = start
    while pos + RECORD_HEADER_SIZE <= file_size:
        chunk = read_full(fd, min(_RESYNC_CHUNK, file_size - pos), pos)
        if len(chunk) < RECORD_HEADER_SIZE:
            return None
        last = len(chunk) - RECORD_HEADER_SIZE  # last start whose header is wholly in chunk
        at = chunk.find(RECORD_MAGIC, 0, last + len(RECORD_MAGIC))
        while at != -1:
            header = decode_record_header(memoryview(chunk)[at:], pos + at)
            if header is not None:
                return header
            at = chunk.find(RECORD_MAGIC, at + 1, last + len(RECORD_MAGIC))
        # Headers starting after ``last`` are looked at again in the next chunk.
        pos += last + 1
    return None


def walk_headers(
    fd: int, file_size: int, start: int = SEGMENT_HEADER_SIZE
) -> Iterator[RecordHeader]:
    """Valid record headers of an open segment, in order, whose records fit in the file.

    Damage (a header failing its CRC) is skipped by searching forward for the next valid
    header; the walk ends at the end of the file or at a record running past it (a torn tail).
    Blocking.
    """
    offset = start
    while offset + RECORD_HEADER_SIZE <= file_size:
        header = decode_record_header(read_full(fd, RECORD_HEADER_SIZE, offset), offset)
        if header is None:
            header = _resync(fd, offset + 1, file_size)
            if header is None:
                return
        if header.end > file_size:
            return
        yield header
        offset = header.end


def valid_end(fd: int, file_size: int) -> int:
    """Where the last complete record of an open segment ends: the length to truncate to."""
    end = SEGMENT_HEADER_SIZE
    for header in walk_headers(fd, file_size):
        end = header.end
    return end


def _refuse_newer_version(raw: bytes, path: Path) -> None:
    """Raise if ``raw`` is a valid segment header of a version this code cannot read.

    A damaged header does not stop a scan: records carry everything needed to read them.
    """
    try:
        decode_segment_header(raw, path)
    except SegmentFormatError:
        body = raw[: _SEG_HEAD.size]
        crc_ok = zlib.crc32(body) == _CRC.unpack_from(raw, _SEG_HEAD.size)[0]
        if crc_ok and body[:8] == SEGMENT_MAGIC:
            raise


def scan_segment(path: Path) -> Iterator[SegmentRecord]:
    """Yield every record of a segment file, for recovery and compaction (blocking).

    A torn tail (a record cut short or garbage appended by a crash) ends the scan cleanly;
    a damaged record in the middle is skipped and the scan resumes at the next valid header.
    Raises :class:`SegmentFormatError` if the file header is valid but of a newer version.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < SEGMENT_HEADER_SIZE:
            return  # created by a crash before its header was written
        _refuse_newer_version(read_full(fd, SEGMENT_HEADER_SIZE, 0), path)
        for header in walk_headers(fd, size):
            body = read_full(
                fd, header.meta_size + header.payload_size, header.offset + RECORD_HEADER_SIZE
            )
            meta_raw = body[: header.meta_size]
            payload = body[header.meta_size :]
            meta_ok = zlib.crc32(meta_raw) == header.meta_crc32
            meta: dict[str, Any] | None = None
            if meta_ok:
                try:
                    loaded = json.loads(meta_raw)
                    meta = loaded if isinstance(loaded, dict) else None
                except ValueError:
                    meta = None
            intact = meta_ok and zlib.crc32(payload) == header.payload_crc32
            freed = not intact and looks_freed(body, header.offset + RECORD_HEADER_SIZE)
            yield SegmentRecord(header, meta, payload, intact, freed)
    finally:
        os.close(fd)


def prepare_for_append(path: Path, disk_id: str, segment_no: int) -> tuple[int, int]:
    """Make an existing segment ready to take more records (blocking, at start-up).

    Returns (end of its last whole record, bytes cut off as a torn tail). A file shorter than
    a header (a crash right after it was created) holds nothing and gets its header written.
    Raises :class:`SegmentFormatError` if the header is damaged or names another disk or
    segment: such a file is left alone.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size < SEGMENT_HEADER_SIZE:
            os.ftruncate(fd, 0)
            pwritev_all(fd, [encode_segment_header(disk_id, segment_no)], 0)
            os.fdatasync(fd)
            return SEGMENT_HEADER_SIZE, 0
        header = decode_segment_header(read_full(fd, SEGMENT_HEADER_SIZE, 0), path)
        if (header.disk_id, header.segment_no) != (disk_id, segment_no):
            raise SegmentFormatError(f"{path}: header names another disk or segment")
        end = valid_end(fd, size)
        if end < size:
            os.ftruncate(fd, end)
            os.fdatasync(fd)
        return end, size - end
    finally:
        os.close(fd)
