"""Decoding ``aws-chunked`` request bodies (``x-amz-content-sha256: STREAMING-*``).

The framing, as AWS accepts it and as botocore's ``AwsChunkedWrapper``, the AWS SDKs and the
CRT send it (``\\r\\n`` is CRLF; sizes are hexadecimal)::

    signed, STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]:
        <size>;chunk-signature=<64 hex>\\r\\n<size bytes>\\r\\n      (repeated)
        0;chunk-signature=<64 hex>\\r\\n
        <name>:<value>\\r\\n ... x-amz-trailer-signature:<64 hex>\\r\\n    (-TRAILER only)
        \\r\\n
    unsigned, STREAMING-UNSIGNED-PAYLOAD-TRAILER:
        <size>\\r\\n<size bytes>\\r\\n                                (repeated)
        0\\r\\n
        <name>:<value>\\r\\n ...                                    (declared by x-amz-trailer)
        \\r\\n

The final, empty chunk has no data and so no CRLF of its own: the trailer lines follow its
header line at once, and an empty line ends the body (botocore: ``0\\r\\n\\r\\n`` or
``0\\r\\nx-amz-checksum-crc32:...\\r\\n\\r\\n``). Like AWS, the end of the body may stand in
for that empty line (the JavaScript SDK sends a bare ``0\\r\\n`` when it has no trailer), and
whitespace around ``;``, ``=`` and ``:`` is allowed.

Errors, as AWS reports them: any framing fault (bad size line, missing or empty
``chunk-signature``, a line over :data:`MAX_LINE` bytes, missing CRLF, the body ending early,
a signed trailer without its signature) is ``IncompleteBody`` "The request body terminated
unexpectedly"; chunk sizes not adding up to ``x-amz-decoded-content-length`` are
``IncompleteBody`` with the byte counts; a chunk or trailer signature that does not verify is
``SignatureDoesNotMatch`` (an :class:`~stratum.auth.AuthError` from the signature chain, which
the server maps like any refused authentication); a trailer that was not declared, declared
but absent, repeated or not ``name:value`` is ``InvalidRequest`` (AWS says
``MalformedTrailerError``), and so is anything after the end of the body.

Data is yielded as it is read, so the decoded payload is only authentic once iteration has
finished without an error; the caller must store nothing before that.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from aiohttp.http_exceptions import LineTooLong

from stratum.auth.request import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
)
from stratum.auth.streaming import (
    TRAILER_SIGNATURE_HEADER,
    ChunkSignatureChain,
    canonical_trailer,
)
from stratum.s3.errors import S3Error

MODES = frozenset(
    {STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER}
)
MAX_LINE = 4096
"""Longest chunk-header or trailer line accepted, CRLF included (a signed header is ~90)."""
DEFAULT_MAX_CHUNK = 16 << 20
DEFAULT_OFFLOAD_HASH_ABOVE = 1 << 20

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_MAX_SIZE_DIGITS = 16  # 2^64 bytes is more than anyone will send
_BLANKS = b" \t"


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class ByteSource(Protocol):
    """The reading side of a request body; aiohttp's ``StreamReader`` is one.

    ``readline`` returns up to and including ``\\n``, or what is left at the end of the body;
    ``readexactly`` raises :class:`asyncio.IncompleteReadError` at the end of the body;
    ``read(n)`` returns at most ``n`` bytes, ``b""`` only at the end.
    """

    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def read(self, n: int) -> bytes: ...


class ChunkedDecoder:
    """Iterate over the decoded payload of an ``aws-chunked`` body, checking it as it goes.

    ``mode`` is the request's ``x-amz-content-sha256`` (one of :data:`MODES`); ``chain``
    verifies the chunk signatures and is required exactly for the two signed modes.
    ``decoded_length`` is ``x-amz-decoded-content-length`` (``None``: not checked).
    ``expected_trailers`` are the trailer names ``x-amz-trailer`` declared; each must arrive,
    and no other (``x-amz-trailer-signature`` aside, which the signed-trailer mode requires).

    Chunks of up to ``max_chunk`` bytes are read whole, their signature checked, then
    yielded; a larger chunk is yielded in ``max_chunk`` pieces, hashed incrementally and its
    signature checked after its last piece. Pieces of at least ``offload_hash_above`` bytes
    are hashed in the loop's default executor rather than on the event loop (``None``:
    always on the loop). After iteration, :attr:`trailers` maps each trailer's lower-case
    name to its value (the trailer signature excluded) and :attr:`decoded_bytes` is the
    payload length.
    """

    def __init__(
        self,
        source: ByteSource,
        *,
        mode: str,
        chain: ChunkSignatureChain | None,
        decoded_length: int | None,
        expected_trailers: Sequence[str],
        max_chunk: int = DEFAULT_MAX_CHUNK,
        offload_hash_above: int | None = DEFAULT_OFFLOAD_HASH_ABOVE,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"not an aws-chunked mode: {mode!r}")
        if (mode == STREAMING_UNSIGNED_PAYLOAD_TRAILER) != (chain is None):
            raise ValueError(f"{mode} needs {'no' if chain is None else 'a'} signature chain")
        if max_chunk < 1:
            raise ValueError("max_chunk must be positive")
        if decoded_length is not None and decoded_length < 0:
            raise ValueError("negative decoded length")
        self._source = source
        self._mode = mode
        self._chain = chain
        self._decoded_length = decoded_length
        self._expected = [name.strip().lower() for name in expected_trailers]
        self._max_chunk = max_chunk
        self._offload_above = offload_hash_above
        self._started = False
        self.trailers: dict[str, str] = {}
        self.decoded_bytes = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("a ChunkedDecoder can only be iterated once")
        self._started = True
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = self._parse_chunk_header(await self._line())
            self._check_length(self.decoded_bytes + size, final=size == 0)
            if size == 0:
                if self._chain is not None:
                    self._chain.verify_chunk(EMPTY_SHA256, signature)
                break
            if size <= self._max_chunk:
                data = await self._read_exactly(size)
                await self._end_of_chunk(data, signature, hasher=None)
                self.decoded_bytes += size
                yield data
                continue
            hasher = hashlib.sha256() if self._chain is not None else None
            remaining = size
            while remaining:
                piece = await self._read_exactly(min(remaining, self._max_chunk))
                remaining -= len(piece)
                if hasher is not None:
                    await self._hash(hasher, piece)
                self.decoded_bytes += len(piece)
                yield piece
            await self._end_of_chunk(b"", signature, hasher=hasher)
        await self._read_trailers()
        if await self._source.read(1):
            raise S3Error("InvalidRequest", "The request body continues after its final chunk.")

    async def _end_of_chunk(self, data: bytes, signature: str, *, hasher: _Hasher | None) -> None:
        """Read the CRLF closing a chunk and check the chunk's signature."""
        if await self._read_exactly(2) != b"\r\n":
            raise _incomplete()
        if self._chain is None:
            return
        if hasher is None:
            hasher = hashlib.sha256()
            await self._hash(hasher, data)
        self._chain.verify_chunk(hasher.hexdigest(), signature)

    def _parse_chunk_header(self, line: bytes) -> tuple[int, str]:
        """``<hex size>[;chunk-signature=<sig>]\\r\\n`` -> (size, signature or "")."""
        if not line.endswith(b"\r\n"):
            raise _incomplete()
        size_text, semicolon, parameter = line[:-2].partition(b";")
        size_text = size_text.strip(_BLANKS)
        if (
            not size_text
            or len(size_text) > _MAX_SIZE_DIGITS
            or not _HEX_DIGITS.issuperset(size_text)
        ):
            raise _incomplete()
        size = int(size_text, 16)
        if self._chain is None:
            if semicolon:
                raise _incomplete()
            return size, ""
        name, equals, signature = parameter.partition(b"=")
        if not semicolon or not equals:
            raise _incomplete()
        if name.strip(_BLANKS) != b"chunk-signature":
            # What AWS answers to "<size>;other=x;chunk-signature=<sig>".
            raise S3Error("SignatureDoesNotMatch")
        signature = signature.strip(_BLANKS)
        if not signature or b";" in signature:
            raise _incomplete()
        return size, signature.decode("ascii", "surrogateescape")

    def _check_length(self, total: int, *, final: bool) -> None:
        expected = self._decoded_length
        if expected is None or (total < expected and not final) or total == expected:
            return
        raise S3Error(
            "IncompleteBody",
            extra={"NumberBytesExpected": str(expected), "NumberBytesProvided": str(total)},
        )

    async def _read_trailers(self) -> None:
        """Read from after the final chunk's header line to the end of the body."""
        signed_trailer = self._mode == STREAMING_PAYLOAD_TRAILER
        allowed = set(self._expected) if self._mode != STREAMING_PAYLOAD else set()
        received: list[tuple[str, str]] = []
        signature: str | None = None
        while True:
            line = await self._line()
            if line in (b"", b"\r\n"):  # the end of the body may stand for the empty line
                break
            if not line.endswith(b"\r\n"):
                raise _incomplete()
            if self._mode == STREAMING_PAYLOAD:
                raise S3Error("InvalidRequest", "The request body continues after its final chunk.")
            name, value = _parse_trailer(line[:-2])
            if signed_trailer and name == TRAILER_SIGNATURE_HEADER and signature is None:
                signature = value
            elif name in self.trailers:
                raise _malformed_trailer(f"The trailer {name} was sent twice.")
            elif name not in allowed:
                raise _malformed_trailer(f"The trailer {name} was not declared in x-amz-trailer.")
            else:
                received.append((name, value))
                self.trailers[name] = value
        if signed_trailer:
            if signature is None:
                raise _incomplete()
            assert self._chain is not None
            digest = hashlib.sha256(canonical_trailer(received)).hexdigest()
            self._chain.verify_trailer(digest, signature)
        for name in self._expected:
            if name not in self.trailers:
                raise _malformed_trailer(
                    f"The x-amz-trailer header specified {name}, but it was not sent."
                )

    async def _line(self) -> bytes:
        try:
            line = await self._source.readline()
        except (LineTooLong, ValueError):
            raise _incomplete() from None
        if len(line) > MAX_LINE:
            raise _incomplete()
        return line

    async def _read_exactly(self, n: int) -> bytes:
        try:
            return await self._source.readexactly(n)
        except asyncio.IncompleteReadError:
            raise _incomplete() from None

    async def _hash(self, hasher: _Hasher, data: bytes) -> None:
        if self._offload_above is not None and len(data) >= self._offload_above:
            await asyncio.get_running_loop().run_in_executor(None, hasher.update, data)
        else:
            hasher.update(data)


def _parse_trailer(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    try:
        text_name = name.decode("ascii").strip().lower()
        text_value = value.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _malformed_trailer("A trailer is not ASCII.") from None
    if not colon or not text_name:
        raise _malformed_trailer("A trailer is not of the form name:value.")
    return text_name, text_value


def _incomplete() -> S3Error:
    return S3Error("IncompleteBody", "The request body terminated unexpectedly")


def _malformed_trailer(detail: str) -> S3Error:
    return S3Error(
        "InvalidRequest",
        "The request contained trailing data that was not well-formed or did not conform to "
        f"our published schema. {detail}",
    )
