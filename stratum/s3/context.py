"""What a handler receives: the parsed request and the services it may call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from stratum.auth import AuthResult
from stratum.config import ReplicationTarget
from stratum.s3 import xml
from stratum.s3.authorize import RequestAccess
from stratum.s3.router import Endpoint
from stratum.service.multipart import MultipartService
from stratum.service.objects import ObjectService
from stratum.service.users import User
from stratum.util.clock import Clock


class _CoalescingResponse(web.StreamResponse):
    """A streamed response whose headers leave with its first body bytes, in one send.

    aiohttp sends a StreamResponse's headers on their own (for server-sent events and the
    like), so a small GET would cost two socket writes where one will do. Headers still go
    out at once when there is no body (``write_eof``).
    """

    _send_headers_immediately = False


@dataclass(frozen=True)
class ApiSettings:
    region: str
    domain: str
    access_log: bool = True
    sigv2: bool = True  # accept Signature Version 2 ([server] sigv2)
    body_timeout: float = 30.0  # seconds a body read may wait for data ([server] body_timeout)
    replication_keys: frozenset[str] = frozenset()  # may write replicas (stratum.s3.replica_ops)
    # the [replication.<name>] targets (Get/PutBucketReplication's rules name them)
    replication_targets: tuple[ReplicationTarget, ...] = ()


@dataclass
class ReqCtx:
    """One request after routing and authentication (Garage's ReqCtx)."""

    request: web.Request
    endpoint: Endpoint
    user: User
    auth: AuthResult
    params: dict[str, str]  # query parameters, first occurrence of each name
    request_id: str
    service: ObjectService
    multipart: MultipartService
    settings: ApiSettings
    clock: Clock
    bytes_in: int = 0
    bytes_out: int = 0
    # set by a handler before it sends headers it cannot take back (streamed GET)
    streaming: bool = False
    # the client sent "Expect: 100-continue" and waits for our go before sending its body
    continue_pending: bool = False
    # the access decision (stratum.s3.authorize); None only for requests made in tests
    access: RequestAccess | None = None
    # headers every response to this request carries (CORS), streamed or not
    response_headers: dict[str, str] = field(default_factory=dict)

    def start_response(self, status: int, headers: dict[str, str]) -> web.StreamResponse:
        """A streamed response whose headers carry the request id like every other."""
        headers.update(self.response_headers)
        headers["x-amz-request-id"] = self.request_id
        headers["x-amz-id-2"] = self.request_id
        headers["Server"] = "Stratum"
        return _CoalescingResponse(status=status, headers=headers)

    async def want_body(self) -> None:
        """Call before reading the request body: answers a pending ``100-continue``.

        Deferred to here, not sent on arrival, so a request refused before its body is read
        (bad signature, no such bucket, too large) gets its error without the client
        uploading anything first, as with AWS.
        """
        if self.continue_pending:
            self.continue_pending = False
            await send_continue(self.request)

    @property
    def bucket(self) -> str:
        assert self.endpoint.bucket is not None, "router guarantees a bucket for this operation"
        return self.endpoint.bucket

    @property
    def key(self) -> str:
        assert self.endpoint.key is not None, "router guarantees a key for this operation"
        return self.endpoint.key

    @property
    def acting_id(self) -> str:
        """The owner id the object service is called with: the bucket owner's once access
        is granted (the requester's own for its buckets, or when there is no bucket)."""
        return self.user.canonical_id if self.access is None else self.access.acting_id

    @property
    def owner(self) -> xml.Owner:
        """The requester, or the owner of the bucket it was let into (what listings show)."""
        access = self.access
        if access is not None and access.acting_id not in ("", self.user.canonical_id):
            return xml.Owner(access.acting_id, access.display_names().get(access.acting_id, ""))
        return xml.Owner(self.user.canonical_id, self.user.display_name)

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)


async def send_continue(request: web.Request) -> None:
    """``100 Continue``: the client that sent ``Expect: 100-continue`` may send its body."""
    writer = request.writer
    await writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    writer.output_size = 0  # the interim response is no part of the reply's size


Handler = Callable[[ReqCtx], Awaitable[web.StreamResponse]]
