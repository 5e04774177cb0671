"""Fixtures for every ring of tests: no test may block its event loop.

Each event loop a test runs (pytest-asyncio's, or one a test starts) gets a
:class:`~stratum.util.loopwatch.LoopWatchdog` while it runs; the test fails if code on the
loop held it up longer than the threshold (``STRATUM_LOOP_WATCHDOG_MS``, default
:data:`tests.loopcheck.DEFAULT_MS`), with the code named. Fixture set-up and tear-down on the
loop count too. The real-server ring checks the server's own log the same way
(tests/server/conftest.py). A test that blocks its loop on purpose (the watchdog's own tests)
is marked ``blocks_loop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from stratum.util.loopwatch import LoopWatchdog, Stall
from tests.loopcheck import forgiven, threshold


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "blocks_loop: the test blocks its event loop on purpose (no loop watchdog)"
    )
    config.addinivalue_line(
        "markers", "scale: a background pass over 100,000 records under a memory probe (~25 s all)"
    )


@pytest.fixture(autouse=True)
def loop_watchdog(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    limit = threshold()
    if limit is None or request.node.get_closest_marker("blocks_loop") is not None:
        yield
        return
    stalls: list[Stall] = []
    watchdogs: dict[asyncio.AbstractEventLoop, LoopWatchdog] = {}
    run_forever = asyncio.BaseEventLoop.run_forever

    def watched_run_forever(loop: asyncio.BaseEventLoop) -> None:
        # One loop runs in several stretches (a run_until_complete per fixture and for the
        # test): the watchdog leaves out the time between them.
        watchdog = watchdogs.get(loop)
        if watchdog is None:
            watchdog = watchdogs[loop] = LoopWatchdog(limit, stalls.append)
            watchdog.start(loop)
        else:
            watchdog.resume()
        try:
            run_forever(loop)
        finally:
            watchdog.pause()

    close = asyncio.BaseEventLoop.close

    def watched_close(loop: asyncio.BaseEventLoop) -> None:
        watchdog = watchdogs.pop(loop, None)
        if watchdog is not None:  # a test may run many loops (asyncio.run in a loop)
            watchdog.stop()
        close(loop)

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_forever", watched_run_forever)
    monkeypatch.setattr(asyncio.BaseEventLoop, "close", watched_close)
    yield
    for watchdog in watchdogs.values():
        watchdog.stop()
    blocked = [str(stall) for stall in stalls if not forgiven(str(stall))]
    if blocked:
        pytest.fail("\n".join(blocked), pytrace=False)
