"""The benchmark's S3 client: lean enough that the load it makes costs little CPU.

boto3 spends 1.5-2 ms of CPU per small request in one GIL-bound process, more than the
servers under test; on a small machine its threads, not the server, then set the pace.
This client is an asyncio protocol on uvloop, one HTTP/1.1 keep-alive connection per
simulated client, all in one event loop:

* a request is one ``transport.write`` of the head (signed with SigV4 in the
  ``Authorization`` header by ``bench.signer``) and the body; large bodies are written in
  1 MiB slices of a buffer shared by all objects of that size, with the transport's flow
  control, so the client never holds more than one copy of a body in memory;
* the response head is parsed with a few ``bytes.find``; a GET body is compared with the
  bytes that were PUT as each piece arrives (``bytes.startswith`` at an offset: a memcmp,
  no copy), so every GET is verified and nothing is kept;
* the payload's SHA-256 (sent in ``x-amz-content-sha256`` and checked by servers that
  check it) is computed when the object is made, before the clock starts, as the bodies
  themselves are.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from dataclasses import dataclass

from bench.signer import EMPTY_SHA256, Signer, uri_path

KiB = 1024
MiB = 1024 * KiB
SLICE = MiB  # large bodies are written in slices of this size
TIMEOUT = 600.0  # seconds for one request, as the boto3 client had


class Body:
    """An object's bytes: ``head + tail``, with their MD5 and SHA-256 (hex).

    Small bodies are all ``head``; large ones share one random ``head`` and differ in a
    16-byte ``tail``, so making one costs two hash updates and no copy."""

    __slots__ = ("head", "md5", "sha256", "size", "tail")

    def __init__(self, head: bytes, tail: bytes, md5: bytes, sha256: str) -> None:
        self.head, self.tail, self.md5, self.sha256 = head, tail, md5, sha256
        self.size = len(head) + len(tail)

    @classmethod
    def of(cls, data: bytes) -> Body:
        return cls(data, b"", hashlib.md5(data).digest(), hashlib.sha256(data).hexdigest())

    def matches(self, pos: int, chunk: bytes | memoryview) -> bool:
        """Whether ``chunk`` is this body's bytes from offset ``pos`` on."""
        split = len(self.head) - pos
        if split >= len(chunk):
            return self.head.startswith(chunk, pos)
        if split <= 0:
            return self.tail.startswith(chunk, -split)
        view = memoryview(chunk)
        return self.head.startswith(view[:split], pos) and self.tail.startswith(view[split:])


EMPTY = Body(b"", b"", hashlib.md5(b"").digest(), EMPTY_SHA256)


class Payloads:
    """Object bodies of one size, all different.

    Small bodies are random throughout; large ones share one random block and end in 16
    bytes of their own (hashes of the block are computed once and copied per object).
    """

    TAG = 16

    def __init__(self, size: int, seed: int = 8) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.large = size > 64 * KiB
        if self.large:
            self.base = self.rng.randbytes(size - self.TAG)
            self.base_md5 = hashlib.md5(self.base)
            self.base_sha256 = hashlib.sha256(self.base)

    def make(self) -> Body:
        if not self.large:
            return Body.of(self.rng.randbytes(self.size))
        tag = os.urandom(self.TAG)
        md5, sha256 = self.base_md5.copy(), self.base_sha256.copy()
        md5.update(tag)
        sha256.update(tag)
        return Body(self.base, tag, md5.digest(), sha256.hexdigest())


class HttpError(Exception):
    """A response other than 2xx, or one this client cannot read."""


@dataclass
class Response:
    status: int
    nbytes: int  # body bytes received
    body: bytes  # kept only when not compared on the fly (errors, small replies)


class _Protocol(asyncio.Protocol):
    """One connection; one request at a time (``Connection.request``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.in_body = False
        self.remaining = -1  # body bytes still to come; -1: until the connection closes
        self.chunked = False
        self.expect: Body | None = None
        self.received = 0
        self.keep: bytearray = bytearray()
        self.status = 0
        self.close_after = False
        self.mismatch = False
        self.done: asyncio.Future[Response] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def start(self, expect: Body | None) -> asyncio.Future[Response]:
        self.head.clear()
        self.keep = bytearray()
        self.in_body = False
        self.expect = expect
        self.received = 0
        self.mismatch = False
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            self._fail(HttpError(f"unexpected bytes from the server: {data[:80]!r}"))
            return
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            rest = bytes(self.head[end + 4 :])
            self._parse_head(bytes(self.head[:end]))
            if self.done.done():
                return
            data = rest
            if self.remaining == 0:
                self._finish()
                return
            if not data:
                return
        if self.chunked:
            self.keep += data
            if self.keep.endswith(b"0\r\n\r\n"):
                self._finish_chunked()
            return
        if self.remaining >= 0 and len(data) > self.remaining:
            self._fail(HttpError("the server sent more than its Content-Length"))
            return
        expect = self.expect
        if expect is not None and self.status < 300:
            if not self.mismatch and not expect.matches(self.received, data):
                self.mismatch = True
        else:
            self.keep += data
        self.received += len(data)
        if self.remaining > 0:
            self.remaining -= len(data)
            if self.remaining == 0:
                self._finish()

    def _parse_head(self, head: bytes) -> None:
        status_line, _, fields = head.partition(b"\r\n")
        try:
            version, status, *_ = status_line.split(b" ", 2)
            self.status = int(status)
        except ValueError:
            self._fail(HttpError(f"bad status line {status_line[:80]!r}"))
            return
        self.in_body = True
        self.remaining = -1
        self.chunked = False
        self.close_after = version == b"HTTP/1.0"
        for line in fields.lower().split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name == b"content-length":
                self.remaining = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                self.chunked = True
            elif name == b"connection":
                self.close_after = b"close" in value
        if self.chunked:
            self.remaining = -1

    def _finish_chunked(self) -> None:
        data, body, pos = bytes(self.keep), bytearray(), 0
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return  # not the end after all: wait for more
            size = int(data[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            body += data[eol + 2 : eol + 2 + size]
            pos = eol + 4 + size
            if pos > len(data):
                return
        self.keep = body
        if self.expect is not None and self.status < 300:
            self.mismatch = not self.expect.matches(0, bytes(body))
        self.received = len(body)
        self._finish()

    def _finish(self) -> None:
        assert self.done is not None
        expect = self.expect
        if expect is not None and self.status < 300 and not self.chunked:
            self.mismatch = self.mismatch or self.received != expect.size
        if self.close_after and self.transport is not None:
            self.lost = True  # now: the next request must not find it open
            self.transport.close()
        if not self.done.done():
            self.done.set_result(Response(self.status, self.received, bytes(self.keep)))

    def _fail(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.in_body and self.remaining < 0 and not self.chunked and exc is None:
            self._finish()  # a body delimited by the end of the connection
        else:
            self._fail(HttpError(f"connection closed by the server ({exc!r})"))
        if self.writable is not None and not self.writable.done():
            self.writable.set_exception(HttpError("connection lost while sending"))

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def timeout(self) -> None:
        self._fail(HttpError(f"no complete response in {TIMEOUT:.0f} s"))


class Connection:
    """One simulated client: a keep-alive connection, reopened after an error."""

    def __init__(self, endpoint: str, signer: Signer) -> None:
        hostport = endpoint.split("://", 1)[1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port, self.hostport = host, int(port), hostport
        self.signer = signer
        self.protocol: _Protocol | None = None

    async def connect(self) -> None:
        """Open the connection unless it is open (moto, Werkzeug's server, closes it after
        every response: then every request connects anew, as boto3's do)."""
        if self.protocol is None or self.protocol.lost:
            loop = asyncio.get_running_loop()
            _, self.protocol = await loop.create_connection(_Protocol, self.host, self.port)

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None

    async def request(
        self, method: str, path: str, body: Body | None = None, expect: Body | None = None
    ) -> Response:
        """Send one request; a 2xx GET body is compared with ``expect`` as it arrives
        (``HttpError`` if it differs). Raises ``HttpError`` on any non-2xx status."""
        await self.connect()
        protocol = self.protocol
        assert protocol is not None and protocol.transport is not None
        transport = protocol.transport
        payload = body.sha256 if body is not None else EMPTY_SHA256
        signed = self.signer.headers(method, self.hostport, path, payload)
        length = f"Content-Length: {body.size}\r\n" if body is not None else ""
        head = f"{method} {path} HTTP/1.1\r\n{signed}{length}\r\n".encode()
        done = protocol.start(expect)
        timer = asyncio.get_running_loop().call_later(TIMEOUT, protocol.timeout)
        try:
            if body is None or body.size <= SLICE:
                transport.write(head + body.head + body.tail if body is not None else head)
            else:
                transport.write(head)
                view = memoryview(body.head)
                for start in range(0, len(view), SLICE):
                    transport.write(view[start : start + SLICE])
                    if protocol.writable is not None and not protocol.writable.done():
                        await protocol.writable
                transport.write(body.tail)
            response = await done
        except BaseException:
            self.close()
            raise
        finally:
            timer.cancel()
        if protocol.lost:
            self.protocol = None
        if response.status >= 300:
            raise HttpError(f"{method} {path}: HTTP {response.status} {response.body[:300]!r}")
        if protocol.mismatch:
            raise HttpError(f"{method} {path}: body differs from what was PUT")
        return response

    async def put(self, bucket: str, key: str, body: Body) -> int:
        await self.request("PUT", uri_path(bucket, key), body=body)
        return body.size

    async def get(self, bucket: str, key: str, expect: Body) -> int:
        return (await self.request("GET", uri_path(bucket, key), expect=expect)).nbytes


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (it is a dependency of Stratum), else asyncio's."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    return loop
