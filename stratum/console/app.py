"""The console's aiohttp application: login, sessions, CSRF checks, and page rendering.

Every request but the login page and the static files needs a session (else: the login page,
or 401 for a script's request). Every request that changes something (any method but GET and
HEAD) must carry the session's CSRF token, in the ``csrf`` form field or the
``X-CSRF-Token`` header; without it the answer is 403 and nothing happens. Pages are Jinja2
templates (``templates/``, autoescaped) with a strict Content-Security-Policy: scripts and
styles only from ``/static/``, nothing from elsewhere.

The pages themselves are in :mod:`stratum.console.objects` (buckets and objects, for every
user) and :mod:`stratum.console.operator` (overview, tiers, users: the root user only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from stratum import __version__
from stratum.console import format as fmt
from stratum.console.client import S3Client, S3Failure
from stratum.console.sessions import COOKIE, LOGIN_COOKIE, LoginLimiter, Session, SessionStore
from stratum.console.signing import Credentials
from stratum.service.users import UserDirectory
from stratum.util.clock import Clock

log = logging.getLogger("stratum.console")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Visitor:
    """Who is asking: their session and the keys their requests are signed with."""

    session: Session
    creds: Credentials
    root: bool


_VISITOR = "stratum.console.visitor"


def visitor(request: web.Request) -> Visitor:
    found: Visitor = request[_VISITOR]
    return found


def require_root(request: web.Request) -> Visitor:
    who = visitor(request)
    if not who.root:
        raise web.HTTPForbidden(text="This page is for the root user only.")
    return who


def templates() -> jinja2.Environment:
    """The pages' templates, with the format filters they use."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt.FILTERS)
    env.globals["version"] = __version__
    return env


class Console:
    """What the pages share: the S3 client, the users, sessions, templates, the clock."""

    def __init__(
        self,
        client: S3Client,
        users: UserDirectory,
        clock: Clock,
        *,
        lifetime: float,
        secure: bool = False,
    ) -> None:
        self.client = client
        self.users = users
        self.clock = clock
        self.secure = secure
        self.sessions = SessionStore(clock, lifetime)
        self.limiter = LoginLimiter(clock)
        self.templates = templates()
        # {bucket: (objects, bytes)} as last counted, when the operator views count them
        self.bucket_totals: Callable[[], Mapping[str, tuple[int, int]]] = dict

    @property
    def root_creds(self) -> Credentials:
        root = self.users.root
        return Credentials(root.access_key, root.secret_key)

    # -- rendering --------------------------------------------------------------------

    def render(
        self, request: web.Request, name: str, status: int = 200, **values: Any
    ) -> web.Response:
        who: Visitor | None = request.get(_VISITOR)
        started = time.perf_counter()
        text = self.templates.get_template(name).render(
            who=who,
            csrf=who.session.csrf if who else "",
            path=request.path,
            **values,
        )
        log.debug("rendered %s in %.1f ms", name, (time.perf_counter() - started) * 1000)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def failure(self, request: web.Request, exc: S3Failure) -> web.Response:
        """An S3 refusal, shown as a page with the server's own code and message."""
        status = exc.status if 400 <= exc.status < 600 else 502
        return self.render(request, "error.html", status=status, error=exc)

    # -- sessions ---------------------------------------------------------------------

    def visitor_for(self, request: web.Request) -> Visitor | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return None
        user = self.users.lookup(session.access_key)
        if user is None or not self.sessions.same_secret(session, user.secret_key):
            self.sessions.end(session)  # removed, or given a new secret, since login
            return None
        creds = Credentials(user.access_key, user.secret_key)
        return Visitor(session, creds, user.access_key == self.users.root.access_key)

    def set_cookie(self, response: web.StreamResponse, name: str, value: str, age: float) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(age),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    # -- middleware -------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/"):
            response = await handler(request)
            response.headers["Cache-Control"] = "max-age=86400"  # URLs carry the version
        elif request.path == "/login":
            response = await handler(request)
        else:
            who = self.visitor_for(request)
            if who is None:
                if request.method in SAFE_METHODS and not _is_script(request):
                    raise web.HTTPFound("/login")
                raise web.HTTPUnauthorized(text="Log in first.")
            request[_VISITOR] = who
            if request.method not in SAFE_METHODS and not who.session.csrf_ok(
                await _csrf_token(request)
            ):
                raise web.HTTPForbidden(text="Missing or wrong CSRF token: reload the page.")
            try:
                response = await handler(request)
            except S3Failure as exc:
                response = self.failure(request, exc)
        _security_headers(response)
        return response

    # -- login and logout -------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        return self._login_form(request, "")

    def _login_form(self, request: web.Request, error: str, status: int = 200) -> web.Response:
        # One token per browser while it has one: a second login page (another tab, a
        # redirect for a missing favicon) must not outdate the form already shown.
        token = request.cookies.get(LOGIN_COOKIE) or fmt.random_token()
        response = self.render(request, "login.html", status=status, error=error, token=token)
        self.set_cookie(response, LOGIN_COOKIE, token, 3600)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        sent = str(form.get("csrf", ""))
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not sent or not expected or not fmt.same(sent, expected):
            return self._login_form(request, "The form expired: please try again.", 403)
        client = request.remote or "-"
        wait = self.limiter.retry_after(client)
        if wait > 0:
            response = self._login_form(
                request, f"Too many failed logins: try again in {wait:.0f} s.", 429
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        access_key = str(form.get("access_key", "")).strip()
        secret_key = str(form.get("secret_key", ""))
        creds = Credentials(access_key, secret_key)
        try:
            # The server checks the keys as it checks any S3 request's signature.
            await self.client.list_buckets(creds)
        except S3Failure as exc:
            if exc.status not in (400, 403):
                raise
            self.limiter.failed(client)
            log.info("console login refused for %r from %s", access_key, client)
            return self._login_form(request, "Wrong access key or secret key.", 403)
        self.limiter.succeeded(client)
        _session, cookie = self.sessions.create(access_key, secret_key)
        root = access_key == self.users.root.access_key
        response = web.HTTPFound("/overview" if root else "/buckets")
        self.set_cookie(response, COOKIE, cookie, self.sessions.lifetime)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(visitor(request).session)
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/overview" if visitor(request).root else "/buckets")


def _is_script(request: web.Request) -> bool:
    return request.headers.get("X-Requested-With") == "stratum-console"


async def _csrf_token(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return str((await request.post()).get("csrf", ""))
    return ""


def _security_headers(response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")


def make_app(console: Console, *routes: Callable[[web.Application], None]) -> web.Application:
    """The console application; each of ``routes`` adds the pages of one module."""
    app = web.Application(middlewares=[console.guard], client_max_size=1 << 20)
    app.router.add_get("/login", console.login_page)
    app.router.add_post("/login", console.login)
    app.router.add_post("/logout", console.logout)
    app.router.add_get("/", console.home)
    app.router.add_static("/static/", STATIC, append_version=False)
    for add in routes:
        add(app)
    return app
