"""The event-loop watchdog (stratum.util.loopwatch): what it reports, and what it must not.

These tests block their loops on purpose, so the suite-wide watchdog of tests/conftest.py is
off for them (``blocks_loop``); each runs its own, with a 50 ms threshold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from stratum.util.loopwatch import LoopWatchdog, Stall
from tests import loopcheck
from tests.loopcheck import forgiven

pytestmark = pytest.mark.blocks_loop

THRESHOLD = 0.05

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LOOPS: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def _watched(factory: LoopFactory, body: Callable[[], Coroutine[Any, Any, None]]) -> list[Stall]:
    stalls: list[Stall] = []
    loop = factory()
    watchdog = LoopWatchdog(THRESHOLD, stalls.append)

    async def main() -> None:
        watchdog.start(asyncio.get_running_loop())
        await asyncio.sleep(0.05)  # a few heartbeats first
        await body()
        await asyncio.sleep(0.05)

    try:
        loop.run_until_complete(main())
        watchdog.stop()
    finally:
        loop.close()
    return stalls


def sleeping_on_the_loop(seconds: float) -> None:
    time.sleep(seconds)


def computing_on_the_loop(seconds: float) -> int:
    end, n = time.thread_time() + seconds, 0
    while time.thread_time() < end:
        n += 1
    return n


@pytest.mark.parametrize("kind", LOOPS)
def test_a_blocking_call_is_reported_with_its_code_and_duration(kind: str) -> None:
    async def body() -> None:
        sleeping_on_the_loop(0.25)

    stalls = _watched(LOOPS[kind], body)
    assert len(stalls) == 1, stalls
    assert 200 <= stalls[0].ms < 1000
    assert "sleeping_on_the_loop (tests/unit/test_loopwatch.py:" in stalls[0].where
    assert str(stalls[0]).startswith("event loop blocked ")


@pytest.mark.parametrize("kind", LOOPS)
def test_a_long_computation_is_reported(kind: str) -> None:
    async def body() -> None:
        computing_on_the_loop(0.2)

    stalls = _watched(LOOPS[kind], body)
    assert len(stalls) == 1, stalls
    assert stalls[0].cpu_ms >= 150
    assert "computing_on_the_loop" in stalls[0].where


@pytest.mark.parametrize("kind", LOOPS)
def test_waiting_and_work_in_executors_are_not_stalls(kind: str) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.2)
        await loop.run_in_executor(None, sleeping_on_the_loop, 0.2)
        await loop.run_in_executor(None, computing_on_the_loop, 0.2)
        for _ in range(20):  # short steps, far under the threshold
            computing_on_the_loop(0.005)
            await asyncio.sleep(0)

    assert _watched(LOOPS[kind], body) == []


def test_the_time_between_two_runs_of_a_loop_is_left_out() -> None:
    stalls: list[Stall] = []
    loop = asyncio.new_event_loop()
    watchdog = LoopWatchdog(THRESHOLD, stalls.append)
    try:
        watchdog.start(loop)
        loop.run_until_complete(asyncio.sleep(0.05))
        watchdog.pause()
        time.sleep(0.2)  # the loop is not running: nothing is held up
        watchdog.resume()
        loop.run_until_complete(asyncio.sleep(0.05))
        watchdog.pause()
        assert stalls == []
        watchdog.resume()

        async def block() -> None:
            sleeping_on_the_loop(0.2)

        loop.run_until_complete(block())  # a stall at the very end of a run still counts
        watchdog.stop()
    finally:
        loop.close()
    assert len(stalls) == 1 and "sleeping_on_the_loop" in stalls[0].where


def test_allowlisted_code_is_forgiven(monkeypatch: pytest.MonkeyPatch) -> None:
    report = (
        "event loop blocked 80 ms in sleep (stratum/x.py:3) <- "
        "Thing.open (stratum/thing.py:41) <- main (tests/t.py:9)"
    )
    assert not forgiven(report)
    monkeypatch.setitem(loopcheck.ALLOWED, ("stratum/thing.py", "Thing.open"), "a reason")
    assert forgiven(report)
    assert not forgiven(report.replace("Thing.open", "Thing.close"))


def test_a_read_transaction_waiting_for_the_disk_is_forgiven_one_computing_is_not() -> None:
    stack = "in Tx.get (stratum/meta/store.py:139) <- MetaStore.read (stratum/meta/store.py:219)"
    assert forgiven(f"event loop blocked 112 ms (6 ms on the CPU, 22 ms waiting for a CPU) {stack}")
    assert not forgiven(f"event loop blocked 112 ms (70 ms on the CPU) {stack}")
    assert not forgiven(
        f"event loop blocked 90 ms (30 ms on the CPU, 30 ms waiting for a CPU) {stack}"
    )
    outside = "in Tx.get (stratum/meta/store.py:139) <- reader (stratum/meta/store.py:225)"
    assert not forgiven(f"event loop blocked 112 ms (6 ms on the CPU) {outside}")
