"""The cold tier: volumes encrypted (:mod:`stratum.block.coldformat`) in any S3-compatible bucket.

One remote object per volume, named ``<prefix><volume id>``; nothing about the object (bucket,
key, type, checksums) is visible to the provider. Objects up to one part (8 MiB stored) go up
in one PUT, larger ones as a multipart upload streamed part by part (encryption of the next
part overlaps the upload of the previous one), never whole in memory. Reads fetch only the
encrypted chunks covering the requested range, with ranged GETs of at most 64 MiB, and
authenticate every chunk before yielding any of its bytes.

boto3 blocks: every call runs in the executor given. The client sends checksums only when an
operation requires them (Backblaze B2 and Cloudflare R2 reject botocore's newer default
checksum headers); the AES-GCM tags protect the data end to end instead.

Location record (what metadata stores for a cold volume, :class:`ColdLocation`
``to_dict()``)::

    {"v": 1, "key": "<prefix><volume id>", "size": <plaintext bytes>,
     "stored_size": <remote object bytes>, "chunk_size": <plaintext bytes per chunk>,
     "data_offset": <where chunk 0 starts>, "header": "<the 52-byte header, hex>"}

A read rebuilds the header from the record, so it needs no request for it, and any change to
the remote header makes every chunk fail authentication. The key file (``load_or_create_key``)
is 32 random bytes, mode 0600; losing it loses every cold object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from stratum.block.coldformat import (
    DEFAULT_CHUNK_SIZE,
    HEADER_LEN,
    MAX_CHUNK_SIZE,
    TAG_LEN,
    ChunkOpener,
    ColdEncryptor,
    ColdFormatError,
    ColdHeader,
    WrongColdKey,
    check_key,
)
from stratum.block.errors import StorageError
from stratum.config import ColdTierConfig, Credentials
from stratum.util import keyfile

__all__ = [
    "DEFAULT_GET_SPAN",
    "DEFAULT_PART_SIZE",
    "LOCATION_VERSION",
    "ColdFormatError",
    "ColdKeyError",
    "ColdLocation",
    "ColdObjectInfo",
    "ColdObjectMissing",
    "ColdStore",
    "ColdStoreError",
    "WrongColdKey",
    "load_or_create_key",
]

log = logging.getLogger("stratum.cold")

LOCATION_VERSION = 1
MIB = 1 << 20
DEFAULT_PART_SIZE = 8 * MIB  # S3's minimum is 5 MiB; stored objects up to this go in one PUT
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000  # S3's limit per multipart upload
DEFAULT_GET_SPAN = 64 * MIB  # stored bytes per ranged GET
READ_RETRIES = 3  # a body that breaks off mid-stream is fetched again from the next chunk
_DESCRIBE_READ = 64 * 1024  # first GET of describe(): header and (usually) the metadata

T = TypeVar("T")


class ColdStoreError(StorageError):
    """The cold store could not be reached or refused a request (names the operation, the
    remote key and the provider's error code; never a secret)."""


class ColdObjectMissing(ColdStoreError):
    """The remote object of a cold volume does not exist."""


class ColdKeyError(StorageError):
    """The cold key file is unusable (wrong size, unreadable)."""


# --- the key file ---------------------------------------------------------------------------


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte cold key from ``path``, created (random, mode 0600, durably) if absent.

    Never replaces an existing file (:mod:`stratum.util.keyfile`). A file of another size is
    refused (``ColdKeyError``) rather than "repaired": cold objects written with the lost key
    would be unreadable. Blocking.
    """
    try:
        return keyfile.load_or_create_key(path, "the cold tier's encryption key")
    except keyfile.KeyFileError as exc:
        raise ColdKeyError(str(exc)) from None


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdLocation:
    """Where a cold volume is and how to read it: the record metadata keeps."""

    key: str  # remote object key
    header: ColdHeader

    @property
    def size(self) -> int:
        return self.header.size

    @property
    def stored_size(self) -> int:
        return self.header.stored_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": LOCATION_VERSION,
            "key": self.key,
            "size": self.header.size,
            "stored_size": self.header.stored_size,
            "chunk_size": self.header.chunk_size,
            "data_offset": self.header.data_offset,
            "header": self.header.pack().hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColdLocation:
        if data.get("v") != LOCATION_VERSION:
            raise ColdFormatError(f"cold location record version {data.get('v')!r} unknown")
        try:
            raw = bytes.fromhex(data["header"])
            key = data["key"]
        except (KeyError, TypeError, ValueError):
            raise ColdFormatError("cold location record lacks its key or header") from None
        header = ColdHeader.unpack(raw)
        if len(raw) != HEADER_LEN or header.size != data.get("size"):
            raise ColdFormatError(f"cold location record of {key} is inconsistent")
        return cls(key, header)


@dataclass(frozen=True)
class ColdObjectInfo:
    """What the provider says about a remote object."""

    key: str
    volume_id: str  # the key without the prefix
    stored_size: int
    etag: str
    last_modified: float  # seconds since the epoch


# --- the store ------------------------------------------------------------------------------


class ColdStore:
    """Encrypted volumes in a remote S3 bucket. Construct at start-up (building the boto3
    client reads its model files: blocking); every other method is async."""

    def __init__(
        self,
        config: ColdTierConfig,
        credentials: Credentials | None,
        key: bytes,
        executor: concurrent.futures.Executor,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        get_span: int = DEFAULT_GET_SPAN,
    ) -> None:
        check_key(key)
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.endpoint = config.endpoint
        self.chunk_size = chunk_size
        self.part_size = part_size
        self.get_span = get_span
        self._key = bytes(key)
        self._executor = executor
        keys: dict[str, str] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials.access_key,
                "aws_secret_access_key": credentials.secret_key,
            }
        # Imported here: boto3 takes ~0.5 s to import, and most servers have no cold tier.
        import boto3
        from botocore.config import Config as BotoConfig

        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint or None,
            region_name=config.region,
            config=BotoConfig(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
            **keys,
        )

    def __repr__(self) -> str:
        return (
            f"ColdStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"
        )

    def remote_key(self, volume_id: str) -> str:
        return f"{self.prefix}{volume_id}"

    async def close(self) -> None:
        await self._run(self._client.close)

    # -- plumbing ------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _call(self, what: str, key: str, method: str, **params: Any) -> Any:
        """One S3 call in the executor, its errors translated."""
        try:
            return await self._run(getattr(self._client, method), Bucket=self.bucket, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "?"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            where = f"{what} s3://{self.bucket}/{key}" if key else f"{what} s3://{self.bucket}"
            if key and code in ("NoSuchKey", "404", "NotFound"):
                raise ColdObjectMissing(f"cold store: {where}: no such object") from exc
            if code == "InvalidRange":
                raise ColdFormatError(
                    f"cold store: {where}: shorter than recorded (truncated or replaced?)"
                ) from exc
            message = error.get("Message") or ""
            raise ColdStoreError(
                f"cold store: {where}: {code} (HTTP {status}) {message}".rstrip()
            ) from exc
        except BotoCoreError as exc:
            raise ColdStoreError(f"cold store: {what} s3://{self.bucket}/{key}: {exc}") from exc

    # -- API -----------------------------------------------------------------------------

    async def probe(self) -> None:
        """``ColdStoreError`` unless the bucket is reachable with these credentials."""
        await self._call("probe", "", "head_bucket")

    async def put(
        self,
        volume_id: str,
        chunks: AsyncIterable[bytes],
        size: int,
        meta: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Encrypt and upload ``size`` bytes from ``chunks``; the location record to keep.

        ``meta`` (bucket, key, content type, md5...) is stored encrypted with the data, with
        ``volume_id`` added. ``ValueError`` if the body is not ``size`` bytes long; nothing
        remains remotely after a failure (a multipart upload is aborted).
        """
        key = self.remote_key(volume_id)
        enc = ColdEncryptor(self._key, size, {**meta, "volume_id": volume_id}, self.chunk_size)
        stored = enc.header.stored_size
        part_size = max(self.part_size, -(-stored // MAX_PARTS // MIB) * MIB)
        if stored <= part_size:
            plain = bytearray()
            async for piece in chunks:
                plain += piece
                if len(plain) > size:
                    raise ValueError(f"body is longer than the declared {size} bytes")
            body = await self._run(lambda: enc.prefix + enc.feed(plain) + enc.finish())
            await self._call(
                "put", key, "put_object", Key=key, Body=body, ContentType="application/octet-stream"
            )
        else:
            await self._put_multipart(key, enc, chunks, part_size)
        info = await self._head(key)
        if info.stored_size != stored:
            await self._call("delete", key, "delete_object", Key=key)
            raise ColdStoreError(
                f"cold store: put s3://{self.bucket}/{key}: stored {info.stored_size} bytes,"
                f" sent {stored}"
            )
        log.debug("cold put %s (%d bytes, %d stored)", key, size, stored)
        return ColdLocation(key, enc.header).to_dict()

    async def _put_multipart(
        self, key: str, enc: ColdEncryptor, chunks: AsyncIterable[bytes], part_size: int
    ) -> None:
        created = await self._call(
            "put", key, "create_multipart_upload", Key=key, ContentType="application/octet-stream"
        )
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        inflight: asyncio.Task[None] | None = None

        async def upload(number: int, data: bytes) -> None:
            answer = await self._call(
                "put",
                key,
                "upload_part",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        async def send(data: bytes) -> None:
            nonlocal inflight
            if inflight is not None:
                await inflight  # at most one part uploading while the next one fills
            inflight = asyncio.create_task(upload(len(parts) + 1, data))

        out = bytearray(enc.prefix)
        plain = bytearray()
        try:
            async for piece in chunks:
                plain += piece
                if len(out) + len(plain) < part_size:
                    continue
                data, plain = plain, bytearray()
                out += await self._run(enc.feed, data)
                while len(out) >= part_size:
                    await send(bytes(out[:part_size]))
                    del out[:part_size]
            data, plain = plain, bytearray()
            out += await self._run(lambda: enc.feed(data) + enc.finish())
            while out:
                await send(bytes(out[:part_size]))
                del out[:part_size]
            if inflight is not None:
                await inflight
            parts.sort(key=lambda part: int(part["PartNumber"]))
            await self._call(
                "put",
                key,
                "complete_multipart_upload",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if inflight is not None and not inflight.done():
                await asyncio.wait([inflight])  # let it settle, so the abort is the last word
            try:
                await self._call(
                    "abort", key, "abort_multipart_upload", Key=key, UploadId=upload_id
                )
            except Exception as exc:
                log.warning("could not abort the multipart upload of %s: %s", key, exc)
            raise

    async def read(self, location: Mapping[str, Any], start: int, end: int) -> AsyncIterator[bytes]:
        """Plaintext bytes ``[start, end)`` of a cold volume, streamed chunk by chunk.

        ``WrongColdKey`` before any request if the volume was encrypted with another key;
        ``ColdFormatError`` if a chunk fails authentication (nothing of it is yielded).
        """
        loc = ColdLocation.from_dict(location)
        header = loc.header
        opener = ChunkOpener.create(self._key, header, where=f"s3://{self.bucket}/{loc.key}")
        wanted = header.chunks_for(start, end)
        per_get = max(1, self.get_span // (header.chunk_size + TAG_LEN))
        index, failures = wanted.start, 0
        while index < wanted.stop:
            span = range(index, min(wanted.stop, index + per_get))
            offset, length = header.span(span)
            answer = await self._call(
                "read",
                loc.key,
                "get_object",
                Key=loc.key,
                Range=f"bytes={offset}-{offset + length - 1}",
            )
            body = answer["Body"]
            try:
                if answer.get("ContentLength") != length:
                    raise ColdFormatError(
                        f"cold object s3://{self.bucket}/{loc.key}: asked for {length} bytes at"
                        f" {offset}, got {answer.get('ContentLength')} (truncated or replaced?)"
                    )
                for chunk in span:
                    try:
                        plain = await self._run(_read_chunk, body, opener, chunk)
                    except (BotoCoreError, OSError, _ShortRead) as exc:
                        failures += 1
                        if failures > READ_RETRIES:
                            raise ColdStoreError(
                                f"cold store: read s3://{self.bucket}/{loc.key}: {exc}"
                            ) from exc
                        log.warning("cold read of %s broke off (%s); resuming", loc.key, exc)
                        break
                    index = chunk + 1
                    base = chunk * header.chunk_size
                    piece = plain[max(0, start - base) : max(0, end - base)]
                    if piece:
                        yield piece
            finally:
                body.close()

    async def delete(self, location: Mapping[str, Any]) -> None:
        """Remove a cold volume's remote object (done if it is already gone)."""
        key = ColdLocation.from_dict(location).key
        await self._call("delete", key, "delete_object", Key=key)
        log.debug("cold delete %s", key)

    async def head(self, location: Mapping[str, Any]) -> ColdObjectInfo:
        """The remote object's size, ETag and date; ``ColdObjectMissing`` if it is gone."""
        return await self._head(ColdLocation.from_dict(location).key)

    async def _head(self, key: str) -> ColdObjectInfo:
        answer = await self._call("head", key, "head_object", Key=key)
        return self._info(key, answer["ContentLength"], answer.get("ETag", ""), answer)

    def _info(self, key: str, size: int, etag: str, answer: Mapping[str, Any]) -> ColdObjectInfo:
        modified = answer.get("LastModified")
        return ColdObjectInfo(
            key=key,
            volume_id=key.removeprefix(self.prefix),
            stored_size=int(size),
            etag=str(etag).strip('"'),
            last_modified=modified.timestamp() if modified is not None else 0.0,
        )

    async def describe(self, volume_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(location record, decrypted metadata) of a remote object, read from the object
        alone: how lost metadata is rebuilt from the cold bucket."""
        key = self.remote_key(volume_id)
        answer = await self._call(
            "describe", key, "get_object", Key=key, Range=f"bytes=0-{_DESCRIBE_READ - 1}"
        )
        prefix = await self._run(_read_all, answer["Body"])
        header = ColdHeader.unpack(prefix)
        opener = ChunkOpener.create(self._key, header, where=f"s3://{self.bucket}/{key}")
        if len(prefix) < header.data_offset:
            rest = await self._call(
                "describe",
                key,
                "get_object",
                Key=key,
                Range=f"bytes={len(prefix)}-{header.data_offset - 1}",
            )
            prefix += await self._run(_read_all, rest["Body"])
        total = str(answer.get("ContentRange", "")).rpartition("/")[2]
        if total.isdigit() and int(total) != header.stored_size:
            raise ColdFormatError(
                f"cold object s3://{self.bucket}/{key} is {total} bytes, its header says"
                f" {header.stored_size} (truncated or extended)"
            )
        meta = opener.open_meta(prefix[HEADER_LEN : header.data_offset])
        return ColdLocation(key, header).to_dict(), meta

    async def list_volumes(self) -> AsyncIterator[ColdObjectInfo]:
        """Every object under the prefix, in key order, a page at a time."""
        params: dict[str, Any] = {"Prefix": self.prefix}
        while True:
            page = await self._call("list", "", "list_objects_v2", **params)
            for item in page.get("Contents", []):
                yield self._info(item["Key"], item["Size"], item.get("ETag", ""), item)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token


class _ShortRead(Exception):
    """A response body ended before the bytes its Content-Length announced."""


def _read_chunk(body: Any, opener: ChunkOpener, index: int) -> bytes:
    """Read chunk ``index`` from a streaming body and open it (blocking: in the executor)."""
    want = opener.header.sealed_len(index)
    parts: list[bytes] = []
    got = 0
    while got < want:
        piece = body.read(want - got)
        if not piece:
            raise _ShortRead(f"body ended {want - got} bytes early in chunk {index}")
        parts.append(piece)
        got += len(piece)
    return opener.open(index, b"".join(parts))


def _read_all(body: Any) -> bytes:
    try:
        return bytes(body.read())
    finally:
        body.close()
