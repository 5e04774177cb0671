"""The HTTP application: which part of the server answers a request.

One port serves everything. :class:`Front` looks at each request, in this order:

1. unsigned GET/HEAD of ``/metrics`` and ``/health/*`` on the service host: the
   :class:`~stratum.web.observe.Observer` (signed, they are S3 requests like any other);
2. ``/_stratum/`` on the service host (on a bucket's virtual host it is a key): the admin API
   (:mod:`stratum.web.admin`), run in the S3 server's envelope under the operation name
   ``Admin``; a worker process relays it to the primary instead (:mod:`stratum.web.forward`),
   which logs and counts it;
3. anything else: the S3 API (:class:`~stratum.s3.server.S3Server`).

A request aiohttp cannot even parse never reaches the front: :class:`FrontRunner` makes the
connections answer it in S3's XML form too, logged in one line.

The S3 server reports each request it finished through ``on_finished``; the front points that
at the observer, so the S3 layer needs nothing from this one.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from stratum.s3.errors import S3Error
from stratum.s3.router import virtual_host_bucket
from stratum.s3.server import S3Server, expect_later, new_request_id, render_error
from stratum.web.admin import PREFIX as ADMIN_PREFIX
from stratum.web.admin import AdminApi
from stratum.web.forward import PrimaryForwarder
from stratum.web.observe import Observer

ADMIN_OPERATION = "Admin"


class Front:
    """Routes each request to metrics and health, the admin API, or S3."""

    def __init__(
        self,
        s3: S3Server,
        observer: Observer | None = None,
        admin: AdminApi | PrimaryForwarder | None = None,
    ) -> None:
        self.s3 = s3
        self.observer = observer
        self.admin = admin
        if observer is not None:
            s3.on_finished = observer.count

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.observer is not None and self.observer.answers(request):
            return await self.observer.handle(request)
        if self.admin is not None and self._is_admin(request):
            if isinstance(self.admin, PrimaryForwarder):
                return await self.s3.relay(self.admin.handle, request)
            return await self.s3.handle_as(ADMIN_OPERATION, self.admin.handle, request)
        return await self.s3.handle(request)

    def _is_admin(self, request: web.Request) -> bool:
        return (
            request.path.startswith(ADMIN_PREFIX)
            and virtual_host_bucket(request.host, self.s3.settings.domain) is None
        )


def make_app(
    s3: S3Server,
    observer: Observer | None = None,
    admin: AdminApi | PrimaryForwarder | None = None,
    requests_per_connection: int = 0,
) -> web.Application:
    """An aiohttp application serving every path through a :class:`Front`.

    ``requests_per_connection`` (0: no limit): the response to a connection's that many-th
    request closes it (``Connection: close``), as nginx's ``keepalive_requests`` does. Several
    processes accept from one socket, and a keep-alive connection stays for good with the
    one that accepted it: with the primary busy walking the store when 16 clients
    connected, every connection went to the other process and the primary served nothing
    (docs/benchmarks.md, ten million objects). Reconnecting now and then, a client lands on
    whichever process is waiting for work."""
    front = Front(s3, observer, admin)
    # client_max_size only bounds request.read()/post(); object bodies are streamed.
    # auto_decompress off: a body sent with Content-Encoding: gzip is object data, stored
    # byte for byte (S3 only records the header), never inflated by the HTTP layer.
    app = web.Application(client_max_size=8 << 20, handler_args={"auto_decompress": False})
    # [\s\S], not ".": a key may hold a newline (%0A), and "." would let the router 404 it.
    app.router.add_route("*", r"/{tail:[\s\S]*}", front.handle, expect_handler=expect_later)
    if requests_per_connection > 0:
        app.on_response_prepare.append(functools.partial(_close_every, requests_per_connection))
    return app


async def _close_every(limit: int, request: web.Request, response: web.StreamResponse) -> None:
    """Count the responses of the request's connection; close it with the ``limit``-th."""
    connection = request.protocol
    if not isinstance(connection, _S3Connection):  # aiohttp's own (a test's AppRunner)
        return
    connection.served += 1
    if connection.served % limit == 0:
        response.force_close()
        # The hook runs after aiohttp wrote the header fields out of keep_alive: say it too.
        response.headers["Connection"] = "close"


log = logging.getLogger("stratum.s3")


class _S3Connection(RequestHandler):
    """aiohttp's connection handler, but a request it cannot parse is answered as S3 answers
    errors (XML with a request id) and logged in one line, not with a traceback each; and it
    counts the responses it sent (``served``, for :func:`_close_every`)."""

    served = 0  # an instance attribute once counted (the class has no __slots__)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        request_id = new_request_id()
        log.info("malformed request from %s (id=%s): %s", request.remote, request_id, exc.message)
        error = S3Error("InvalidRequest", f"The request could not be parsed: {exc.message}")
        response = render_error(error, None, request_id)
        response.headers["Server"] = "Stratum"
        response.force_close()
        return response


class _S3Protocols(web.Server):
    def __call__(self) -> RequestHandler:
        return _S3Connection(self, loop=self._loop, **self._kwargs)


class FrontRunner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` whose connections answer malformed HTTP (a bad
    request line, header or chunk framing) in S3's XML form."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _S3Protocols  # the same object, making S3-speaking connections
        return server
