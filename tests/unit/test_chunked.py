"""aws-chunked decoding: bodies made by botocore (its AwsChunkedWrapper and a real boto3
PutObject), AWS's signed example and the CRT's signed-trailer continuation of it, every
malformation, round-trip properties, and bounded memory on a 64 MiB chunk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import random
import tracemalloc
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import boto3
import crc32c
import pytest
from aiohttp import web
from botocore.awsrequest import AWSResponse
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from stratum.auth import AuthError, ChunkSigningContext
from stratum.auth.request import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
)
from stratum.auth.sigv4 import signing_key
from stratum.auth.streaming import (
    ChunkSignatureChain,
    canonical_trailer,
    chunk_signature,
    trailer_signature,
)
from stratum.s3.checksums import Algorithm, checksum_of, checksum_request
from stratum.s3.chunked import ByteSource, ChunkedDecoder
from stratum.s3.errors import S3Error, as_s3_error

UNSIGNED = STREAMING_UNSIGNED_PAYLOAD_TRAILER

# AWS's "Transferring Payload in Multiple Chunks" example (see test_sigv4_chunked.py, which
# checks that authenticate() yields this context for the example request).
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CONTEXT = ChunkSigningContext(
    seed_signature="4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    signing_key=signing_key(SECRET, "20130524", "us-east-1"),
    scope="20130524/us-east-1/s3/aws4_request",
    amz_date="20130524T000000Z",
    trailer=False,
)
CHUNK_1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
CHUNK_2 = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
FINAL = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
TRAILER = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
EXAMPLE_BODY = (
    f"10000;chunk-signature={CHUNK_1}\r\n".encode()
    + b"a" * 65536
    + f"\r\n400;chunk-signature={CHUNK_2}\r\n".encode()
    + b"a" * 1024
    + f"\r\n0;chunk-signature={FINAL}\r\n\r\n".encode()
)
EXAMPLE_TRAILERS = ["first", "second", "third"]
EXAMPLE_TRAILER_BODY = EXAMPLE_BODY[:-2] + (
    f"first:1st\r\nsecond:2nd\r\nthird:3rd\r\nx-amz-trailer-signature:{TRAILER}\r\n\r\n".encode()
)

Part = bytes | tuple[int, int]  # literal bytes, or (byte value, count) generated on demand


class FakeSource:
    """An in-memory stand-in for aiohttp's StreamReader, with the ByteSource semantics.

    Parts given as ``(byte, count)`` are produced only as they are read, so a test can feed
    a huge body without holding it. ``step`` caps what one ``read`` returns, like a network.
    """

    def __init__(self, parts: Iterable[Part], step: int | None = None) -> None:
        self._parts: deque[Part] = deque(parts)
        self._pending = b""
        self._step = step

    def _fill(self, n: int) -> None:
        while len(self._pending) < n and self._parts:
            part = self._parts.popleft()
            if isinstance(part, bytes):
                self._pending += part
                continue
            byte, count = part
            take = min(count, n - len(self._pending))
            self._pending += bytes([byte]) * take
            if count > take:
                self._parts.appendleft((byte, count - take))

    def _take(self, n: int) -> bytes:
        self._fill(n)
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    async def readline(self) -> bytes:
        size = 64
        while True:
            self._fill(size)
            end = self._pending.find(b"\n")
            if end >= 0:
                return self._take(end + 1)
            if len(self._pending) < size:  # the end of the body
                return self._take(len(self._pending))
            size *= 2

    async def readexactly(self, n: int) -> bytes:
        out = self._take(n)
        if len(out) < n:
            raise asyncio.IncompleteReadError(out, n)
        return out

    async def read(self, n: int) -> bytes:
        return self._take(min(n, self._step or n))


def signed_body(
    chunks: Sequence[bytes],
    *,
    trailers: Sequence[tuple[str, str]] | None = None,
    context: ChunkSigningContext = CONTEXT,
) -> bytes:
    """Sign chunks (and trailers) the way an SDK does, with our own signing functions."""
    out = []
    previous = context.seed_signature
    for chunk in [*chunks, b""]:
        previous = chunk_signature(context, previous, hashlib.sha256(chunk).hexdigest())
        out.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode()))
        if chunk:
            out.append(chunk + b"\r\n")
    if trailers is not None:
        for name, value in trailers:
            out.append(f"{name}:{value}\r\n".encode())
        digest = hashlib.sha256(canonical_trailer(trailers)).hexdigest()
        signature = trailer_signature(context, previous, digest)
        out.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)


def unsigned_body(chunks: Sequence[bytes], trailers: Sequence[tuple[str, str]] = ()) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk]
    out.append(b"0\r\n")
    out += [f"{name}:{value}\r\n".encode() for name, value in trailers]
    out.append(b"\r\n")
    return b"".join(out)


def decoder(
    source: ByteSource | bytes,
    mode: str = UNSIGNED,
    *,
    decoded_length: int | None = None,
    expected_trailers: Sequence[str] = (),
    context: ChunkSigningContext | None = CONTEXT,
    **options: Any,
) -> ChunkedDecoder:
    chain = None if mode == UNSIGNED or context is None else ChunkSignatureChain(context)
    return ChunkedDecoder(
        FakeSource([source]) if isinstance(source, bytes) else source,
        mode=mode,
        chain=chain,
        decoded_length=decoded_length,
        expected_trailers=expected_trailers,
        **options,
    )


async def decode(chunked: ChunkedDecoder) -> bytes:
    return b"".join([piece async for piece in chunked])


async def refused(chunked: ChunkedDecoder) -> S3Error:
    """The S3 error a client gets (a bad signature comes from the auth package's chain)."""
    with pytest.raises((S3Error, AuthError)) as info:
        await decode(chunked)
    return as_s3_error(info.value)


# --- What botocore sends ----------------------------------------------------------------------


class Crc32cChecksum:
    """botocore has CRC32C only with awscrt; this gives its wrapper one from crc32c."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        self._crc = crc32c.crc32c(chunk, self._crc)

    def b64digest(self) -> str:
        return base64.b64encode(self._crc.to_bytes(4, "big")).decode()


@pytest.mark.parametrize(
    ("algorithm", "checksum_class"),
    [("crc32", Crc32Checksum), ("crc32c", Crc32cChecksum), ("sha256", Sha256Checksum)],
)
@pytest.mark.parametrize("size", [0, 1, 5000, 3 * 1024 * 1024 + 17])
async def test_botocore_aws_chunked_wrapper(
    algorithm: Algorithm, checksum_class: type, size: int
) -> None:
    payload = random.Random(size).randbytes(size)
    name = f"x-amz-checksum-{algorithm}"
    body = AwsChunkedWrapper(
        io.BytesIO(payload), checksum_cls=checksum_class, checksum_name=name
    ).read()
    chunked = decoder(body, decoded_length=size, expected_trailers=[name])
    assert await decode(chunked) == payload
    assert chunked.trailers == {name: checksum_of(algorithm, payload)}
    assert chunked.decoded_bytes == size


async def test_botocore_wrapper_without_checksum() -> None:
    body = AwsChunkedWrapper(io.BytesIO(b"data" * 100), chunk_size=64).read()
    assert body.endswith(b"\r\n0\r\n\r\n")
    chunked = decoder(body, decoded_length=400)
    assert await decode(chunked) == b"data" * 100
    assert chunked.trailers == {}


def boto3_put_object(**params: Any) -> tuple[dict[str, str], bytes]:
    """The headers and body boto3's real PutObject pipeline produces (nothing is sent)."""
    captured: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> AWSResponse:
        captured["headers"] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        captured["body"] = request.body.read()

        class Raw:
            def stream(self, *args: Any, **kwargs: Any) -> Iterable[bytes]:
                return iter([b""])

        return AWSResponse(request.url, 200, {"ETag": '"0"'}, Raw())

    session = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    client = session.client("s3", endpoint_url="https://s3.stratum.test")
    client.meta.events.register("before-send.s3.PutObject", before_send)
    client.put_object(Bucket="bucket", Key="key", **params)
    return captured["headers"], captured["body"]


@pytest.mark.parametrize("algorithm", [None, "SHA1", "SHA256"])
async def test_boto3_put_object_round_trip(algorithm: str | None) -> None:
    payload = bytes(range(256)) * 300
    extra = {} if algorithm is None else {"ChecksumAlgorithm": algorithm}
    headers, body = await asyncio.to_thread(boto3_put_object, Body=payload, **extra)  # boto3 blocks
    assert headers["x-amz-content-sha256"] == UNSIGNED
    assert headers["content-encoding"] == "aws-chunked"

    request = checksum_request(headers)
    assert request is not None and request.trailer is not None
    assert request.algorithm == (algorithm or "CRC32").lower()
    chunked = ChunkedDecoder(
        FakeSource([body]),
        mode=headers["x-amz-content-sha256"],
        chain=None,
        decoded_length=int(headers["x-amz-decoded-content-length"]),
        expected_trailers=[request.trailer],
    )
    computed = request.checksummer()
    async for piece in chunked:
        computed.update(piece)
    assert request.verify(computed, chunked.trailers) == checksum_of(request.algorithm, payload)


# --- Signed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_chunk": 1000},  # the 64 KiB chunk is streamed and hashed in pieces
        {"max_chunk": 4096, "offload_hash_above": 1},  # hashed in the executor
        {"offload_hash_above": None},
    ],
)
async def test_aws_signed_example(options: dict[str, Any]) -> None:
    chunked = decoder(EXAMPLE_BODY, STREAMING_PAYLOAD, decoded_length=66560, **options)
    pieces = [piece async for piece in chunked]
    assert b"".join(pieces) == b"a" * 66560
    assert max(map(len, pieces)) <= options.get("max_chunk", 65536)
    assert chunked.trailers == {}


async def test_aws_signed_example_through_a_slow_source() -> None:
    chunked = decoder(FakeSource([EXAMPLE_BODY], step=7), STREAMING_PAYLOAD, decoded_length=66560)
    assert await decode(chunked) == b"a" * 66560


async def test_crt_signed_trailer_example() -> None:
    chunked = decoder(
        EXAMPLE_TRAILER_BODY,
        STREAMING_PAYLOAD_TRAILER,
        decoded_length=66560,
        expected_trailers=EXAMPLE_TRAILERS,
    )
    assert await decode(chunked) == b"a" * 66560
    assert chunked.trailers == {"first": "1st", "second": "2nd", "third": "3rd"}


async def test_signed_checksum_trailer() -> None:
    payload = b"stratum" * 3000
    value = checksum_of("crc32c", payload)
    body = signed_body(
        [payload[:10000], payload[10000:]], trailers=[("x-amz-checksum-crc32c", value)]
    )
    chunked = decoder(
        body,
        STREAMING_PAYLOAD_TRAILER,
        decoded_length=len(payload),
        expected_trailers=["x-amz-checksum-crc32c"],
    )
    assert await decode(chunked) == payload
    assert chunked.trailers == {"x-amz-checksum-crc32c": value}


# --- What AWS tolerates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhello\r\n0\r\n",  # the JavaScript SDK without a checksum: no empty line
        b"5\r\nhello\r\n0\r\n\r\n",
        b"05\r\nhello\r\n0000\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
    ],
)
async def test_unsigned_without_trailer(body: bytes) -> None:
    assert await decode(decoder(body, decoded_length=5)) == b"hello"


async def test_trailer_spacing_and_end_of_body_are_tolerated() -> None:
    value = checksum_of("crc32", b"hello")
    for ending in (b"\r\n", b""):
        body = b"5\r\nhello\r\n0\r\nX-Amz-Checksum-CRC32 : %s \r\n" % value.encode() + ending
        chunked = decoder(body, expected_trailers=["x-amz-checksum-crc32"])
        assert await decode(chunked) == b"hello"
        assert chunked.trailers == {"x-amz-checksum-crc32": value}


async def test_spaced_out_chunk_signature() -> None:
    spaced = EXAMPLE_BODY.replace(b";chunk-signature=", b" ; chunk-signature = ")
    assert await decode(decoder(spaced, STREAMING_PAYLOAD)) == b"a" * 66560


# --- Malformations ----------------------------------------------------------------------------

TERMINATED = ("IncompleteBody", "The request body terminated unexpectedly")


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5_0\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",  # empty size
        b"1" * 17 + b"\r\nhello\r\n0\r\n\r\n",  # absurd size
        b"5\nhello\r\n0\r\n\r\n",  # LF without CR
        b"5\rhello\r\n0\r\n\r\n",
        b"5;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n0\r\n\r\n",  # signature when unsigned
        b"5\r\nhello\n0\r\n\r\n",  # data not followed by CRLF
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello world\r\n0\r\n\r\n",  # chunk longer than its size
        b"5\r\nhel",  # ends inside data
        b"5\r\nhello",  # ends before the CRLF
        b"5\r\nhello\r\n",  # no final chunk
        b"5\r\nhello\r\n0",  # ends inside the final chunk's line
        b"5\r\nhello\r\n0\r\n\r",
        b"a" * 5000 + b"\r\n",  # line too long
        b"5\r\nhello\r\n0\r\n" + b"x-amz-checksum-crc32:" + b"A" * 5000 + b"\r\n\r\n",
        b"",
    ],
)
async def test_unsigned_framing_errors(body: bytes) -> None:
    error = await refused(decoder(body, expected_trailers=["x-amz-checksum-crc32"]))
    assert (error.code, error.text, error.status) == (*TERMINATED, 400)


@pytest.mark.parametrize(
    "trailer",
    [
        b"x-amz-checksum-crc32:AAAAAA==\n",  # LF without CR
        b"x-amz-checksum-crc32:AAAAAA==\r",
        b"x-amz-checksum-crc32:AAAAAA==",
    ],
)
async def test_trailer_line_endings(trailer: bytes) -> None:
    body = b"5\r\nhello\r\n0\r\n" + trailer
    error = await refused(decoder(body, expected_trailers=["x-amz-checksum-crc32"]))
    assert (error.code, error.text) == TERMINATED


@pytest.mark.parametrize(
    "replace",
    [
        (b"10000;chunk-signature=", b"10000;chunk-signature"),  # parameter without "="
        (f";chunk-signature={CHUNK_1}".encode(), b""),  # no signature at all
        (f"={CHUNK_1}".encode(), b"="),  # empty signature
        (CHUNK_1.encode(), CHUNK_1.encode() + b";extra=param"),
        (b"10000;", b"zz;"),
    ],
)
async def test_signed_framing_errors(replace: tuple[bytes, bytes]) -> None:
    body = EXAMPLE_BODY.replace(*replace)
    error = await refused(decoder(body, STREAMING_PAYLOAD))
    assert (error.code, error.text) == TERMINATED


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (CHUNK_1, CHUNK_2),  # another chunk's signature
        (CHUNK_1, CHUNK_1.upper()),
        (CHUNK_1, "invalid"),
        (FINAL, CHUNK_2),  # final chunk's signature
        ("chunk-signature", "extra=param;chunk-signature"),  # AWS answers this one so too
    ],
)
async def test_bad_chunk_signatures(old: str, new: str) -> None:
    body = EXAMPLE_BODY.replace(old.encode(), new.encode(), 1)
    error = await refused(decoder(body, STREAMING_PAYLOAD))
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)


@pytest.mark.parametrize("max_chunk", [1 << 20, 1000])
async def test_tampered_data_is_refused(max_chunk: int) -> None:
    body = EXAMPLE_BODY.replace(b"a" * 100, b"a" * 99 + b"b", 1)
    chunked = decoder(body, STREAMING_PAYLOAD, max_chunk=max_chunk)
    pieces = chunked.__aiter__()
    yielded = 0
    with pytest.raises(AuthError) as info:
        while True:
            yielded += len(await anext(pieces))
    assert info.value.code == "SignatureDoesNotMatch"
    if max_chunk > 65536:
        assert yielded == 0  # whole chunks are checked before they are handed out
    else:
        assert yielded == 65536  # streamed: checked after its last piece


async def test_signed_chunk_dropped() -> None:
    second = f"400;chunk-signature={CHUNK_2}\r\n".encode() + b"a" * 1024 + b"\r\n"
    assert second in EXAMPLE_BODY
    error = await refused(decoder(EXAMPLE_BODY.replace(second, b""), STREAMING_PAYLOAD))
    assert error.code == "SignatureDoesNotMatch"


async def test_signed_trailer_errors() -> None:
    async def code(body: bytes) -> tuple[str, str]:
        error = await refused(
            decoder(body, STREAMING_PAYLOAD_TRAILER, expected_trailers=EXAMPLE_TRAILERS)
        )
        return error.code, error.text

    assert await code(EXAMPLE_TRAILER_BODY.replace(b"2nd", b"2ND")) == (
        "SignatureDoesNotMatch",
        S3Error("SignatureDoesNotMatch").text,
    )
    assert (await code(EXAMPLE_TRAILER_BODY.replace(TRAILER.encode(), FINAL.encode())))[0] == (
        "SignatureDoesNotMatch"
    )
    without_signature = EXAMPLE_TRAILER_BODY.replace(
        f"x-amz-trailer-signature:{TRAILER}\r\n".encode(), b""
    )
    assert await code(without_signature) == TERMINATED
    twice = EXAMPLE_TRAILER_BODY.replace(
        b"\r\n\r\n", f"\r\nx-amz-trailer-signature:{TRAILER}\r\n\r\n".encode()
    )
    assert (await code(twice))[0] == "InvalidRequest"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"5\r\nhello\r\n0\r\n\r\n", ["x-amz-checksum-crc32"]),  # declared, not sent
        (b"5\r\nhello\r\n0\r\n\r\nx-amz-checksum-crc32:AAAAAA==\r\n", ["x-amz-checksum-crc32"]),
        (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", ["x-amz-checksum-crc32c"]),
        (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", []),  # not declared
        (b"5\r\nhello\r\n0\r\nx:1\r\nx:1\r\n\r\n", ["x"]),  # repeated
        (b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", ["no colon"]),
        (b"5\r\nhello\r\n0\r\n:empty name\r\n\r\n", [""]),
        (b"5\r\nhello\r\n0\r\nx:\xff\r\n\r\n", ["x"]),  # not ASCII
        (b"5\r\nhello\r\n0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n", []),
    ],
)
async def test_trailer_errors(body: bytes, expected: list[str]) -> None:
    error = await refused(decoder(body, expected_trailers=expected))
    assert (error.code, error.status) == ("InvalidRequest", 400)
    assert error.text.startswith("The request contained trailing data that was not well-formed")


async def test_missing_trailer_message_names_it() -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    error = await refused(decoder(body, expected_trailers=["X-Amz-Checksum-SHA256"]))
    assert "x-amz-checksum-sha256" in error.text


@pytest.mark.parametrize(
    ("chunks", "declared", "provided"),
    [
        ([b"hello"], 6, 5),  # too few bytes
        ([b"hello", b"!"], 5, 6),  # too many: refused before the extra chunk is read
        ([b"hello"], 0, 5),
    ],
)
async def test_decoded_length_mismatch(chunks: list[bytes], declared: int, provided: int) -> None:
    error = await refused(decoder(unsigned_body(chunks), decoded_length=declared))
    assert (error.code, error.status) == ("IncompleteBody", 400)
    assert error.extra == {
        "NumberBytesExpected": str(declared),
        "NumberBytesProvided": str(provided),
    }


async def test_final_chunk_mid_stream() -> None:
    body = b"2\r\nhe\r\n0\r\n\r\n3\r\nllo\r\n0\r\n\r\n"
    error = await refused(decoder(body, decoded_length=5))
    assert (error.code, error.extra["NumberBytesProvided"]) == ("IncompleteBody", "2")
    error = await refused(decoder(body))
    assert error.code == "InvalidRequest"


@pytest.mark.parametrize(
    ("body", "mode"),
    [
        (b"5\r\nhello\r\n0\r\n\r\nextra", UNSIGNED),
        (b"5\r\nhello\r\n0\r\n\r\n\r\n", UNSIGNED),
        (EXAMPLE_BODY + b"\r\n", STREAMING_PAYLOAD),
        (EXAMPLE_BODY[:-2] + b"first:1st\r\n\r\n", STREAMING_PAYLOAD),  # trailer when unexpected
    ],
)
async def test_data_after_the_final_chunk(body: bytes, mode: str) -> None:
    error = await refused(decoder(body, mode))
    assert (error.code, error.status) == ("InvalidRequest", 400)


async def test_iteration_stops_at_the_first_error() -> None:
    chunks = decoder(b"5\r\nhello\r\n5\r\nwor").__aiter__()
    assert await anext(chunks) == b"hello"
    with pytest.raises(S3Error):
        await anext(chunks)
    with pytest.raises(StopAsyncIteration):
        await anext(chunks)


def test_constructor_checks() -> None:
    chain = ChunkSignatureChain(CONTEXT)
    source = FakeSource([b""])
    for mode, with_chain in [
        (UNSIGNED, chain),
        (STREAMING_PAYLOAD, None),
        ("UNSIGNED-PAYLOAD", None),
    ]:
        with pytest.raises(ValueError):
            ChunkedDecoder(
                source, mode=mode, chain=with_chain, decoded_length=None, expected_trailers=[]
            )
    with pytest.raises(ValueError):
        decoder(source, max_chunk=0)
    with pytest.raises(ValueError):
        decoder(source, decoded_length=-1)


async def test_iterates_once() -> None:
    chunked = decoder(b"0\r\n\r\n")
    assert await decode(chunked) == b""
    with pytest.raises(RuntimeError):
        chunked.__aiter__()


# --- A real aiohttp StreamReader --------------------------------------------------------------


def decoding_app(mode: str, **options: Any) -> web.Application:
    """A handler decoding request.content, the StreamReader aiohttp gives a real request."""

    async def handle(request: web.Request) -> web.Response:
        chain = None if mode == UNSIGNED else ChunkSignatureChain(CONTEXT)
        chunked = ChunkedDecoder(request.content, mode=mode, chain=chain, **options)
        try:
            payload = await decode(chunked)
        except (S3Error, AuthError) as exc:
            error = as_s3_error(exc)
            return web.json_response({"code": error.code}, status=error.status)
        return web.json_response(
            {"sha256": hashlib.sha256(payload).hexdigest(), "trailers": chunked.trailers}
        )

    app = web.Application()
    app.router.add_put("/", handle)
    return app


async def in_pieces(body: bytes) -> AsyncIterator[bytes]:
    """Send as HTTP/1.1 chunked transfer coding, in random pieces, like botocore does."""
    rng = random.Random(len(body))
    position = 0
    while position < len(body):
        size = rng.randint(1, 70_000)
        yield body[position : position + size]
        position += size


async def test_aiohttp_request_content_signed(aiohttp_client: AiohttpClient) -> None:
    app = decoding_app(
        STREAMING_PAYLOAD_TRAILER,
        decoded_length=66560,
        expected_trailers=EXAMPLE_TRAILERS,
        max_chunk=5000,
    )
    client = await aiohttp_client(app)
    response = await client.put("/", data=in_pieces(EXAMPLE_TRAILER_BODY))
    assert response.status == 200
    assert await response.json() == {
        "sha256": hashlib.sha256(b"a" * 66560).hexdigest(),
        "trailers": {"first": "1st", "second": "2nd", "third": "3rd"},
    }


async def test_aiohttp_request_content_botocore_body(aiohttp_client: AiohttpClient) -> None:
    payload = random.Random(1).randbytes(300_000)
    name = "x-amz-checksum-crc32"
    body = AwsChunkedWrapper(
        io.BytesIO(payload), checksum_cls=Crc32Checksum, checksum_name=name, chunk_size=100_000
    ).read()
    app = decoding_app(UNSIGNED, decoded_length=len(payload), expected_trailers=[name])
    client = await aiohttp_client(app)
    response = await client.put("/", data=in_pieces(body))
    assert await response.json() == {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "trailers": {name: checksum_of("crc32", payload)},
    }

    response = await client.put("/", data=in_pieces(body[:-40]))
    assert (response.status, await response.json()) == (400, {"code": "IncompleteBody"})


async def test_aiohttp_request_content_overlong_line(aiohttp_client: AiohttpClient) -> None:
    # Longer than aiohttp's own line limit (twice its 64 KiB buffer): LineTooLong inside.
    app = decoding_app(UNSIGNED, decoded_length=None, expected_trailers=[])
    client = await aiohttp_client(app)
    response = await client.put("/", data=in_pieces(b"5" * 300_000 + b"\r\n"))
    assert (response.status, await response.json()) == (400, {"code": "IncompleteBody"})


# --- Properties -------------------------------------------------------------------------------


@st.composite
def chunked_payloads(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    payload = draw(st.binary(max_size=3000))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=8)))
    bounds = [0, *cuts, len(payload)]
    chunks = [payload[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return payload, chunks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=chunked_payloads(),
    max_chunk=st.integers(1, 4000),
    step=st.none() | st.integers(1, 50),
    signed=st.booleans(),
)
async def test_round_trip(
    case: tuple[bytes, list[bytes]], max_chunk: int, step: int | None, signed: bool
) -> None:
    payload, chunks = case
    value = checksum_of("crc32", payload)
    trailers = [("x-amz-checksum-crc32", value)]
    if signed:
        body, mode = signed_body(chunks, trailers=trailers), STREAMING_PAYLOAD_TRAILER
    else:
        body, mode = unsigned_body(chunks, trailers), UNSIGNED
    chunked = decoder(
        FakeSource([body], step=step),
        mode,
        decoded_length=len(payload),
        expected_trailers=["x-amz-checksum-crc32"],
        max_chunk=max_chunk,
    )
    pieces = [piece async for piece in chunked]
    assert b"".join(pieces) == payload
    assert all(0 < len(piece) <= max_chunk for piece in pieces)
    assert chunked.trailers == {"x-amz-checksum-crc32": value}


@settings(max_examples=60, deadline=None)
@given(case=chunked_payloads(), cut=st.integers(0, 10_000), signed=st.booleans())
async def test_truncated_bodies_are_refused(
    case: tuple[bytes, list[bytes]], cut: int, signed: bool
) -> None:
    payload, chunks = case
    trailers = [("x-amz-checksum-crc32", checksum_of("crc32", payload))]
    if signed:
        body, mode = signed_body(chunks, trailers=trailers), STREAMING_PAYLOAD_TRAILER
    else:
        body, mode = unsigned_body(chunks, trailers), UNSIGNED
    truncated = body[: cut % len(body)]
    if truncated == body[:-2]:
        return  # only the final empty line is missing, which AWS and we accept
    chunked = decoder(
        truncated, mode, decoded_length=len(payload), expected_trailers=["x-amz-checksum-crc32"]
    )
    await refused(chunked)


# --- Memory -----------------------------------------------------------------------------------

HUGE = 64 << 20


@pytest.mark.parametrize("signed", [False, True])
async def test_one_huge_chunk_in_bounded_memory(signed: bool) -> None:
    max_chunk = 1 << 20
    if signed:

        def huge_digest() -> str:  # 64 MiB of hashing: in a thread, not on the test's loop
            digest, block = hashlib.sha256(), b"s" * max_chunk
            for _ in range(HUGE // max_chunk):
                digest.update(block)
            return digest.hexdigest()

        first = chunk_signature(
            CONTEXT, CONTEXT.seed_signature, await asyncio.to_thread(huge_digest)
        )
        final = chunk_signature(CONTEXT, first, EMPTY_SHA256)
        head = f"{HUGE:x};chunk-signature={first}\r\n".encode()
        tail = f"\r\n0;chunk-signature={final}\r\n\r\n".encode()
        mode = STREAMING_PAYLOAD
    else:
        head, tail, mode = f"{HUGE:x}\r\n".encode(), b"\r\n0\r\n\r\n", UNSIGNED
    source = FakeSource([head, (ord("s"), HUGE), tail])
    chunked = decoder(source, mode, decoded_length=HUGE, max_chunk=max_chunk)
    total = 0
    tracemalloc.start()
    try:
        async for piece in chunked:
            assert len(piece) <= max_chunk
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        await asyncio.to_thread(tracemalloc.stop)  # it frees every trace: not on the loop
    assert total == HUGE
    assert peak < 8 * max_chunk
