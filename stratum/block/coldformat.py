"""The cold object format: one self-describing, encrypted object per volume in the cold bucket.

Stratum encrypts every volume before it leaves the machine: the cold provider only ever sees
ciphertext, the object's size and a random name. The remote key is ``<prefix><volume id>``
(``[tiers.cold] prefix``, "stratum/" by default); bucket and key names, content types and
checksums travel inside the encrypted metadata block. Each object is encrypted with AES-256-GCM
in independently authenticated chunks (1 MiB of plaintext by default), so a range read fetches
and decrypts only the chunks it needs, and any change to any byte, any reordering, truncation or
extension of the chunks fails authentication.

Format version 1. All integers are unsigned little-endian.

Header (plaintext, 52 bytes)::

    offset  size  field
         0     8  magic b"STRCOLDF"
         8     2  format version = 1
        10     2  flags = 0 (reserved; a reader refuses other values)
        12     4  C, chunk size: plaintext bytes per chunk (1 .. 64 MiB; 1 MiB when Stratum writes)
        16     8  P, plaintext size of the volume in bytes
        24    16  file id: 16 random bytes, new for every object
        40     8  key id: HMAC-SHA256(K, b"stratum-cold key id")[:8], K being the 32-byte key of
                  the key file; a reader compares it first, so the wrong key is detected and
                  named as such rather than reported as damage
        48     4  M, length of the encrypted metadata block (JSON length + 16), at most 1 MiB + 16

Keys and nonces. The key file's key K never encrypts anything itself: each object gets its own
data key ``DK = HKDF-SHA256(input key K, salt = file id, info = b"stratum-cold v1 data key",
length 32)``. Because a data key encrypts only one object, nonces are simple counters and
need no coordination between objects. Nonces are 12 bytes: a 4-byte domain (u32) then an
8-byte index (u64)::

    metadata block    nonce = u32 1 || u64 0        AAD = header (52 bytes)
    chunk i           nonce = u32 0 || u64 i        AAD = header || u64 i || u8 last

``last`` is 1 for the final chunk and 0 for every other one. The header is bound into every
AAD, so changing any header field (the size, the chunk size...) fails authentication; the
index and the last flag make swapped, repeated, dropped or appended chunks fail too.

Body, right after the header::

    offset        size     field
        52           M     metadata block: AES-256-GCM(DK, nonce, UTF-8 JSON object) || tag
                           (the JSON holds the volume id, bucket, key, content type, md5,
                           timestamps... whatever the writer passed)
      52+M   N*16 + P      chunks i = 0 .. N-1, back to back: ciphertext (len_i bytes) || tag
                           (16 bytes), where N = max(1, ceil(P / C)) and len_i = min(C, P - i*C)

An empty volume still has one (empty, authenticated, last) chunk, so cutting an object down
to its header is detected. Chunk i starts at ``52 + M + i * (C + 16)``; the object is
``52 + M + P + 16 * N`` bytes long.

Recovery without Stratum running (needs Python 3.11 with ``cryptography``, and this file or a
Stratum installation)::

    # fetch the object with any S3 client (or the provider's web console), e.g.
    rclone copyto b2:my-cold-bucket/stratum/0191f0c2...e4 object   # or aws s3 cp, s3cmd get
    python -m stratum.block.coldformat decrypt --key cold.key < object > restored.bin
    python -m stratum.block.coldformat decrypt --key cold.key --info < object

To find an object by its bucket and key without Stratum's metadata, run ``--info`` on the
objects under the prefix: it reads only the header and the metadata block.

``--info`` prints the header fields and the decrypted metadata (bucket, key, content type,
md5...) as JSON instead of the data. ``decrypt`` writes each chunk only after it authenticated;
it exits 1 with a message on stderr if the key is wrong or the object is damaged, truncated or
extended (the output then holds the chunks that came before, all of them authentic). Without
the key file nothing can be recovered: back it up (``[tiers.cold] encryption_key_file``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stratum.block.errors import StorageError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "HEADER_LEN",
    "KEY_LEN",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MAX_META_LEN",
    "TAG_LEN",
    "ChunkOpener",
    "ColdEncryptor",
    "ColdFormatError",
    "ColdHeader",
    "WrongColdKey",
    "check_key",
    "decrypt_meta",
    "decrypt_object",
    "decrypt_stream",
    "encrypt_object",
    "key_id",
    "main",
]

FORMAT_VERSION = 1
MAGIC = b"STRCOLDF"
KEY_LEN = 32
TAG_LEN = 16
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
MAX_META_LEN = 1 << 20  # of the JSON; the block is this plus a tag

_HEADER = struct.Struct("<8sHHIQ16s8sI")
HEADER_LEN = _HEADER.size  # 52
_CHUNK_DOMAIN, _META_DOMAIN = 0, 1
_NONCE = struct.Struct("<IQ")
_CHUNK_AAD = struct.Struct("<QB")
_KEY_ID_LABEL = b"stratum-cold key id"
_DATA_KEY_INFO = b"stratum-cold v1 data key"


class ColdFormatError(StorageError):
    """A cold object is malformed, damaged, truncated, of an unknown version, or fails
    authentication."""


class WrongColdKey(ColdFormatError):
    """A cold object was encrypted with another key than the one given."""


def check_key(key: bytes) -> None:
    """``ValueError`` unless ``key`` is a 32-byte AES-256 key."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise ValueError(f"a cold encryption key is {KEY_LEN} bytes")


def key_id(key: bytes) -> bytes:
    """The 8-byte public fingerprint of ``key`` stored in every header."""
    check_key(key)
    return hmac.new(bytes(key), _KEY_ID_LABEL, hashlib.sha256).digest()[:8]


def _data_key(key: bytes, file_id: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=file_id, info=_DATA_KEY_INFO)
    return AESGCM(hkdf.derive(bytes(key)))


@dataclass(frozen=True)
class ColdHeader:
    """The plaintext header of a cold object, and the arithmetic of its layout."""

    chunk_size: int
    size: int  # plaintext bytes
    file_id: bytes
    key_id: bytes
    meta_len: int  # of the encrypted metadata block, tag included
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise ColdFormatError(f"unsupported cold format version {self.version}")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ColdFormatError(f"chunk size {self.chunk_size} out of range")
        if not 0 <= self.size < 1 << 63:
            raise ColdFormatError(f"plaintext size {self.size} out of range")
        if len(self.file_id) != 16 or len(self.key_id) != 8:
            raise ColdFormatError("file id must be 16 bytes and key id 8 bytes")
        if not TAG_LEN <= self.meta_len <= MAX_META_LEN + TAG_LEN:
            raise ColdFormatError(f"metadata block length {self.meta_len} out of range")

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            self.version,
            0,
            self.chunk_size,
            self.size,
            self.file_id,
            self.key_id,
            self.meta_len,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> ColdHeader:
        if len(raw) < HEADER_LEN:
            raise ColdFormatError(
                f"cold object header cut short ({len(raw)} of {HEADER_LEN} bytes)"
            )
        magic, version, flags, chunk_size, size, file_id, kid, meta_len = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise ColdFormatError("not a Stratum cold object (bad magic)")
        if version != FORMAT_VERSION:
            raise ColdFormatError(
                f"cold object format version {version}; this Stratum reads {FORMAT_VERSION}"
            )
        if flags != 0:
            raise ColdFormatError(f"cold object has unknown flags {flags:#x}")
        return cls(chunk_size, size, file_id, kid, meta_len, version)

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    @property
    def data_offset(self) -> int:
        """Where chunk 0 starts: after the header and the metadata block."""
        return HEADER_LEN + self.meta_len

    @property
    def stored_size(self) -> int:
        return self.data_offset + self.size + TAG_LEN * self.chunk_count

    def plain_len(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``."""
        return max(0, min(self.chunk_size, self.size - index * self.chunk_size))

    def sealed_len(self, index: int) -> int:
        return self.plain_len(index) + TAG_LEN

    def chunk_offset(self, index: int) -> int:
        return self.data_offset + index * (self.chunk_size + TAG_LEN)

    def chunks_for(self, start: int, end: int) -> range:
        """Indexes of the chunks holding plaintext bytes ``[start, end)`` (empty if none)."""
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return range(0)
        return range(start // self.chunk_size, (end - 1) // self.chunk_size + 1)

    def span(self, chunks: range) -> tuple[int, int]:
        """(offset, length) in the stored object of consecutive ``chunks``."""
        first, last = chunks[0], chunks[-1]
        offset = self.chunk_offset(first)
        return offset, self.chunk_offset(last) + self.sealed_len(last) - offset

    def check_key(self, key: bytes) -> None:
        if not hmac.compare_digest(self.key_id, key_id(key)):
            raise WrongColdKey(
                f"cold object was encrypted with key {self.key_id.hex()}, not with this key"
                f" ({key_id(key).hex()}): wrong key file?"
            )

    def info(self) -> dict[str, Any]:
        return {
            "format_version": self.version,
            "chunk_size": self.chunk_size,
            "size": self.size,
            "chunks": self.chunk_count,
            "stored_size": self.stored_size,
            "file_id": self.file_id.hex(),
            "key_id": self.key_id.hex(),
        }


def _chunk_nonce(index: int) -> bytes:
    return _NONCE.pack(_CHUNK_DOMAIN, index)


def _meta_nonce() -> bytes:
    return _NONCE.pack(_META_DOMAIN, 0)


class ColdEncryptor:
    """Encrypts one object as a stream: ``prefix`` first, then what ``feed`` and ``finish``
    return, in order, is the whole stored object. The plaintext size is declared up front
    (the header carries it and the last chunk must be flagged); a body of another length is a
    ``ValueError``. Pure CPU work: run large feeds in an executor."""

    def __init__(
        self,
        key: bytes,
        size: int,
        meta: Mapping[str, Any],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        file_id: bytes | None = None,
    ) -> None:
        blob = json.dumps(dict(meta), sort_keys=True, separators=(",", ":")).encode()
        if len(blob) > MAX_META_LEN:
            raise ValueError(f"cold metadata is {len(blob)} bytes of JSON, limit {MAX_META_LEN}")
        self.header = ColdHeader(
            chunk_size=chunk_size,
            size=size,
            file_id=os.urandom(16) if file_id is None else file_id,
            key_id=key_id(key),
            meta_len=len(blob) + TAG_LEN,
        )
        self._header_bytes = self.header.pack()
        self._aead = _data_key(key, self.header.file_id)
        self.prefix = self._header_bytes + self._aead.encrypt(
            _meta_nonce(), blob, self._header_bytes
        )
        self._pending = bytearray()
        self._index = 0  # next chunk to seal
        self._fed = 0

    def _seal(self, index: int, plain: bytes | bytearray | memoryview) -> bytes:
        last = index == self.header.chunk_count - 1
        aad = self._header_bytes + _CHUNK_AAD.pack(index, last)
        return self._aead.encrypt(_chunk_nonce(index), bytes(plain), aad)

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """The sealed chunks ``data`` completes (possibly none)."""
        self._fed += len(data)
        if self._fed > self.header.size:
            raise ValueError(f"body is longer than the declared {self.header.size} bytes")
        size = self.header.chunk_size
        out: list[bytes] = []
        view = memoryview(data)
        if self._pending:
            take = min(size - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < size:
                return b""
            out.append(self._seal(self._index, self._pending))
            self._index += 1
            self._pending = bytearray()
        while len(view) >= size:
            out.append(self._seal(self._index, view[:size]))
            self._index += 1
            view = view[size:]
        self._pending += view
        return b"".join(out)

    def finish(self) -> bytes:
        """The last chunk, if not sealed yet; ``ValueError`` if the body was short."""
        if self._fed != self.header.size:
            raise ValueError(f"body is {self._fed} bytes, declared {self.header.size}")
        if self._index == self.header.chunk_count:
            return b""
        sealed = self._seal(self._index, self._pending)
        self._index += 1
        self._pending = bytearray()
        return sealed


@dataclass(frozen=True)
class ChunkOpener:
    """Authenticates and decrypts single chunks of one object (any order, any subset)."""

    header: ColdHeader
    _aead: AESGCM = field(repr=False)
    _header_bytes: bytes = field(repr=False)
    where: str = ""  # named in errors: the remote key, a file name

    @classmethod
    def create(cls, key: bytes, header: ColdHeader, where: str = "") -> ChunkOpener:
        """``WrongColdKey`` if ``header`` says the object was encrypted with another key."""
        header.check_key(key)
        return cls(header, _data_key(key, header.file_id), header.pack(), where)

    def _fail(self, what: str) -> ColdFormatError:
        where = f" {self.where}" if self.where else ""
        return ColdFormatError(f"cold object{where}: {what}")

    def open(self, index: int, sealed: bytes | bytearray | memoryview) -> bytes:
        header = self.header
        if not 0 <= index < header.chunk_count:
            raise self._fail(f"chunk {index} out of range (object has {header.chunk_count})")
        if len(sealed) != header.sealed_len(index):
            raise self._fail(
                f"chunk {index} is {len(sealed)} bytes, expected {header.sealed_len(index)}"
                " (truncated?)"
            )
        last = index == header.chunk_count - 1
        aad = self._header_bytes + _CHUNK_AAD.pack(index, last)
        try:
            return self._aead.decrypt(_chunk_nonce(index), bytes(sealed), aad)
        except InvalidTag:
            raise self._fail(f"chunk {index} fails authentication (damaged or altered)") from None

    def open_meta(self, block: bytes | bytearray | memoryview) -> dict[str, Any]:
        if len(block) != self.header.meta_len:
            raise self._fail(
                f"metadata block is {len(block)} bytes, expected {self.header.meta_len}"
            )
        try:
            plain = self._aead.decrypt(_meta_nonce(), bytes(block), self._header_bytes)
        except InvalidTag:
            raise self._fail("metadata block fails authentication (damaged or altered)") from None
        try:
            meta = json.loads(plain)
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise self._fail("metadata is not a JSON object")
        return meta


def decrypt_meta(key: bytes, prefix: bytes) -> tuple[ColdHeader, dict[str, Any]]:
    """Header and metadata from the first ``HEADER_LEN + meta_len`` (or more) bytes."""
    header = ColdHeader.unpack(prefix)
    opener = ChunkOpener.create(key, header)
    return header, opener.open_meta(prefix[HEADER_LEN : header.data_offset])


def encrypt_object(
    key: bytes,
    data: bytes,
    meta: Mapping[str, Any],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    file_id: bytes | None = None,
) -> bytes:
    """A whole stored object at once (tests, tools)."""
    enc = ColdEncryptor(key, len(data), meta, chunk_size, file_id)
    return enc.prefix + enc.feed(data) + enc.finish()


def decrypt_object(
    key: bytes, blob: bytes, start: int = 0, end: int | None = None
) -> tuple[dict[str, Any], bytes]:
    """Metadata and plaintext bytes ``[start, end)`` of a whole stored object in memory,
    decrypting only the chunks the range needs; ``ColdFormatError`` on any damage."""
    header, meta = decrypt_meta(key, blob)
    if len(blob) != header.stored_size:
        raise ColdFormatError(
            f"cold object is {len(blob)} bytes, its header says {header.stored_size}"
        )
    opener = ChunkOpener.create(key, header)
    end = header.size if end is None else end
    if header.size == 0:  # still authenticate the empty last chunk
        opener.open(0, blob[header.chunk_offset(0) :])
    parts: list[bytes] = []
    for index in header.chunks_for(start, end):
        offset = header.chunk_offset(index)
        plain = opener.open(index, blob[offset : offset + header.sealed_len(index)])
        base = index * header.chunk_size
        parts.append(plain[max(0, start - base) : max(0, end - base)])
    return meta, b"".join(parts)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    while n:
        piece = stream.read(n)
        if not piece:
            break
        parts.append(piece)
        n -= len(piece)
    return b"".join(parts)


def decrypt_stream(
    key: bytes, source: BinaryIO, sink: BinaryIO | None, where: str = ""
) -> tuple[ColdHeader, dict[str, Any]]:
    """Read a stored object from ``source`` and write its plaintext to ``sink`` (None: only
    header and metadata are read), one authenticated chunk at a time."""
    raw = _read_exactly(source, HEADER_LEN)
    header = ColdHeader.unpack(raw)
    opener = ChunkOpener.create(key, header, where)
    meta = opener.open_meta(_read_exactly(source, header.meta_len))
    if sink is None:
        return header, meta
    for index in range(header.chunk_count):
        sink.write(opener.open(index, _read_exactly(source, header.sealed_len(index))))
    if source.read(1):
        raise ColdFormatError(f"cold object{' ' + where if where else ''}: bytes after the end")
    sink.flush()
    return header, meta


def _read_key_file(path: str) -> bytes:
    with open(path, "rb") as file:
        key = file.read(KEY_LEN + 1)
    if len(key) != KEY_LEN:
        raise ValueError(f"{path} is not a cold key file (it holds {KEY_LEN} bytes)")
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stratum.block.coldformat",
        description="Decrypt an object of Stratum's cold tier, without Stratum.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decrypt = commands.add_parser(
        "decrypt", help="decrypt one object (stdin or --input) to stdout or --output"
    )
    decrypt.add_argument("--key", required=True, help="the cold key file (cold.key)")
    decrypt.add_argument("--info", action="store_true", help="print header and metadata as JSON")
    decrypt.add_argument("-i", "--input", help="stored object file (default: stdin)")
    decrypt.add_argument("-o", "--output", help="plaintext file (default: stdout)")
    args = parser.parse_args(argv)
    try:
        key = _read_key_file(args.key)
        source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
        where = args.input or ""
        try:
            if args.info:
                header, meta = decrypt_stream(key, source, None, where)
                print(json.dumps({**header.info(), "meta": meta}, indent=2, sort_keys=True))
            elif args.output:
                with open(args.output, "wb") as sink:
                    decrypt_stream(key, source, sink, where)
            else:
                decrypt_stream(key, source, sys.stdout.buffer, where)
        finally:
            if args.input:
                source.close()
    except (OSError, ValueError, ColdFormatError) as exc:
        print(f"coldformat: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
