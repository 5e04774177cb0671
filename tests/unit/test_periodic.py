"""The periodic-task loop (stratum.util.periodic), driven by a clock the test moves."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable

import pytest

from stratum.util.periodic import FAILURE_PAUSE, Periodic

log = logging.getLogger("test.periodic")


async def settle() -> None:
    """Let every task that can run, run (the loops here do no I/O)."""
    for _ in range(50):
        await asyncio.sleep(0)


class ManualTimer:
    """``asyncio.sleep`` on a clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleeping: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleeping, (self.now + seconds, next(self._order), done))
        await done

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        await settle()
        while self._sleeping and self._sleeping[0][0] <= end:
            when, _, done = heapq.heappop(self._sleeping)
            if done.done():  # a wait a wake-up cut short
                continue
            self.now = when
            done.set_result(None)
            await settle()
        self.now = end
        await settle()


class Task:
    """A run that records when it ran, and fails while ``failing`` says so."""

    def __init__(self, timer: ManualTimer) -> None:
        self.timer = timer
        self.runs: list[float] = []
        self.failing: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set: each run waits for it
        self.cancelled = False

    async def __call__(self) -> None:
        self.runs.append(self.timer.now)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if self.failing is not None:
            raise self.failing


@pytest.fixture
def timer() -> ManualTimer:
    return ManualTimer()


@pytest.fixture
def task(timer: ManualTimer) -> Task:
    return Task(timer)


@pytest.fixture
async def loops() -> AsyncIterator[list[Periodic]]:
    started: list[Periodic] = []
    yield started
    for loop in started:
        await loop.stop()


def make(
    loops: list[Periodic],
    task: Task,
    timer: ManualTimer,
    interval: float | Callable[[], float] = 10.0,
    *,
    first_delay: float | None = None,
    expected: tuple[type[Exception], ...] = (),
) -> Periodic:
    loop = Periodic(
        "test",
        task,
        interval=interval,
        log=log,
        what="test pass",
        first_delay=first_delay,
        expected=expected,
        sleep=timer.sleep,
    )
    loop.start()
    loops.append(loop)
    return loop


async def test_runs_after_the_first_delay_then_every_interval(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    make(loops, task, timer)
    await timer.advance(9.9)
    assert task.runs == []
    await timer.advance(30.1)
    assert task.runs == [10.0, 20.0, 30.0, 40.0]


async def test_a_first_delay_of_its_own(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    make(loops, task, timer, first_delay=0)
    await timer.advance(25)
    assert task.runs == [0.0, 10.0, 20.0]


async def test_a_wake_up_runs_now_and_the_interval_counts_from_that_run(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    loop = make(loops, task, timer)
    await timer.advance(3)
    loop.wake()
    await settle()
    assert task.runs == [3.0]
    await timer.advance(12)
    assert task.runs == [3.0, 13.0]


async def test_wake_ups_during_a_run_make_one_more_run_right_after(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    task.gate = asyncio.Event()
    loop = make(loops, task, timer, first_delay=0)
    await settle()
    assert task.runs == [0.0]
    loop.wake()
    loop.wake()
    task.gate.set()
    await settle()
    assert task.runs == [0.0, 0.0], "work queued during a run is not left for an interval"
    await timer.advance(10)
    assert task.runs == [0.0, 0.0, 10.0]


async def test_the_interval_may_be_asked_after_each_run(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    waits = iter([5.0, 1.0, 100.0])
    make(loops, task, timer, interval=lambda: next(waits), first_delay=0)
    await timer.advance(50)
    assert task.runs == [0.0, 5.0, 6.0]


async def test_an_infinite_interval_runs_on_wake_ups_alone(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    loop = make(loops, task, timer, interval=math.inf)
    await timer.advance(1e9)
    assert task.runs == []
    loop.wake()
    await timer.advance(1)
    assert task.runs == [1e9]


async def test_failures_are_logged_once_per_kind_and_the_loop_goes_on(
    loops: list[Periodic], task: Task, timer: ManualTimer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=log.name)
    task.failing = OSError("disk on fire")
    make(loops, task, timer, first_delay=0)
    await timer.advance(20)
    assert task.runs == [0.0, 10.0, 20.0], "the interval is kept while it fails"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["test pass failed"]
    assert errors[0].exc_info is not None, "the first of a kind comes with its traceback"
    again = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert again == [
        "test pass failed again (2 in a row): disk on fire",
        "test pass failed again (3 in a row): disk on fire",
    ]
    task.failing = ValueError("another kind")
    await timer.advance(10)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
    task.failing = None
    await timer.advance(10)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["test pass works again after 4 failure(s)"]
    caplog.clear()
    task.failing = OSError("disk on fire")
    await timer.advance(10)
    assert [r.getMessage() for r in caplog.records] == ["test pass failed"], (
        "after a recovery a failure is news again"
    )


async def test_expected_failures_are_one_line(
    loops: list[Periodic], task: Task, timer: ManualTimer, caplog: pytest.LogCaptureFixture
) -> None:
    task.failing = OSError("pool suspended")
    make(loops, task, timer, first_delay=0, expected=(OSError,))
    await settle()
    (record,) = caplog.records
    assert record.getMessage() == "test pass failed: pool suspended"
    assert record.exc_info is None


async def test_a_failing_run_does_not_spin_on_wake_ups(
    loops: list[Periodic], task: Task, timer: ManualTimer
) -> None:
    task.failing = RuntimeError("always")
    loop = make(loops, task, timer, first_delay=0)
    await settle()
    for _ in range(5):
        loop.wake()
        await settle()
    assert task.runs == [0.0]
    await timer.advance(FAILURE_PAUSE)
    assert task.runs == [0.0, FAILURE_PAUSE], "a wake-up waits for the pause, not the interval"


async def test_stop_cancels_the_run_in_progress(task: Task, timer: ManualTimer) -> None:
    task.gate = asyncio.Event()
    loop = Periodic(
        "test", task, interval=10, log=log, what="test pass", first_delay=0, sleep=timer.sleep
    )
    loop.start()
    with pytest.raises(RuntimeError):
        loop.start()
    await settle()
    assert loop.running and task.runs == [0.0]
    await loop.stop()
    assert task.cancelled and not loop.running
    await loop.stop()  # a second stop is harmless


async def test_stop_during_a_wait_and_a_restart(task: Task, timer: ManualTimer) -> None:
    loop = Periodic("test", task, interval=10, log=log, what="test pass", sleep=timer.sleep)
    loop.start()
    await timer.advance(5)
    await loop.stop()
    await timer.advance(100)
    assert task.runs == []
    loop.start()
    await timer.advance(10)
    await loop.stop()
    assert task.runs == [115.0]


async def test_on_the_event_loops_own_clock() -> None:
    ran = asyncio.Event()
    count = 0

    async def run() -> None:
        nonlocal count
        count += 1
        if count == 3:
            ran.set()

    loop = Periodic("test", run, interval=0.01, log=log, what="test pass")
    loop.start()
    await asyncio.wait_for(ran.wait(), 5)
    await loop.stop()
    stopped_at = count
    await asyncio.sleep(0.05)
    assert count == stopped_at


async def test_a_cancelled_stop_is_cancelled(timer: ManualTimer) -> None:
    """stop() swallows the cancellation it causes, never one aimed at its caller."""
    cleanup = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await cleanup.wait()

    loop = Periodic(
        "test", slow_to_stop, interval=10, log=log, what="test", first_delay=0, sleep=timer.sleep
    )
    loop.start()
    await settle()
    stopper = asyncio.create_task(loop.stop())
    await settle()
    stopper.cancel()
    await settle()
    assert stopper.cancelled()
