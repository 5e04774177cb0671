"""The console's S3 and admin API client: requests to the server's own port, over loopback.

Every call names the credentials it is signed with: the logged-in user's for buckets and
objects (the server decides what they may do, as for any S3 client), the root user's for the
admin API (``/_stratum/``), which the console calls only for a root session. Answers are
parsed from S3's XML; a refusal raises :class:`S3Failure` with S3's error code, so the pages
show what the server said.
"""

from __future__ import annotations

import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from stratum.console.signing import Credentials, object_path, signed_headers
from stratum.util.clock import Clock

LIST_PAGE = 100  # keys per listing page: a page stays small and quick at any bucket size


class S3Failure(Exception):
    """The server refused a request: S3's error code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status
        self.message = message


@dataclass
class Entry:
    """One row of a listing: an object, or a common prefix (a "folder")."""

    key: str
    size: int = 0
    modified: str = ""
    storage_class: str = ""
    prefix: bool = False


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    next_token: str = ""


@dataclass
class Version:
    key: str
    version_id: str
    latest: bool
    delete_marker: bool
    size: int
    modified: str


def _strip(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(node: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in node if _strip(c.tag) == name]


def _text(node: ET.Element, name: str, default: str = "") -> str:
    for child in node:
        if _strip(child.tag) == name:
            return child.text or ""
    return default


# What a refusal without a body (the answer to a HEAD) stands for.
BODILESS = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    412: "PreconditionFailed",
}


def parse_error(status: int, body: bytes) -> S3Failure:
    if not body:
        return S3Failure(BODILESS.get(status, f"HTTP{status}"), status)
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return S3Failure(f"HTTP{status}", status, body[:200].decode(errors="replace"))
    return S3Failure(_text(root, "Code", f"HTTP{status}"), status, _text(root, "Message"))


class S3Client:
    """Signed requests to ``endpoint`` (``http[s]://127.0.0.1:PORT``)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        clock: Clock,
        *,
        trust: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        """``trust``: the context an https endpoint is checked with, asked per request."""
        self.endpoint = endpoint.rstrip("/")
        self.host = self.endpoint.partition("://")[2]
        self.region = region
        self.clock = clock
        self._trust = trust
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No overall timeout: uploads and downloads of large objects take what they take.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def request(
        self,
        creds: Credentials,
        method: str,
        bucket: str = "",
        key: str = "",
        query: Sequence[tuple[str, str]] = (),
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        payload_hash: str | None = None,
        raw_path: str | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed request; yields the response once it succeeded (2xx), else raises
        :class:`S3Failure`. ``data`` may be bytes or an async iterable (streamed)."""
        path = raw_path if raw_path is not None else object_path(bucket, key)
        extra = {"payload_hash": payload_hash} if payload_hash else {}
        signed = signed_headers(
            creds,
            method,
            self.host,
            path,
            query,
            region=self.region,
            now=self.clock.now(),
            headers=headers,
            **extra,
        )
        url = f"{self.endpoint}{path}"
        if query:
            url += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query)
        async with self.session.request(
            method,
            url,
            headers=signed,
            data=data,
            ssl=self._trust() if self._trust is not None else True,
            skip_auto_headers=("Host",),
        ) as response:
            if response.status >= 300:
                raise parse_error(response.status, await response.read())
            yield response

    async def call(
        self,
        creds: Credentials,
        method: str,
        bucket: str = "",
        key: str = "",
        query: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> bytes:
        async with self.request(creds, method, bucket, key, query, **kwargs) as response:
            return await response.read()

    async def admin(
        self, root: Credentials, method: str, path: str, query: Sequence[tuple[str, str]] = ()
    ) -> Any:
        """An admin API call (``/_stratum/<path>``); the decoded JSON answer."""
        body = await self.call(root, method, query=query, raw_path=f"/_stratum/{path}")
        return json.loads(body)

    # -- S3 operations the pages use ----------------------------------------------------

    async def list_buckets(self, creds: Credentials) -> list[tuple[str, str]]:
        """(name, creation date) of the buckets the user owns."""
        root = ET.fromstring(await self.call(creds, "GET"))
        return [
            (_text(b, "Name"), _text(b, "CreationDate"))
            for buckets in _children(root, "Buckets")
            for b in _children(buckets, "Bucket")
        ]

    async def list_objects(
        self, creds: Credentials, bucket: str, prefix: str = "", token: str = ""
    ) -> Listing:
        query = [
            ("list-type", "2"),
            ("delimiter", "/"),
            ("max-keys", str(LIST_PAGE)),
            ("prefix", prefix),
        ]
        if token:
            query.append(("continuation-token", token))
        root = ET.fromstring(await self.call(creds, "GET", bucket, query=query))
        listing = Listing(next_token=_text(root, "NextContinuationToken"))
        for p in _children(root, "CommonPrefixes"):
            listing.entries.append(Entry(_text(p, "Prefix"), prefix=True))
        for c in _children(root, "Contents"):
            listing.entries.append(
                Entry(
                    _text(c, "Key"),
                    int(_text(c, "Size", "0")),
                    _text(c, "LastModified"),
                    _text(c, "StorageClass"),
                )
            )
        listing.entries.sort(key=lambda e: e.key)
        return listing

    async def list_versions(self, creds: Credentials, bucket: str, key: str) -> list[Version]:
        """The versions of one key, newest first (ListObjectVersions)."""
        query = [("versions", ""), ("prefix", key), ("max-keys", str(LIST_PAGE))]
        root = ET.fromstring(await self.call(creds, "GET", bucket, query=query))
        out = []
        for node in root:
            kind = _strip(node.tag)
            if kind not in ("Version", "DeleteMarker") or _text(node, "Key") != key:
                continue
            out.append(
                Version(
                    key,
                    _text(node, "VersionId"),
                    _text(node, "IsLatest") == "true",
                    kind == "DeleteMarker",
                    int(_text(node, "Size", "0")),
                    _text(node, "LastModified"),
                )
            )
        return out

    async def bucket_setting(self, creds: Credentials, bucket: str, name: str) -> dict[str, str]:
        """A bucket sub-resource (``versioning``, ``object-lock``) as a flat dict of its
        leaf elements ({} when the server has none)."""
        root = ET.fromstring(await self.call(creds, "GET", bucket, query=[(name, "")]))
        return {_strip(e.tag): e.text or "" for e in root.iter() if len(e) == 0 and e is not root}

    async def head_object(self, creds: Credentials, bucket: str, key: str) -> dict[str, str]:
        async with self.request(creds, "HEAD", bucket, key) as response:
            return {k.lower(): v for k, v in response.headers.items()}

    async def create_upload(
        self, creds: Credentials, bucket: str, key: str, content_type: str
    ) -> str:
        body = await self.call(
            creds,
            "POST",
            bucket,
            key,
            [("uploads", "")],
            headers={"content-type": content_type},
        )
        return _text(ET.fromstring(body), "UploadId")

    async def complete_upload(
        self, creds: Credentials, bucket: str, key: str, upload_id: str, etags: Sequence[str]
    ) -> None:
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{_xml_escape(etag)}</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        document = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        await self.call(creds, "POST", bucket, key, [("uploadId", upload_id)], data=document)


def _quote(
    text: str, safe: str = "", encoding: str | None = None, errors: str | None = None
) -> str:
    return quote(text, safe="-_.~", encoding=encoding, errors=errors)


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
