"""Console sessions expire and cannot be forged; failed logins are rate-limited."""

from __future__ import annotations

from stratum.console.sessions import LoginLimiter, SessionStore
from stratum.util.clock import ManualClock


def test_a_session_lasts_its_lifetime_and_no_longer() -> None:
    clock = ManualClock()
    store = SessionStore(clock, lifetime=3600)
    session, cookie = store.create("AKID")
    assert store.get(cookie) is session
    clock.advance(3599)
    assert store.get(cookie) is session
    clock.advance(1)
    assert store.get(cookie) is None


def test_a_forged_or_foreign_cookie_names_no_session() -> None:
    clock = ManualClock()
    store = SessionStore(clock, lifetime=3600)
    _session, cookie = store.create("AKID")
    ident, _, mac = cookie.partition(".")
    assert store.get(f"{ident}.{'0' * len(mac)}") is None
    assert store.get(ident) is None
    assert store.get("") is None and store.get(None) is None
    other = SessionStore(clock, lifetime=3600)  # another key: a restarted console
    assert other.get(cookie) is None


def test_logout_and_user_removal_end_sessions() -> None:
    store = SessionStore(ManualClock(), lifetime=3600)
    a, cookie_a = store.create("A")
    _b, cookie_b = store.create("B")
    _b2, cookie_b2 = store.create("B")
    store.end(a)
    store.end_user("B")
    assert [store.get(c) for c in (cookie_a, cookie_b, cookie_b2)] == [None, None, None]


def test_csrf_token_is_per_session() -> None:
    store = SessionStore(ManualClock(), lifetime=3600)
    a, _ = store.create("A")
    b, _ = store.create("A")
    assert a.csrf_ok(a.csrf) and not a.csrf_ok(b.csrf) and not a.csrf_ok("")


def test_failed_logins_are_limited_per_client_within_the_window() -> None:
    clock = ManualClock()
    limiter = LoginLimiter(clock, failures=3, window=60)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.5") == 0
        limiter.failed("10.0.0.5")
        clock.advance(1)
    assert limiter.retry_after("10.0.0.5") == 57  # the first failure leaves the window then
    assert limiter.retry_after("10.0.0.6") == 0  # another client is not held back
    clock.advance(57)
    assert limiter.retry_after("10.0.0.5") == 0
    limiter.failed("10.0.0.5")
    limiter.succeeded("10.0.0.5")
    assert limiter.retry_after("10.0.0.5") == 0


def test_a_session_knows_the_secret_it_logged_in_with() -> None:
    store = SessionStore(ManualClock(), lifetime=3600)
    session, _ = store.create("A", "first-secret")
    assert store.same_secret(session, "first-secret")
    assert not store.same_secret(session, "second-secret")
    assert "first-secret" not in repr(session)
