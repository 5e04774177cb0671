"""The S3 HTTP server: one handler, one dispatch table, one error renderer.

Every S3 request goes through :meth:`S3Server.handle`:

1. parse once: the router turns method, host, path and query into an ``Endpoint``;
2. authenticate (:func:`stratum.auth.authenticate`) and find the user;
3. dispatch through :data:`HANDLERS` (operation name -> handler);
4. translate any error into an :class:`S3Error` and render it as XML, here and only here;
5. log one line (method, operation, status, bytes, duration, request id) and report the
   finished request to whoever listens (:attr:`S3Server.on_finished`: the metrics).

The web layer (:mod:`stratum.web`) decides which requests are S3: it answers metrics and
health checks itself and runs the admin API through :meth:`S3Server.handle_as`, which gives
it the same envelope (request id, XML errors, log line, report).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import ClientPayloadError, web

from stratum import auth
from stratum.block.errors import DiskWriteError, StorageError, StorageFull
from stratum.meta.store import MetaFull
from stratum.s3 import (
    acl_ops,
    attributes_ops,
    bucket_ops,
    cors,
    honest,
    lifecycle_ops,
    list_ops,
    lock_ops,
    multipart_ops,
    object_ops,
    policy_ops,
    post_ops,
    replication_ops,
    tagging_ops,
    xml,
)
from stratum.s3.authorize import ANONYMOUS, anonymous_auth, authorize, request_facts
from stratum.s3.context import ApiSettings, Handler, ReqCtx
from stratum.s3.errors import S3Error, as_s3_error
from stratum.s3.router import (
    PREFLIGHT,
    UNSUPPORTED,
    UNSUPPORTED_SERVICE_ACTION,
    Endpoint,
    route,
    virtual_host_bucket,
)
from stratum.s3.router import unsupported_error as router_unsupported
from stratum.service import errors as model_errors
from stratum.service import locks as model_locks
from stratum.service import multipart as model_multipart
from stratum.service import replicas as model_replicas
from stratum.service import versioning as model_versioning
from stratum.service.multipart import MultipartService
from stratum.service.objects import ObjectService
from stratum.service.users import User, UserDirectory
from stratum.util.clock import Clock
from stratum.util.pacing import note_request
from stratum.util.prng import process_random

log = logging.getLogger("stratum.s3")
access_log = logging.getLogger("stratum.access")

HANDLERS: Mapping[str, Handler] = {
    **bucket_ops.HANDLERS,
    **list_ops.HANDLERS,
    **object_ops.HANDLERS,
    **multipart_ops.HANDLERS,
    **tagging_ops.HANDLERS,
    **attributes_ops.HANDLERS,
    **acl_ops.HANDLERS,
    **policy_ops.HANDLERS,
    **lifecycle_ops.HANDLERS,
    **lock_ops.HANDLERS,
    **cors.HANDLERS,
    **replication_ops.HANDLERS,
}

# The object service's conditions, as S3 names them.
_MODEL_ERRORS: Mapping[type[model_errors.ObjectServiceError], str] = {
    model_errors.NoSuchBucket: "NoSuchBucket",
    model_errors.NoSuchKey: "NoSuchKey",
    model_errors.BucketNotEmpty: "BucketNotEmpty",
    model_errors.BucketAlreadyExists: "BucketAlreadyExists",
    model_errors.BucketAlreadyOwnedByYou: "BucketAlreadyOwnedByYou",
    model_errors.AccessDenied: "AccessDenied",
    model_errors.PreconditionFailed: "PreconditionFailed",
    model_errors.BadDigest: "BadDigest",
    model_errors.IncompleteBody: "IncompleteBody",
    model_errors.EntityTooLarge: "EntityTooLarge",
    model_errors.InsufficientStorage: "InsufficientStorage",
    model_errors.TierUnavailable: "ServiceUnavailable",
    model_multipart.NoSuchUpload: "NoSuchUpload",
    model_multipart.InvalidPart: "InvalidPart",
    model_multipart.EntityTooSmall: "EntityTooSmall",
    model_versioning.NoSuchVersion: "NoSuchVersion",
    model_locks.NotLockable: "InvalidRequest",
    model_replicas.ReplicaRefused: "InvalidRequest",
}
_DETAIL_ELEMENTS = {
    "bucket": "BucketName",
    "key": "Key",
    "upload_id": "UploadId",
    "part": "PartNumber",
    "size": "ProposedSize",
    "version_id": "VersionId",
}


def translate(exc: BaseException) -> S3Error | None:
    """The S3 error a lower-layer exception means, or None for an unexpected one."""
    if isinstance(exc, S3Error | auth.AuthError):
        return as_s3_error(exc)
    if isinstance(exc, model_errors.ObjectServiceError):
        code = _MODEL_ERRORS.get(type(exc), "InternalError")
        extra = {_DETAIL_ELEMENTS[k]: v for k, v in exc.details.items() if k in _DETAIL_ELEMENTS}
        return S3Error(code, extra=extra)
    if isinstance(exc, StorageFull | MetaFull):
        return S3Error("InsufficientStorage")
    if _cold_unreachable(exc):
        # Reaching the cold store failed (a network or provider error): transient as far as
        # a client can tell, and SDKs retry a 503.
        return S3Error("ServiceUnavailable", "The cold tier could not be reached; retry")
    if isinstance(exc, DiskWriteError):
        # A disk failed under the write; it is taken out of placement within seconds, so a
        # retry (which SDKs do for 503) lands on the disks that work.
        return S3Error("ServiceUnavailable", "A disk failed during the write; retry")
    if isinstance(exc, ConnectionResetError | ClientPayloadError):
        return S3Error("IncompleteBody")
    return None


def _cold_unreachable(exc: BaseException) -> bool:
    # The cold store's module is imported only by a node with a cold tier (it brings botocore
    # along); without it in this process, no exception can come from it.
    cold = sys.modules.get("stratum.block.cold")
    return (
        cold is not None
        and isinstance(exc, cold.ColdStoreError)
        and not isinstance(exc, cold.ColdObjectMissing)  # data lost, not a passing failure
    )


RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The status logged and counted for a response the client stopped reading (nginx's code
# for it): the client got the status line of the real response, and part of its body.
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """What the metrics count of a request once its response is ready."""

    operation: str  # the endpoint name: an AWS operation, "Admin", or "-" if unrouted
    status: int
    seconds: float  # from arrival until the handler returned (a streamed body is sent by then)
    bytes_in: int
    bytes_out: int
    bucket: str = ""  # what the request addressed ("" when it named none, or was not routed)
    key: str = ""


@dataclass
class _RequestState:
    """What is known of a request so far, for its error response and log line."""

    resource: str | None
    endpoint: str = "-"
    ctx: ReqCtx | None = None
    # Access-Control-* headers the bucket's CORS rules give this request (errors included)
    cors: dict[str, str] = field(default_factory=dict)


def user_secrets(users: UserDirectory) -> auth.LookupSecret:
    """Each user's secret key by access key, as :func:`stratum.auth.authenticate` asks."""

    def secret(access_key: str) -> str | None:
        user = users.lookup(access_key)
        return None if user is None else user.secret_key

    return secret


class S3Server:
    def __init__(
        self,
        service: ObjectService,
        multipart: MultipartService,
        users: UserDirectory,
        settings: ApiSettings,
        clock: Clock,
        on_finished: Callable[[FinishedRequest], None] | None = None,
    ) -> None:
        self.service = service
        self.multipart = multipart
        self.users = users
        self.settings = settings
        self.clock = clock
        self.on_finished = on_finished
        self._secret = user_secrets(users)

    def _display_names(self) -> dict[str, str]:
        """Every user's display name by canonical id (for ACLs shown to clients)."""
        return {u.canonical_id: u.display_name for u in self.users.list()}

    async def _s3(
        self, request: web.Request, request_id: str, state: _RequestState
    ) -> web.StreamResponse:
        """Route, authenticate and dispatch one S3 request."""
        raw_path, _, raw_query = request.raw_path.partition("?")
        query = parse_qsl(raw_query, keep_blank_values=True, errors="surrogateescape")
        endpoint = route(
            request.method,
            request.host,
            raw_path,
            query,
            request.headers,
            self.settings.domain,
        )
        state.endpoint, state.resource = endpoint.name, endpoint.resource
        response: web.StreamResponse
        origin = "Origin" in request.headers
        if origin and endpoint.bucket is not None and endpoint.name != PREFLIGHT:
            state.cors = cors.actual_request_headers(
                self.service.find_bucket(endpoint.bucket), request.method, request.headers
            )
        if endpoint.name == PREFLIGHT:
            response = self._preflight(request, endpoint)
        elif endpoint.name == UNSUPPORTED_SERVICE_ACTION:
            # Signed for IAM/STS, not S3: answer before checking a signature we can't match.
            raise router_unsupported(endpoint)
        elif endpoint.name == post_ops.OPERATION:  # signed in its form, not its headers
            response = await self._post_object(request, request_id, state, endpoint, query)
        else:
            view = auth.RequestView.from_wire(
                request.method, raw_path, query, request.headers.items()
            )
            signed = auth.authenticate(
                view,
                self._secret,
                region=self.settings.region,
                now=self.clock.now(),
                virtual_bucket=virtual_host_bucket(request.host, self.settings.domain),
                allow_sigv2=self.settings.sigv2,
            )
            if signed is None:  # anonymous: as far as the bucket's ACL and policy allow
                user = ANONYMOUS
            else:
                found = self.users.lookup(signed.access_key)
                if found is None:  # removed between verify and now
                    raise S3Error("InvalidAccessKeyId")
                user = found
            if endpoint.name == UNSUPPORTED or endpoint.name not in HANDLERS:
                if signed is None:
                    raise S3Error("AccessDenied")
                raise router_unsupported(endpoint)
            handler = HANDLERS[endpoint.name]
            params: dict[str, str] = {}
            for name, value in query:
                params.setdefault(name, value)
            access = authorize(
                self.service,
                endpoint.name,
                endpoint.bucket,
                endpoint.key,
                endpoint.version_id,
                request_facts(request, signed, user, params, self.clock.now()),
                self._display_names,
            )
            ctx = state.ctx = ReqCtx(
                request=request,
                endpoint=endpoint,
                user=user,
                auth=signed or anonymous_auth(request.headers),
                params=params,
                request_id=request_id,
                service=self.service,
                multipart=self.multipart,
                settings=self.settings,
                clock=self.clock,
                continue_pending=_expects_continue(request),
                access=access,
                response_headers=state.cors,
            )
            honest.check(ctx)  # features asked for that Stratum lacks: NotImplemented
            response = await handler(ctx)
        return response

    async def _post_object(
        self,
        request: web.Request,
        request_id: str,
        state: _RequestState,
        endpoint: Endpoint,
        query: list[tuple[str, str]],
    ) -> web.StreamResponse:
        def begin(user: User, signed: auth.AuthResult) -> ReqCtx:
            ctx = state.ctx = ReqCtx(
                request=request,
                endpoint=endpoint,
                user=user,
                auth=signed,
                params=dict(query),
                request_id=request_id,
                service=self.service,
                multipart=self.multipart,
                settings=self.settings,
                clock=self.clock,
                response_headers=state.cors,
                access=access,
            )
            return ctx

        params = dict(query)
        access = authorize(
            self.service,
            endpoint.name,
            endpoint.bucket,
            None,
            None,
            request_facts(request, None, ANONYMOUS, params, self.clock.now()),
            self._display_names,
        )
        server = post_ops.PostServer(
            self.service, self.users, self.settings, self.clock, self._secret, access, begin
        )
        return await post_ops.post_object(request, endpoint, server, _expects_continue(request))

    def _preflight(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        """A CORS preflight, answered by the bucket's rules before any signature check
        (browsers send none); there are no rules above the bucket level."""
        if endpoint.bucket is None:
            if "Origin" not in request.headers:
                raise S3Error(
                    "InvalidRequest", "Insufficient information. Origin request header needed."
                )
            raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.")
        bucket = self.service.find_bucket(endpoint.bucket)
        on_object = endpoint.key is not None
        return cors.preflight(bucket, endpoint.bucket, on_object, request.headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one S3 request."""
        return await self._envelope(request, self._s3)

    async def handle_as(
        self, operation: str, handler: RequestHandler, request: web.Request
    ) -> web.StreamResponse:
        """Serve a request that is not S3 (the admin API) in the S3 envelope: request id,
        XML errors, the access log line and :attr:`on_finished`, under ``operation``."""

        async def named(
            request: web.Request, _request_id: str, state: _RequestState
        ) -> web.StreamResponse:
            state.endpoint = operation
            return await handler(request)

        return await self._envelope(request, named)

    async def relay(self, handler: RequestHandler, request: web.Request) -> web.StreamResponse:
        """Pass on another process's answer unchanged (a worker forwarding to the primary,
        which logs and counts the request); only a failure to get one is answered here."""

        async def passed(
            request: web.Request, _request_id: str, _state: _RequestState
        ) -> web.StreamResponse:
            return await handler(request)

        return await self._envelope(request, passed, relayed=True)

    async def _envelope(
        self,
        request: web.Request,
        inner: Callable[[web.Request, str, _RequestState], Awaitable[web.StreamResponse]],
        *,
        relayed: bool = False,
    ) -> web.StreamResponse:
        started = time.perf_counter()
        note_request()  # background walks give way while requests arrive (util/pacing.py)
        request_id = new_request_id()
        state = _RequestState(resource=request.path)
        try:
            response = await inner(request, request_id, state)
            if relayed:
                return response
        except Exception as exc:  # every failure becomes S3 XML, here
            if state.ctx is not None and state.ctx.streaming:
                response = _cut_short(request, request_id, state.endpoint, exc)
                return self._finish(request, state, response, started, request_id)
            error = translate(exc)
            if error is None:
                log.exception("request %s (%s) failed", request_id, state.endpoint)
                error = S3Error("InternalError")
            if isinstance(exc, StorageError) and not isinstance(exc, StorageFull):
                log.error("storage error in %s: %s", request_id, exc)
            response = render_error(error, state.resource, request_id)
            if request.can_read_body:
                # A refused upload (or one refused before its 100 Continue, a 501 for a
                # feature it asks for included): don't read on (see _close_after).
                _close_after(request, response)
        if not response.prepared:
            response.headers.update(state.cors)
            response.headers["x-amz-request-id"] = request_id
            response.headers["x-amz-id-2"] = request_id
            response.headers.setdefault("Server", "Stratum")
        return self._finish(request, state, response, started, request_id)

    def _finish(
        self,
        request: web.Request,
        state: _RequestState,
        response: web.StreamResponse,
        started: float,
        request_id: str,
    ) -> web.StreamResponse:
        """Log and count the request; return its response."""
        finished = _finished(state, response, started)
        if self.settings.access_log:
            _log_request(request, finished, request_id)
        if self.on_finished is not None:
            self.on_finished(finished)
        return response


# Request ids identify a request in logs and error bodies; they guard nothing, so they come
# from a per-process PRNG rather than from secrets, which makes a system call for each.
_request_ids = process_random()


def new_request_id() -> str:
    return f"{_request_ids.getrandbits(64):016X}"


def _cut_short(
    request: web.Request, request_id: str, endpoint: str, exc: Exception
) -> web.StreamResponse:
    """A response whose headers (and part of its body) are sent failed: the only honest
    signal left is a cut connection. Returns what stands for it in the log line and the
    metrics: status :data:`CLIENT_CLOSED` when the client went away (it closed the
    connection early, which clients do; the access log line says so), 500 when we failed.
    aiohttp, finding the connection closed, sends nothing more."""
    transport = request.transport
    gone = isinstance(exc, ConnectionError) or transport is None or transport.is_closing()
    if not gone:
        if isinstance(exc, StorageError):
            log.error("request %s (%s) failed mid-response: %s", request_id, endpoint, exc)
        else:
            log.exception("request %s (%s) failed mid-response", request_id, endpoint)
    if transport is not None:
        transport.abort()
    return web.Response(status=CLIENT_CLOSED if gone else 500)


def _close_after(request: web.Request, response: web.StreamResponse) -> None:
    """End the connection with ``response``: the request's body is left unread (a refused
    upload, or one refused before its 100 Continue, whatever the status).

    Draining a huge body, or waiting for one the client may never send, is no option; and a
    kept connection would read the body the client may still send as its next request. So
    what arrives from here on is dropped (:meth:`RequestHandler.close`), the body is ended
    where it stands (else aiohttp lingers up to 10 s reading it before it closes), and the
    response says ``Connection: close``."""
    response.force_close()
    request.protocol.close()
    request.content.feed_eof()


def _expects_continue(request: web.Request) -> bool:
    return (
        request.version >= (1, 1)
        and request.headers.get("Expect", "").strip().lower() == "100-continue"
    )


async def expect_later(request: web.Request) -> None:
    """aiohttp's default answers ``Expect: 100-continue`` on arrival; S3 answers it only
    when the handler starts reading the body (:meth:`ReqCtx.want_body`)."""


def render_error(error: S3Error, resource: str | None, request_id: str) -> web.Response:
    """The one place an S3 error becomes an HTTP response."""
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id, **error.headers}
    if error.status == 304 or error.code == "NotModified":
        return web.Response(status=304, headers=headers)
    body = xml.error_xml(
        error.code, error.text, error.resource or resource, request_id, error.extra
    )
    return web.Response(
        status=error.status, body=body, content_type="application/xml", headers=headers
    )


def _finished(
    state: _RequestState, response: web.StreamResponse, started: float
) -> FinishedRequest:
    ctx = state.ctx
    bytes_in = ctx.bytes_in if ctx else 0
    # Streamed bodies count what was sent; a whole response (listings, errors) its length.
    bytes_out = (ctx.bytes_out if ctx else 0) or response.content_length or 0
    took = time.perf_counter() - started
    target = ctx.endpoint if ctx else None
    return FinishedRequest(
        state.endpoint,
        response.status,
        took,
        bytes_in,
        bytes_out,
        bucket=(target.bucket or "") if target else "",
        key=(target.key or "") if target else "",
    )


def _log_request(request: web.Request, finished: FinishedRequest, request_id: str) -> None:
    took_ms = finished.seconds * 1000
    level = logging.WARNING if finished.status >= 500 else logging.INFO
    access_log.log(
        level,
        "%s %s %s %d in=%d out=%d %.1fms id=%s",
        request.method,
        finished.operation,
        request.path,
        finished.status,
        finished.bytes_in,
        finished.bytes_out,
        took_ms,
        request_id,
        extra={
            "method": request.method,
            "endpoint": finished.operation,
            "status": finished.status,
            "bytes_in": finished.bytes_in,
            "bytes_out": finished.bytes_out,
            "duration_ms": round(took_ms, 2),
            "request_id": request_id,
        },
    )
