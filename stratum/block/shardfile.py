"""Shard files: one per (volume, shard index), holding block ``i`` of every stripe of a volume.

Where they live (see :mod:`stratum.block.disk`)::

    <disk>/ec/<volume_id[-2:]>/<volume_id>.<shard index>.shard  committed shard
    <disk>/tmp/<volume_id>.<shard index>.<writer token>.tmp    being written (an orphan at start)

The fan-out directory is named by the *last* two hex digits: Stratum's volume ids start with a
millisecond timestamp (:mod:`stratum.service.ids`), so their first digits barely change, while
the end is random.

Format version 2. All integers are unsigned little-endian; CRC-32 is ``zlib.crc32`` (the
IEEE polynomial, as in gzip/PNG) and CRC-32C the Castagnoli polynomial (iSCSI, ext4). ``k``/``m``
are the data/parity shard counts of the volume. Versions differ only in the block checksum:

- version 2: each block's CRC is CRC-32C, computed by the ``crc32c`` package with the CPU's
  CRC instructions (SSE 4.2, ARMv8), several times faster than zlib's CRC-32, so checking
  every block of a large GET costs a small fraction of serving it;
- version 1: each block's CRC is CRC-32. Still read; written only where the ``crc32c``
  package is missing.

Header and footer CRCs are CRC-32 in both (a few dozen bytes each).

Header (``48 + L`` bytes; its length is known after reading the first 44)::

    offset  size  field
         0     8  magic b"STRSHARD"
         8     2  format version = 2 (or 1)
        10     2  flags = 0 (reserved)
        12    16  volume id: the 32-hex-char id as 16 raw bytes
        28     2  shard index i, 0 <= i < k + m (i < k: data shard, else parity)
        30     2  k, data shards
        32     2  m, parity shards
        34     2  reserved = 0
        36     4  block size B: bytes per block of a full stripe (a stripe is k * B bytes)
        40     4  L, length of the meta blob, at most 1 MiB
        44     L  meta: UTF-8 JSON object given by the writer's caller (bucket, key,
                  timestamps...), so a lost metadata store can be rebuilt by scanning disks
                  (the placement is then the set of disks holding ``<volume_id>.*.shard``)
      44+L     4  CRC-32 of bytes [0, 44+L)

Body: for each stripe s = 0 .. S-1, at offset ``48 + L + s * (B + 4)``::

    block  (B bytes; the last stripe's block is ceil(last stripe length / k) bytes)
    CRC-32C (version 2) or CRC-32 (version 1) of the block (4 bytes)

so a range read seeks straight to stripe ``s``. Data blocks of the last stripe are zero-padded;
the object size in the footer says where the data ends.

Footer (the last 44 bytes; written once the object size is known)::

    offset  size  field
         0     8  magic b"STRSFOOT"
         8     8  object size in bytes (of the whole volume, not of this shard)
        16     8  stripe count S = ceil(size / (k * B))
        24    16  MD5 digest of the whole object
        40     4  CRC-32 of bytes [0, 40)

A reader checks magic, version and both CRCs, that the header names the volume/shard/k/m/B it
expects, that the footer's size and MD5 match the caller's record, and that the file length is
exactly header + body + footer. Everything here blocks: call it from an executor.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from stratum.block.errors import DiskWriteError, ShardFormatError, StorageError, StorageFull
from stratum.util.fsio import pread_cached

FORMAT_VERSION = 2  # written when the crc32c package is present, else 1
READ_VERSIONS = (1, 2)
HEADER_MAGIC = b"STRSHARD"
FOOTER_MAGIC = b"STRSFOOT"
MAX_INFO_LEN = 1 << 20

_HEAD = struct.Struct("<8sHH16sHHHHII")  # up to and including L
_CRC = struct.Struct("<I")
_FOOT = struct.Struct("<8sQQ16s")
HEADER_FIXED_LEN = _HEAD.size + _CRC.size  # header length without the meta blob
FOOTER_LEN = _FOOT.size + _CRC.size
CRC_LEN = _CRC.size
_FIRST_READ = 4096  # one pread usually covers the whole header

_VOLUME_ID = re.compile(r"[0-9a-f]{32}")


BlockCrc = Callable[[bytes | bytearray | memoryview], int]


@cache
def _crc32c() -> BlockCrc | None:
    # Imported on first use: the package's __init__ loads importlib.metadata and zipfile,
    # megabytes an idle server process does not need (see stratum.s3.checksums).
    try:
        from crc32c import crc32c
    except ImportError:
        return None
    return crc32c


def write_version() -> int:
    """The format version new shard files get: 2 (CRC-32C blocks) if the crc32c package can
    be imported, else 1."""
    return FORMAT_VERSION if _crc32c() is not None else 1


def block_crc(version: int) -> BlockCrc:
    """The block checksum function of a shard file of format ``version``."""
    if version == 1:
        return zlib.crc32
    fn = _crc32c()
    if fn is None:
        raise ShardFormatError(
            f"shard format version {version} needs the crc32c package, which is not installed"
        )
    return fn


def is_volume_id(value: str) -> bool:
    """True for a valid volume id: 32 lowercase hex characters."""
    return _VOLUME_ID.fullmatch(value) is not None


def shard_relpath(volume_id: str, index: int) -> str:
    """Path of a committed shard file relative to its disk's ``ec/`` directory."""
    return f"{volume_id[-2:]}/{volume_id}.{index}.shard"


def encode_meta(meta: Mapping[str, Any]) -> bytes:
    """The header's meta blob; ``ValueError``/``TypeError`` if not JSON-able or too large."""
    info = json.dumps(dict(meta), sort_keys=True, separators=(",", ":")).encode()
    if len(info) > MAX_INFO_LEN:
        raise ValueError(f"shard meta is {len(info)} bytes of JSON, limit {MAX_INFO_LEN}")
    return info


@dataclass(frozen=True)
class Layout:
    """Where stripes and blocks of a volume are; shared by all its shards."""

    data_shards: int
    block_size: int
    size: int

    @property
    def stripe_size(self) -> int:
        return self.data_shards * self.block_size

    @property
    def stripe_count(self) -> int:
        return -(-self.size // self.stripe_size)

    def stripe_len(self, stripe: int) -> int:
        """Object bytes in ``stripe``."""
        return min(self.stripe_size, self.size - stripe * self.stripe_size)

    def block_len(self, stripe: int) -> int:
        """Length of every block of ``stripe`` (data blocks zero-padded)."""
        return -(-self.stripe_len(stripe) // self.data_shards)

    def body_len(self) -> int:
        """Bytes of blocks + CRCs in one shard file."""
        count = self.stripe_count
        if count == 0:
            return 0
        return (count - 1) * (self.block_size + CRC_LEN) + self.block_len(count - 1) + CRC_LEN


@dataclass(frozen=True)
class ShardHeader:
    volume_id: str
    shard_index: int
    data_shards: int
    parity_shards: int
    block_size: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: int = field(default_factory=write_version)  # says how blocks are checksummed

    def encode(self) -> bytes:
        info = encode_meta(self.meta)
        head = _HEAD.pack(
            HEADER_MAGIC,
            self.version,
            0,
            bytes.fromhex(self.volume_id),
            self.shard_index,
            self.data_shards,
            self.parity_shards,
            0,
            self.block_size,
            len(info),
        )
        body = head + info
        return body + _CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class ShardFooter:
    size: int
    stripe_count: int
    md5: bytes

    def encode(self) -> bytes:
        body = _FOOT.pack(FOOTER_MAGIC, self.size, self.stripe_count, self.md5)
        return body + _CRC.pack(zlib.crc32(body))


def parse_header(data: bytes, where: str) -> tuple[ShardHeader, int]:
    """Decode a header from the start of ``data``; returns it and its length in bytes.

    Raises :class:`ShardFormatError` naming ``where`` if it is truncated or malformed.
    """
    if len(data) < _HEAD.size:
        raise ShardFormatError(f"{where}: header truncated ({len(data)} bytes)")
    magic, version, _flags, vid, index, k, m, _r, block_size, info_len = _HEAD.unpack_from(data)
    if magic != HEADER_MAGIC:
        raise ShardFormatError(f"{where}: not a shard file (bad magic {magic!r})")
    if version not in READ_VERSIONS:
        raise ShardFormatError(f"{where}: unsupported shard format version {version}")
    if info_len > MAX_INFO_LEN:
        raise ShardFormatError(f"{where}: header meta length {info_len} is implausible")
    end = _HEAD.size + info_len
    if len(data) < end + CRC_LEN:
        raise ShardFormatError(f"{where}: header truncated ({len(data)} bytes)")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise ShardFormatError(f"{where}: header CRC mismatch")
    try:
        meta = json.loads(bytes(data[_HEAD.size : end]))
    except ValueError as exc:
        raise ShardFormatError(f"{where}: header meta is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ShardFormatError(f"{where}: header meta is not a JSON object")
    header = ShardHeader(vid.hex(), index, k, m, block_size, meta, version)
    return header, end + CRC_LEN


def parse_footer(data: bytes, where: str) -> ShardFooter:
    if len(data) != FOOTER_LEN:
        raise ShardFormatError(f"{where}: footer truncated ({len(data)} bytes)")
    (crc,) = _CRC.unpack_from(data, _FOOT.size)
    if zlib.crc32(memoryview(data)[: _FOOT.size]) != crc:
        raise ShardFormatError(f"{where}: footer CRC mismatch (incomplete or damaged file)")
    magic, size, count, md5 = _FOOT.unpack_from(data)
    if magic != FOOTER_MAGIC:
        raise ShardFormatError(f"{where}: bad footer magic {magic!r}")
    return ShardFooter(size, count, md5)


def _read_header(fd: int, where: str) -> tuple[ShardHeader, int]:
    head = os.pread(fd, _FIRST_READ, 0)
    if len(head) >= _HEAD.size:
        need = _HEAD.size + min(_HEAD.unpack_from(head)[-1], MAX_INFO_LEN) + CRC_LEN
        if len(head) < need:
            head = os.pread(fd, need, 0)
    return parse_header(head, where)


def _write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """writev, finishing any short write (regular files rarely, but may, write short)."""
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done == total:
        return
    rest = memoryview(b"".join(parts))[done:]
    while rest:
        rest = rest[os.write(fd, rest) :]


def as_write_error(path: Path, exc: OSError) -> StorageError:
    """The StorageFull / DiskWriteError for a failed write of ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left writing {path}: {exc.strerror}")
    return DiskWriteError(f"cannot write {path}: {exc}")


class ShardFileWriter:
    """Writes one shard file sequentially: header, blocks, footer; then fsync.

    Raises :class:`StorageFull` / :class:`DiskWriteError` naming the path on failure.
    """

    def __init__(self, path: Path, header: ShardHeader) -> None:
        self.path = path
        self.header = header
        self._crc = block_crc(header.version)
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            _write_all(self._fd, [header.encode()])
        except OSError as exc:
            self.close()
            raise as_write_error(path, exc) from exc

    def _require_fd(self) -> int:
        if self._fd is None:
            raise DiskWriteError(f"{self.path} is already closed")
        return self._fd

    def append_block(self, block: bytes | bytearray | memoryview, crc: int | None = None) -> None:
        """Append one block and its checksum (computed here unless given: it must then be
        the one this file's format version uses, see :func:`block_crc`)."""
        fd = self._require_fd()
        if crc is None:
            crc = self._crc(block)
        try:
            _write_all(fd, [block, _CRC.pack(crc)])
        except OSError as exc:
            raise as_write_error(self.path, exc) from exc

    def finish(self, footer: ShardFooter) -> None:
        """Append the footer and fsync; the file is then complete (still open)."""
        fd = self._require_fd()
        try:
            _write_all(fd, [footer.encode()])
            os.fsync(fd)
        except OSError as exc:
            raise as_write_error(self.path, exc) from exc

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


@dataclass(frozen=True)
class Expected:
    """What a reader knows of a shard from the volume's record (metadata)."""

    volume_id: str
    shard_index: int
    data_shards: int
    parity_shards: int
    block_size: int
    size: int
    md5: bytes | None = None  # None: do not check (e.g. rebuilding metadata from disks)


class ShardFileReader:
    """An open, validated shard file; :meth:`read_block` verifies each block's CRC.

    Opening raises ``OSError`` (missing, unreadable) or :class:`ShardFormatError` (wrong or
    damaged header/footer, wrong length).
    """

    def __init__(self, path: Path, expected: Expected) -> None:
        self.path = path
        self.expected = expected
        self.layout = Layout(expected.data_shards, expected.block_size, expected.size)
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.header, self.header_len, self.footer = self._validate()
            self._crc = block_crc(self.header.version)
        except BaseException:
            self.close()
            raise

    def _validate(self) -> tuple[ShardHeader, int, ShardFooter]:
        fd = self._require_fd()
        where = str(self.path)
        exp = self.expected
        header, header_len = _read_header(fd, where)
        got = (header.volume_id, header.shard_index, header.data_shards, header.parity_shards)
        want = (exp.volume_id, exp.shard_index, exp.data_shards, exp.parity_shards)
        if got != want or header.block_size != exp.block_size:
            raise ShardFormatError(
                f"{where}: header says volume {header.volume_id} shard {header.shard_index} "
                f"k={header.data_shards} m={header.parity_shards} B={header.block_size}, "
                f"expected volume {exp.volume_id} shard {exp.shard_index} "
                f"k={exp.data_shards} m={exp.parity_shards} B={exp.block_size}"
            )
        file_len = os.fstat(fd).st_size
        want_len = header_len + self.layout.body_len() + FOOTER_LEN
        if file_len != want_len:
            raise ShardFormatError(f"{where}: file is {file_len} bytes, expected {want_len}")
        footer = parse_footer(os.pread(fd, FOOTER_LEN, file_len - FOOTER_LEN), where)
        if footer.size != exp.size or footer.stripe_count != self.layout.stripe_count:
            raise ShardFormatError(
                f"{where}: footer says size {footer.size} in {footer.stripe_count} stripes, "
                f"expected {exp.size} in {self.layout.stripe_count}"
            )
        if exp.md5 is not None and footer.md5 != exp.md5:
            raise ShardFormatError(f"{where}: footer MD5 {footer.md5.hex()} != {exp.md5.hex()}")
        return header, header_len, footer

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ShardFormatError(f"{self.path} is closed")
        return self._fd

    def block_offset(self, stripe: int) -> int:
        return self.header_len + stripe * (self.layout.block_size + CRC_LEN)

    def read_block(self, stripe: int) -> memoryview:
        """Block ``stripe`` of this shard, CRC-checked; :class:`ShardFormatError` if damaged."""
        if not 0 <= stripe < self.layout.stripe_count:
            raise IndexError(f"stripe {stripe} out of range for {self.path}")
        blen = self.layout.block_len(stripe)
        data = os.pread(self._require_fd(), blen + CRC_LEN, self.block_offset(stripe))
        if len(data) != blen + CRC_LEN:
            raise ShardFormatError(f"{self.path}: short read of stripe {stripe}")
        block = self._intact(data, blen)
        if block is None:
            raise ShardFormatError(f"{self.path}: CRC mismatch in stripe {stripe}")
        return block

    def read_block_cached(self, stripe: int) -> memoryview | None:
        """Block ``stripe`` if all of it is in the page cache and intact; else None, at once.

        It never waits for the disk (:func:`~stratum.util.fsio.pread_cached`), so it may run
        on the event loop: a hot object's blocks are then served without a hand-off to a
        thread and back per block. Anything but a whole, intact block (not cached, a short read, a
        CRC mismatch, an error) is left to :meth:`read_block`, which reports it.
        """
        fd = self._fd
        if fd is None or not 0 <= stripe < self.layout.stripe_count:
            return None
        blen = self.layout.block_len(stripe)
        buf = pread_cached(fd, blen + CRC_LEN, self.block_offset(stripe))
        if buf is None:
            return None
        return self._intact(buf, blen)

    def _intact(self, data: bytes | bytearray, blen: int) -> memoryview | None:
        """The block in ``data`` (block + checksum) if its checksum matches, else None."""
        block = memoryview(data)[:blen]
        return block if self._crc(block) == _CRC.unpack_from(data, blen)[0] else None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def read_shard_info(path: Path) -> tuple[ShardHeader, ShardFooter]:
    """Header and footer of a shard file without knowing its volume (metadata rebuild, fsck).

    Checks both CRCs and the file length; not the blocks.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        where = str(path)
        header, header_len = _read_header(fd, where)
        file_len = os.fstat(fd).st_size
        if file_len < header_len + FOOTER_LEN:
            raise ShardFormatError(f"{where}: file too short ({file_len} bytes)")
        footer = parse_footer(os.pread(fd, FOOTER_LEN, file_len - FOOTER_LEN), where)
        layout = Layout(header.data_shards, header.block_size, footer.size)
        if file_len != header_len + layout.body_len() + FOOTER_LEN:
            raise ShardFormatError(f"{where}: file length {file_len} disagrees with its footer")
        return header, footer
    finally:
        os.close(fd)
