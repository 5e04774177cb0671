"""Retrying what failed, per key, later and later: exponential backoff on an injected clock.

Background work that keeps failing for one item (a volume the healer cannot repair, a
garbage volume whose remote copy cannot be deleted) must neither retry it in a tight loop
nor give it up: :class:`Backoff` remembers each failing key, when it first failed, why, and
when it may be tried again. The wait starts at ``first`` seconds and doubles with each
failure in a row, up to ``cap``. The caller decides what "trying" means and asks
:meth:`Backoff.waiting` before each attempt; :meth:`Backoff.failed` and
:meth:`Backoff.succeeded` say how it went, and tell whether this is news (a first failure, a
success after failures), so each key is reported once rather than at every attempt.

State is in memory: after a restart every key is tried once more at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from stratum.util.clock import Clock


@dataclass
class Failure:
    """A key that failed, as :class:`Backoff` keeps it."""

    attempts: int  # failures in a row
    since: float  # clock time of the first of them
    retry_at: float  # clock time from which it may be tried again
    why: str  # the last failure's reason


class Backoff:
    def __init__(self, clock: Clock, *, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"need 0 < first <= cap, got first={first} cap={cap}")
        self.clock = clock
        self.first = first
        self.cap = cap
        self._failing: dict[str, Failure] = {}

    def __len__(self) -> int:
        return len(self._failing)

    def __contains__(self, key: str) -> bool:
        return key in self._failing

    def items(self) -> Iterator[tuple[str, Failure]]:
        return iter(list(self._failing.items()))

    def get(self, key: str) -> Failure | None:
        return self._failing.get(key)

    def waiting(self, key: str) -> bool:
        """Whether ``key`` failed and its next attempt is not due yet."""
        failure = self._failing.get(key)
        return failure is not None and failure.retry_at > self.clock.now()

    def failed(self, key: str, why: str) -> Failure:
        """Record a failed attempt; ``attempts == 1`` in the answer means it is news."""
        now = self.clock.now()
        failure = self._failing.get(key)
        if failure is None:
            failure = self._failing[key] = Failure(0, now, now, why)
        failure.attempts += 1
        failure.why = why
        failure.retry_at = now + min(self.cap, self.first * 2.0 ** min(failure.attempts - 1, 64))
        return failure

    def succeeded(self, key: str) -> Failure | None:
        """Forget ``key``; the failure it had, if any (then its recovery is news)."""
        return self._failing.pop(key, None)

    def forget(self, key: str) -> None:
        self._failing.pop(key, None)

    def due(self) -> list[str]:
        """The failing keys whose next attempt is due now."""
        now = self.clock.now()
        return [key for key, failure in self._failing.items() if failure.retry_at <= now]

    def next_due_in(self) -> float:
        """Seconds until the earliest next attempt (0 if one is due, ``inf`` if none)."""
        if not self._failing:
            return math.inf
        earliest = min(failure.retry_at for failure in self._failing.values())
        return max(0.0, earliest - self.clock.now())

    def retry_all_now(self) -> None:
        """Make every failing key due now (something changed: a disk came back), keeping
        their failure counts, so a key that fails again waits as long as it would have."""
        now = self.clock.now()
        for failure in self._failing.values():
            failure.retry_at = min(failure.retry_at, now)
