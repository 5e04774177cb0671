"""The S3 client that pushes versions to a target: aiohttp on the event loop, SigV4 by botocore.

Bodies stream from the source's volume into the request (``UNSIGNED-PAYLOAD``: the body is
not hashed before it is sent, so it never sits whole in memory); what protects them on the
way is the Content-MD5 or checksum header the target verifies. Only S3's own operations are
used (path-style addressing), so any S3 store can be a target; a Stratum target also takes
the replica headers of :mod:`stratum.s3.replica_ops`, which others ignore.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import aiohttp
import yarl
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from stratum.config import Credentials, ReplicationTarget

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
_NS = re.compile(r"^\{[^}]*\}")


class PushError(Exception):
    """The target refused a request or could not be reached."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def permanent(self) -> bool:
        """A refusal that retrying soon will not change (4xx other than throttling)."""
        return 400 <= self.status < 500 and self.status not in (408, 429)


class _UnsignedPayload(S3SigV4Auth):  # type: ignore[misc]
    def _should_sha256_sign_payload(self, request: Any) -> bool:
        return False


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ListedVersion:
    key: str
    version_id: str
    marker: bool
    etag: str
    size: int


class TargetClient:
    """Requests to one target's endpoint, signed with its keys."""

    def __init__(self, target: ReplicationTarget, credentials: Credentials | None) -> None:
        self.target = target
        self._credentials = credentials
        self._boto: BotoCredentials | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._credentials is not None:
            self._boto = BotoCredentials(self._credentials.access_key, self._credentials.secret_key)
        else:  # the default AWS chain (environment, ~/.aws, an instance role): blocking
            import botocore.session

            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(
                None, lambda: botocore.session.get_session().get_credentials()
            )
            self._boto = found
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, bucket: str, key: str = "", query: str = "") -> str:
        base = self.target.endpoint.rstrip("/")
        path = "/" + quote(bucket, safe="")
        if key:
            path += "/" + quote(self.target.prefix + key, safe="/~")
        return base + path + (f"?{query}" if query else "")

    def _sign(self, method: str, url: str, headers: Mapping[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        if self._boto is not None:
            _UnsignedPayload(self._boto, "s3", self.target.region).add_auth(request)
        return dict(request.headers.items())

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: AsyncIterable[bytes] | bytes | None = None,
    ) -> Answer:
        """Send one request; raises :class:`PushError` unless the answer is a 2xx."""
        assert self._session is not None, "start() first"
        signed = self._sign(method, url, headers or {})
        try:
            async with self._session.request(
                method, yarl.URL(url, encoded=True), headers=signed, data=body
            ) as response:
                data = await response.read()
                answer = Answer(response.status, response.headers.copy(), data)  # case-insensitive
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PushError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= answer.status < 300:
            code, message = _error_of(answer.body)
            raise PushError(
                f"{method} {url}: {answer.status} {code} {message}".strip(), answer.status, code
            )
        return answer

    # -- the operations ---------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        size: int,
        headers: Mapping[str, str],
    ) -> Answer:
        headers = {**headers, "Content-Length": str(size)}
        return await self.request("PUT", self.url(bucket, key), headers, body)

    async def delete(self, bucket: str, key: str, headers: Mapping[str, str]) -> Answer:
        return await self.request("DELETE", self.url(bucket, key), headers)

    async def head_version(self, bucket: str, key: str, version_id: str) -> bool:
        """Whether the target holds this version (object or delete marker)."""
        url = self.url(bucket, key, f"versionId={quote(version_id)}")
        try:
            await self.request("HEAD", url)
        except PushError as exc:
            if exc.status == 405:  # a delete marker named by its version id
                return True
            if exc.status in (400, 404):
                return False
            raise
        return True

    async def create_upload(self, bucket: str, key: str, headers: Mapping[str, str]) -> str:
        answer = await self.request("POST", self.url(bucket, key, "uploads"), headers, b"")
        upload_id = _find(answer.body, "UploadId")
        if not upload_id:
            raise PushError("CreateMultipartUpload answered no UploadId")
        return upload_id

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: AsyncIterable[bytes],
        size: int,
        md5: str = "",
        checksum: tuple[str, str] | None = None,
    ) -> str:
        """Send a part; ``md5``: its Content-MD5 (base64), if known; ``checksum``: its
        (algorithm, base64 value) of the upload's checksum, which the target verifies."""
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
        headers = {"Content-Length": str(size)}
        if checksum is not None:
            algorithm, value = checksum
            headers[f"x-amz-checksum-{algorithm}"] = value
        if md5:
            headers["Content-MD5"] = md5
        answer = await self.request("PUT", self.url(bucket, key, query), headers, body)
        return answer.headers.get("ETag", "")

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        etags: Sequence[str],
        headers: Mapping[str, str],
        checksums: tuple[str, Sequence[str]] | None = None,
    ) -> Answer:
        """CompleteMultipartUpload; ``checksums``: the upload's algorithm and each part's
        value of it, listed with the parts as S3 asks of an upload made with a checksum."""
        algorithm, values = checksums or ("", [""] * len(etags))
        element = f"Checksum{algorithm.upper()}"
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>"
            + (f"<{element}>{value}</{element}>" if value else "")
            + "</Part>"
            for n, (etag, value) in enumerate(zip(etags, values, strict=True), 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        query = f"uploadId={quote(upload_id, safe='')}"
        return await self.request("POST", self.url(bucket, key, query), headers, body)

    async def put_version_document(
        self,
        bucket: str,
        key: str,
        version_id: str,
        subresource: str,
        document: bytes,
        headers: Mapping[str, str],
    ) -> Answer:
        """PUT a version's ``?retention`` or ``?legal-hold`` document (with its Content-MD5,
        which S3 asks for)."""
        query = f"{subresource}&versionId={quote(version_id, safe='')}"
        md5 = base64.b64encode(hashlib.md5(document).digest()).decode()
        headers = {**headers, "Content-MD5": md5, "Content-Type": "application/xml"}
        return await self.request("PUT", self.url(bucket, key, query), headers, document)

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        query = f"uploadId={quote(upload_id, safe='')}"
        await self.request("DELETE", self.url(bucket, key, query))

    async def list_versions(
        self, bucket: str, key_marker: str = "", version_marker: str = "", max_keys: int = 1000
    ) -> tuple[list[ListedVersion], str, str]:
        """A page of the target's versions under the prefix: (versions, next key marker,
        next version marker); markers empty on the last page. Keys lose the prefix."""
        query = f"versions&max-keys={max_keys}&prefix={quote(self.target.prefix, safe='')}"
        if key_marker:
            query += f"&key-marker={quote(self.target.prefix + key_marker, safe='')}"
            query += f"&version-id-marker={quote(version_marker, safe='')}"
        answer = await self.request("GET", self.url(bucket, query=query))
        root = ElementTree.fromstring(answer.body)
        out: list[ListedVersion] = []
        for element in root:
            tag = _NS.sub("", element.tag)
            if tag not in ("Version", "DeleteMarker"):
                continue
            fields = {_NS.sub("", child.tag): child.text or "" for child in element}
            out.append(
                ListedVersion(
                    fields.get("Key", "")[len(self.target.prefix) :],
                    fields.get("VersionId", ""),
                    tag == "DeleteMarker",
                    fields.get("ETag", ""),
                    int(fields.get("Size", "0") or 0),
                )
            )
        truncated = _find(answer.body, "IsTruncated") == "true"
        if not truncated:
            return out, "", ""
        next_key = _find(answer.body, "NextKeyMarker")[len(self.target.prefix) :]
        return out, next_key, _find(answer.body, "NextVersionIdMarker")


def _find(body: bytes, name: str) -> str:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ""
    for element in root.iter():
        if _NS.sub("", element.tag) == name:
            return element.text or ""
    return ""


def _error_of(body: bytes) -> tuple[str, str]:
    return _find(body, "Code"), _find(body, "Message")
