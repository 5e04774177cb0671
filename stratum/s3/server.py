"""The S3 HTTP server: one handler, one dispatch table, one error renderer.

Every request goes through :meth:`S3Server.handle`:

1. parse once: the router turns method, host, path and query into an ``Endpoint``;
2. authenticate (:func:`stratum.auth.authenticate`) and find the user;
3. dispatch through :data:`HANDLERS` (operation name -> handler);
4. translate any error into an :class:`S3Error` and render it as XML, here and only here;
5. log one line (method, operation, status, bytes, duration, request id).

Unsigned GET/HEAD of ``/metrics`` and ``/health/*`` are answered before all this by
:mod:`stratum.s3.observe` (signed, they are S3 requests like any other).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from aiohttp import ClientPayloadError, web

from stratum import auth
from stratum.block.errors import DiskWriteError, StorageError, StorageFull
from stratum.s3 import bucket_ops, list_ops, multipart_ops, object_ops, xml
from stratum.s3.admin import PREFIX as ADMIN_PREFIX
from stratum.s3.context import ApiSettings, Handler, ReqCtx
from stratum.s3.errors import S3Error, as_s3_error
from stratum.s3.observe import Observer
from stratum.s3.router import (
    PREFLIGHT,
    UNSUPPORTED,
    UNSUPPORTED_SERVICE_ACTION,
    route,
    virtual_host_bucket,
)
from stratum.s3.router import unsupported_error as router_unsupported
from stratum.service import errors as model_errors
from stratum.service import multipart as model_multipart
from stratum.service.multipart import MultipartService
from stratum.service.objects import ObjectService
from stratum.service.users import UserDirectory
from stratum.util.clock import Clock
from stratum.util.prng import process_random

log = logging.getLogger("stratum.s3")
access_log = logging.getLogger("stratum.access")

HANDLERS: Mapping[str, Handler] = {
    **bucket_ops.HANDLERS,
    **list_ops.HANDLERS,
    **object_ops.HANDLERS,
    **multipart_ops.HANDLERS,
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
}
_DETAIL_ELEMENTS = {
    "bucket": "BucketName",
    "key": "Key",
    "upload_id": "UploadId",
    "part": "PartNumber",
    "size": "ProposedSize",
}


def translate(exc: BaseException) -> S3Error | None:
    """The S3 error a lower-layer exception means, or None for an unexpected one."""
    if isinstance(exc, S3Error | auth.AuthError):
        return as_s3_error(exc)
    if isinstance(exc, model_errors.ObjectServiceError):
        code = _MODEL_ERRORS.get(type(exc), "InternalError")
        extra = {_DETAIL_ELEMENTS[k]: v for k, v in exc.details.items() if k in _DETAIL_ELEMENTS}
        return S3Error(code, extra=extra)
    if isinstance(exc, StorageFull):
        return S3Error("InsufficientStorage")
    if isinstance(exc, DiskWriteError):
        # A disk failed under the write; it is taken out of placement within seconds, so a
        # retry (which SDKs do for 503) lands on the disks that work.
        return S3Error("ServiceUnavailable", "A disk failed during the write; retry")
    if isinstance(exc, ConnectionResetError | ClientPayloadError):
        return S3Error("IncompleteBody")
    return None


class AdminHandler(Protocol):
    """The admin API (``stratum.s3.admin.AdminApi``) or a worker's forwarder to the primary."""

    async def handle(self, request: web.Request) -> web.StreamResponse: ...


def _forwards(admin: AdminHandler | None) -> bool:
    """Whether ``admin`` hands requests to another process, which logs and counts them."""
    return bool(getattr(admin, "forwards", False))


@dataclass
class _RequestState:
    """What is known of a request so far, for its error response and log line."""

    resource: str | None
    endpoint: str = "-"
    ctx: ReqCtx | None = None


class S3Server:
    def __init__(
        self,
        service: ObjectService,
        multipart: MultipartService,
        users: UserDirectory,
        settings: ApiSettings,
        clock: Clock,
        admin: AdminHandler | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.admin = admin
        self.observer = observer  # /metrics and /health/*, for unsigned requests
        self.service = service
        self.multipart = multipart
        self.users = users
        self.settings = settings
        self.clock = clock

    def _secret(self, access_key: str) -> str | None:
        user = self.users.lookup(access_key)
        return None if user is None else user.secret_key

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
        if endpoint.name == PREFLIGHT:
            response = _preflight(request)
        elif endpoint.name == UNSUPPORTED_SERVICE_ACTION:
            # Signed for IAM/STS, not S3: answer before checking a signature we can't match.
            raise router_unsupported(endpoint)
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
            )
            if signed is None:  # anonymous: no bucket is public
                raise S3Error("AccessDenied")
            user = self.users.lookup(signed.access_key)
            if user is None:  # removed between verify and now
                raise S3Error("InvalidAccessKeyId")
            if endpoint.name == UNSUPPORTED:
                raise router_unsupported(endpoint)
            handler = HANDLERS.get(endpoint.name)
            if handler is None:
                raise router_unsupported(endpoint)
            params: dict[str, str] = {}
            for name, value in query:
                params.setdefault(name, value)
            ctx = state.ctx = ReqCtx(
                request=request,
                endpoint=endpoint,
                user=user,
                auth=signed,
                params=params,
                request_id=request_id,
                service=self.service,
                multipart=self.multipart,
                settings=self.settings,
                clock=self.clock,
                continue_pending=_expects_continue(request),
            )
            response = await handler(ctx)
        return response

    def _is_admin(self, request: web.Request) -> bool:
        """``/_stratum/`` on the service host (on a bucket's virtual host it is a key)."""
        return (
            self.admin is not None
            and request.path.startswith(ADMIN_PREFIX)
            and virtual_host_bucket(request.host, self.settings.domain) is None
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.observer is not None and self.observer.answers(request):
            return await self.observer.handle(request)
        started = time.perf_counter()
        request_id = _new_request_id()
        state = _RequestState(resource=request.path)
        try:
            response: web.StreamResponse
            if self.admin is not None and self._is_admin(request):
                if _forwards(self.admin):
                    return await self.admin.handle(request)
                state.endpoint = "Admin"
                response = await self.admin.handle(request)
            else:
                response = await self._s3(request, request_id, state)
        except Exception as exc:  # every failure becomes S3 XML, here
            if state.ctx is not None and state.ctx.streaming:
                # Headers are gone already: the only honest signal left is a cut connection.
                log.error(
                    "request %s (%s) failed mid-response: %s", request_id, state.endpoint, exc
                )
                raise
            error = translate(exc)
            if error is None:
                log.exception("request %s (%s) failed", request_id, state.endpoint)
                error = S3Error("InternalError")
            if isinstance(exc, StorageError) and not isinstance(exc, StorageFull):
                log.error("storage error in %s: %s", request_id, exc)
            response = render_error(error, state.resource, request_id)
            if request.can_read_body and error.status < 500:
                # A refused upload (or one refused before its 100 Continue): don't read on;
                # close rather than drain a huge body or wait for one that will not come.
                response.force_close()
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
            response.headers["x-amz-id-2"] = request_id
            response.headers.setdefault("Server", "Stratum")
        if self.settings.access_log:
            _log_request(request, state.endpoint, response, state.ctx, request_id, started)
        if self.observer is not None:
            self.observer.count(state.endpoint, response, state.ctx, started)
        return response


# Request ids identify a request in logs and error bodies; they guard nothing, so they come
# from a per-process PRNG (secrets' system call per request cost ~3 % of a PUT).
_request_ids = process_random()


def _new_request_id() -> str:
    return f"{_request_ids.getrandbits(64):016X}"


def _expects_continue(request: web.Request) -> bool:
    return (
        request.version >= (1, 1)
        and request.headers.get("Expect", "").strip().lower() == "100-continue"
    )


async def _expect_later(request: web.Request) -> None:
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


def _preflight(request: web.Request) -> web.Response:
    """CORS preflight: allow any origin (a self-hosted store's web clients are its own)."""
    origin = request.headers.get("Origin")
    if origin is None:
        raise S3Error("InvalidRequest", "Insufficient information. Origin request header needed.")
    method = request.headers.get("Access-Control-Request-Method", "GET")
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": method,
        "Access-Control-Max-Age": "3000",
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    }
    wanted = request.headers.get("Access-Control-Request-Headers")
    if wanted:
        headers["Access-Control-Allow-Headers"] = wanted
    return web.Response(status=200, headers=headers)


def _log_request(
    request: web.Request,
    endpoint: str,
    response: web.StreamResponse,
    ctx: ReqCtx | None,
    request_id: str,
    started: float,
) -> None:
    took_ms = (time.perf_counter() - started) * 1000
    bytes_in = ctx.bytes_in if ctx else 0
    # Streamed bodies count what was sent; a whole response (listings, errors) its length.
    bytes_out = (ctx.bytes_out if ctx else 0) or response.content_length or 0
    level = logging.WARNING if response.status >= 500 else logging.INFO
    access_log.log(
        level,
        "%s %s %s %d in=%d out=%d %.1fms id=%s",
        request.method,
        endpoint,
        request.path,
        response.status,
        bytes_in,
        bytes_out,
        took_ms,
        request_id,
        extra={
            "method": request.method,
            "endpoint": endpoint,
            "status": response.status,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration_ms": round(took_ms, 2),
            "request_id": request_id,
        },
    )


def make_app(server: S3Server) -> web.Application:
    """An aiohttp application serving S3 on every path."""
    # client_max_size only bounds request.read()/post(); object bodies are streamed.
    # auto_decompress off: a body sent with Content-Encoding: gzip is object data, stored
    # byte for byte (S3 only records the header), never inflated by the HTTP layer.
    app = web.Application(client_max_size=8 << 20, handler_args={"auto_decompress": False})
    # [\s\S], not ".": a key may hold a newline (%0A), and "." would let the router 404 it.
    app.router.add_route("*", r"/{tail:[\s\S]*}", server.handle, expect_handler=_expect_later)
    return app
