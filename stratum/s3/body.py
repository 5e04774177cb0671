"""Request bodies: streamed, measured and verified, never held whole in memory.

A PUT body reaches the object service as an async iterator of byte chunks plus
the digests to compute along the way and a ``verify`` callback. The object service
calls ``verify`` after the data is durable and before it becomes visible, so a body
that fails its x-amz-content-sha256, Content-MD5 or x-amz-checksum-* check stores
nothing. Each read of the body waits at most ``[server] body_timeout`` for data; a client
that stops sending gets 400 ``RequestTimeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from stratum.auth.request import UNSIGNED_PAYLOAD
from stratum.auth.streaming import ChunkSignatureChain
from stratum.block.tierstore import Hasher
from stratum.s3 import checksums
from stratum.s3.chunked import ChunkedDecoder
from stratum.s3.context import ReqCtx
from stratum.s3.errors import S3Error

READ_CHUNK = 256 * 1024
T = TypeVar("T")


@dataclass
class Body:
    """A request body ready for the object service."""

    chunks: AsyncIterator[bytes]
    size: int | None  # the decoded size the client declared
    hashers: list[Hasher] = field(default_factory=list)
    checks: list[Callable[[], None]] = field(default_factory=list)
    # algorithm -> checksum (base64) the object will carry once verified
    checksums: dict[str, str] = field(default_factory=dict)

    def verify(self) -> None:
        for check in self.checks:
            check()


async def _within(ctx: ReqCtx, read: Awaitable[T]) -> T:
    return await within(ctx.request, ctx.settings.body_timeout, read)


async def within(request: web.Request, seconds: float, read: Awaitable[T]) -> T:
    """One read of the body, which waits at most ``seconds`` (``body_timeout``) for data.

    The limit is per read, not per body: a slow but steady upload is never cut, a stalled
    one is refused as S3 refuses it. (A read waits only when nothing the client sent is
    left unread: data that arrived while the server was busy is there at once.)
    """
    try:
        async with asyncio.timeout(seconds):
            return await read
    except TimeoutError:
        # Nothing more is expected: aiohttp would otherwise linger (up to 10 s) reading the
        # rest of the body before it closes the connection after the refusal.
        request.content.feed_eof()
        raise S3Error("RequestTimeout") from None


async def _raw_chunks(ctx: ReqCtx) -> AsyncIterator[bytes]:
    await ctx.want_body()
    content = ctx.request.content
    while True:
        chunk = await _within(ctx, content.read(READ_CHUNK))
        if not chunk:
            return
        ctx.bytes_in += len(chunk)
        yield chunk


def _declared_length(ctx: ReqCtx) -> int | None:
    raw = ctx.request.headers.get("Content-Length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise S3Error("InvalidArgument", "Content-Length is not a number") from None
    if value < 0:
        raise S3Error("InvalidArgument", "Content-Length is negative")
    return value


def open_body(ctx: ReqCtx, *, require_length: bool = True, checksums: bool = True) -> Body:
    """Set up the decoding and verification the request's headers ask for.

    ``checksums=False`` leaves x-amz-checksum-* headers alone: on CompleteMultipartUpload
    they describe the object being assembled, not the request's XML.
    """
    headers = ctx.request.headers
    payload = ctx.auth.payload_hash
    length = _declared_length(ctx)
    if payload.startswith("STREAMING-"):
        decoded = headers.get("x-amz-decoded-content-length")
        if decoded is None:
            raise S3Error("MissingContentLength", "x-amz-decoded-content-length is required")
        try:
            size: int | None = int(decoded)
        except ValueError:
            raise S3Error(
                "InvalidArgument", "x-amz-decoded-content-length is not a number"
            ) from None
        chain = (
            ChunkSignatureChain(ctx.auth.chunk_context)
            if ctx.auth.chunk_context is not None
            else None
        )
        trailer_names = [
            n.strip().lower() for n in headers.get("x-amz-trailer", "").split(",") if n.strip()
        ]
        decoder = ChunkedDecoder(
            _Counted(ctx),
            mode=payload,
            chain=chain,
            decoded_length=size,
            expected_trailers=trailer_names,
        )
        body = Body(decoder.__aiter__(), size)
        if checksums:
            _add_checksums(body, headers, decoder)
        return body
    chunked_te = headers.get("Transfer-Encoding", "").lower() == "chunked"
    if length is None and require_length and not chunked_te:
        raise S3Error("MissingContentLength")
    body = Body(_raw_chunks(ctx), length)
    if payload not in (UNSIGNED_PAYLOAD,) and len(payload) == 64:
        sha = hashlib.sha256()
        body.hashers.append(sha)

        def check_sha() -> None:
            if not hmac.compare_digest(sha.hexdigest(), payload):
                raise S3Error(
                    "XAmzContentSHA256Mismatch",
                    extra={
                        "ClientComputedContentSHA256": payload,
                        "S3ComputedContentSHA256": sha.hexdigest(),
                    },
                )

        body.checks.append(check_sha)
    if checksums:
        _add_checksums(body, headers, None)
    return body


async def _after_loading(algorithm: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, once the checksum's native code is imported (off the event loop)."""
    await checksums.load_native(algorithm)
    async for chunk in chunks:
        yield chunk


def form_body(chunks: AsyncIterator[bytes], fields: Any) -> Body:
    """A browser form's file (POST Object): its checksum comes in an ``x-amz-checksum-*``
    form field instead of a header, and is verified the same way."""
    body = Body(chunks, None)
    _add_checksums(body, fields, None)
    return body


class _Counted:
    """aiohttp's StreamReader, counting the bytes the chunked decoder pulls."""

    def __init__(self, ctx: ReqCtx) -> None:
        self._ctx = ctx
        self._content = ctx.request.content

    async def readline(self) -> bytes:
        await self._ctx.want_body()
        line = await _within(self._ctx, self._content.readline())
        self._ctx.bytes_in += len(line)
        return line

    async def readexactly(self, n: int) -> bytes:
        await self._ctx.want_body()
        data = await _within(self._ctx, self._content.readexactly(n))
        self._ctx.bytes_in += len(data)
        return data

    async def read(self, n: int = -1) -> bytes:
        await self._ctx.want_body()
        data = await _within(self._ctx, self._content.read(n))
        self._ctx.bytes_in += len(data)
        return data


def _add_checksums(body: Body, headers: Any, decoder: ChunkedDecoder | None) -> None:
    """x-amz-checksum-* in a header, or announced for the trailer: compute and verify."""
    wanted = checksums.checksum_request(headers)
    if wanted is None:
        return
    if wanted.trailer is not None and decoder is None:
        raise S3Error("InvalidRequest", "x-amz-trailer is only valid with an aws-chunked body")
    summer = wanted.checksummer()
    body.hashers.append(summer)
    body.chunks = _after_loading(wanted.algorithm, body.chunks)

    def check() -> None:
        trailers = decoder.trailers if decoder is not None else None
        body.checksums[wanted.algorithm] = wanted.verify(summer, trailers)

    body.checks.append(check)
