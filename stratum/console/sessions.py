"""Console logins: sessions, their signed cookie, CSRF tokens and the login rate limit.

A session lives in this process's memory (a restart logs everyone out) and holds the user's
access key and an HMAC of the secret key it logged in with, never the secret: the secret is
looked up in the user directory for each request, and a removed user or a new secret key
(given on the console or with ``stratum user secret``) ends the session at once. The cookie
carries the session's random id and an HMAC of it under a key made when the console starts;
it is ``HttpOnly``, ``SameSite=Strict`` and, under TLS, ``Secure``. Each session has its own
CSRF token, which every form and every script request sends back (:meth:`Session.csrf_ok`).

Sessions end ``lifetime`` seconds after login, on logout, or when the store is full (the
oldest goes first). The login limiter refuses a client address for a while after
:data:`LOGIN_FAILURES` failed logins within :data:`LOGIN_WINDOW` seconds, whatever keys it
tries, so secret keys cannot be guessed at speed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass

from stratum.util.clock import Clock

COOKIE = "stratum_console"
LOGIN_COOKIE = "stratum_login"  # the login form's CSRF token (there is no session yet)
MAX_SESSIONS = 1000
LOGIN_FAILURES = 5
LOGIN_WINDOW = 300.0  # seconds
MAX_TRACKED_CLIENTS = 10000


@dataclass
class Session:
    id: str
    access_key: str
    csrf: str
    expires: float
    secret_tag: str = ""  # HMAC of the secret key the user logged in with

    def csrf_ok(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf)


class SessionStore:
    def __init__(self, clock: Clock, lifetime: float, key: bytes | None = None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._key = key or secrets.token_bytes(32)
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def create(self, access_key: str, secret_key: str = "") -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        session = Session(
            id=secrets.token_urlsafe(24),
            access_key=access_key,
            csrf=secrets.token_urlsafe(24),
            expires=self.clock.now() + self.lifetime,
            secret_tag=self._mac("secret:" + secret_key),
        )
        self._sessions[session.id] = session
        return session, f"{session.id}.{self._mac(session.id)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, or None (unsigned, forged, ended or expired)."""
        if not cookie:
            return None
        ident, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac, self._mac(ident)):
            return None
        session = self._sessions.get(ident)
        if session is None:
            return None
        if self.clock.now() >= session.expires:
            del self._sessions[ident]
            return None
        return session

    def same_secret(self, session: Session, secret_key: str) -> bool:
        """Whether ``secret_key`` is the one the session logged in with."""
        return hmac.compare_digest(session.secret_tag, self._mac("secret:" + secret_key))

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def end_user(self, access_key: str) -> None:
        """End every session of a user (removed, or given a new secret key)."""
        for ident in [i for i, s in self._sessions.items() if s.access_key == access_key]:
            del self._sessions[ident]


class LoginLimiter:
    """Failed logins per client address within a sliding window."""

    def __init__(
        self, clock: Clock, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW
    ) -> None:
        self.clock = clock
        self.failures = failures
        self.window = window
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        times = self._seen.get(client)
        if times is None:
            return deque()
        cutoff = self.clock.now() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._seen[client]
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        times = self._recent(client)
        if len(times) < self.failures:
            return 0.0
        return max(0.0, times[-self.failures] + self.window - self.clock.now())

    def failed(self, client: str) -> None:
        times = self._recent(client)
        if not times:
            while len(self._seen) >= MAX_TRACKED_CLIENTS:
                self._seen.popitem(last=False)
            self._seen[client] = times
        times.append(self.clock.now())

    def succeeded(self, client: str) -> None:
        self._seen.pop(client, None)
