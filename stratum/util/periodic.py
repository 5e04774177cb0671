"""Background work that runs every so often: the one loop behind every periodic task.

A :class:`Periodic` runs a coroutine function after ``first_delay`` seconds and then again
``interval`` seconds after each run ends:

- :meth:`Periodic.wake` makes the next run start now. A wake-up during a run is kept:
  another run follows at once, so work queued meanwhile is not left for a whole interval.
- ``interval`` may be a function, asked after each run: a task that knows when it is next
  due (a snapshot schedule) says so there. ``math.inf`` waits for wake-ups alone.
- A run that raises does not end the loop, which goes on at the same interval. The first
  failure of each kind (the exception's type and the line that raised it) is logged with
  its traceback, or on one line for the ``expected`` types; repeats of a kind already
  logged go to the debug level, and the first run that succeeds afterwards says so. After
  a failure wake-ups wait :data:`FAILURE_PAUSE` seconds: a run that fails at once on every
  wake-up cannot spin.
- :meth:`Periodic.stop` cancels the run in progress, or the wait, and returns once the
  task has ended.

Waits go through ``sleep`` (``asyncio.sleep`` unless given), so tests can drive the loop
with a clock of their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType

Sleep = Callable[[float], Awaitable[None]]

FAILURE_PAUSE = 1.0  # seconds after a failed run before a wake-up may start the next


class Periodic:
    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[object]],
        *,
        interval: float | Callable[[], float],
        log: logging.Logger,
        what: str,
        first_delay: float | None = None,
        expected: tuple[type[Exception], ...] = (),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``what`` names a run in log lines ("garbage collection pass" -> "garbage collection
        pass failed"); ``first_delay`` defaults to the interval."""
        self.name = name
        self._run = run
        self._interval = interval
        self._log = log
        self._what = what
        self._first_delay = first_delay
        self._expected = expected
        self._sleep = sleep
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logged: set[tuple[type[BaseException], str, int]] = set()
        self._failures = 0  # in a row, since the last run that succeeded

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the loop (inside the event loop); a second call is an error."""
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Run now rather than at the end of the current wait (after the run in progress)."""
        self._wakeup.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # stop() itself was cancelled: not ours to swallow

    def _next_interval(self) -> float:
        return self._interval() if callable(self._interval) else self._interval

    async def _loop(self) -> None:
        delay = self._next_interval() if self._first_delay is None else self._first_delay
        while True:
            await self._wait(delay)
            self._wakeup.clear()
            try:
                await self._run()
            except Exception as exc:
                self._failed(exc)
                delay = self._next_interval()
                pause = min(FAILURE_PAUSE, delay) if delay > 0 else FAILURE_PAUSE
                await self._sleep(pause)  # wake-ups wait: no spinning on a failing run
                delay -= pause
                continue
            self._succeeded()
            delay = self._next_interval()

    async def _wait(self, delay: float) -> None:
        """Until ``delay`` seconds have passed or :meth:`wake` is called."""
        if self._wakeup.is_set() or delay <= 0:
            return
        if math.isinf(delay):
            await self._wakeup.wait()
            return
        # The timer rings the wake-up bell: a wake-up then resumes this task at once, as a
        # plain Event.wait() would, rather than through a second task.
        waiting = True

        def ring(_timer: asyncio.Future[None]) -> None:
            if waiting:  # not a timer cancelled below, nor one that ended as a wake-up came
                self._wakeup.set()

        timer = asyncio.ensure_future(self._sleep(delay))
        timer.add_done_callback(ring)
        try:
            await self._wakeup.wait()
        finally:
            waiting = False
            timer.cancel()

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        kind = (type(exc), *_raised_at(exc.__traceback__))
        if kind in self._logged:
            self._log.debug("%s failed again (%d in a row): %s", self._what, self._failures, exc)
        elif isinstance(exc, self._expected):
            self._logged.add(kind)
            self._log.error("%s failed: %s", self._what, exc)
        else:
            self._logged.add(kind)
            self._log.error("%s failed", self._what, exc_info=exc)

    def _succeeded(self) -> None:
        if self._failures:
            self._log.info("%s works again after %d failure(s)", self._what, self._failures)
            self._failures = 0
            self._logged.clear()


def _raised_at(tb: TracebackType | None) -> tuple[str, int]:
    """The file and line where an exception was raised (the innermost frame)."""
    if tb is None:
        return "", 0
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno
