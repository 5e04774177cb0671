"""Healing: repairing a volume soon after a read met damage in it, without waiting for a scrub.

A read that had to work around a damaged shard or replica reports its volume; the healer
checks and repairs queued volumes one at a time (:meth:`Maintenance.check_stored
<stratum.maintenance.scrub.Maintenance.check_stored>`).

A volume that cannot be repaired now (too few good shards, every disk gone, its disk
offline) is not retried at once: checking it again reports the same damage, and an
unconditional retry would spin. It waits instead, per volume, :data:`RETRY_FIRST` seconds,
doubling with each failure up to :data:`RETRY_MAX` (:class:`~stratum.util.backoff.Backoff`,
on the injected clock); reads that meet its damage meanwhile do not queue it again. A disk
coming back online makes every waiting volume due at once. Each volume is reported once: an
ERROR when it first cannot be repaired, an INFO when it is repaired (or found readable, or
freed) later; the attempts in between log at the debug level. :meth:`Healer.status` and the
``stratum_heal_unrepaired_volumes`` metric count the volumes waiting.

At most :data:`MAX_TRACKED` volumes wait at once (the set lives in memory): past that, a
volume that cannot be repaired is checked again only when a read reports it again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore
from stratum.util.backoff import Backoff
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.maintenance")

RETRY_FIRST = 30.0  # seconds before a volume that could not be repaired is tried again
RETRY_MAX = 3600.0  # the wait doubles with each failure in a row, up to this
MAX_TRACKED = 10_000
MAX_LISTED = 20  # volumes named in status()

# "clean" | "repaired" | "unrepaired" | "gone", and why
Check = Callable[[VolumeRecord], Awaitable[tuple[str, str]]]


class Healer:
    """The heal queue, its loop, and the volumes that could not be repaired yet."""

    def __init__(self, meta: MetaStore, clock: Clock, check: Check) -> None:
        self.meta = meta
        self.clock = clock
        self._check = check
        self.waiting = Backoff(clock, first=RETRY_FIRST, cap=RETRY_MAX)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # queued or being checked: reports meanwhile add nothing
        self._full_logged = False
        self.healed = 0
        self._loop = Periodic(
            "heal",
            self.heal,
            interval=self.waiting.next_due_in,  # waits for reports, or the next retry
            log=log,
            what="healing",
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def enqueue(self, volume_id: str) -> None:
        """A read met damage in the volume (call on the event loop)."""
        if volume_id in self._queued or self.waiting.waiting(volume_id):
            return
        self._queued.add(volume_id)
        self._queue.put_nowait(volume_id)
        self._loop.wake()

    def retry_all_now(self) -> None:
        """Something changed that may make repairs possible (a disk came back): retry now."""
        if len(self.waiting):
            self.waiting.retry_all_now()
            self._loop.wake()

    async def heal(self) -> None:
        """Check the queued volumes, and those whose retry is due, one at a time."""
        for volume_id in self.waiting.due():
            if volume_id not in self._queued:
                self._queued.add(volume_id)
                self._queue.put_nowait(volume_id)
        while not self._queue.empty():
            volume_id = self._queue.get_nowait()
            try:
                volume = self.meta.read(functools.partial(catalog.get_volume, volume_id=volume_id))
                outcome, why = ("gone", "") if volume is None else await self._check(volume)
            except Exception as exc:
                self._failed(volume_id, f"{type(exc).__name__}: {exc}", exc)
                continue
            finally:
                self._queued.discard(volume_id)
            self.settle(volume_id, outcome, why)

    def settle(self, volume_id: str, outcome: str, why: str) -> None:
        """Record the outcome of a check of the volume (the healer's, or a scrub's)."""
        if outcome == "unrepaired":
            self._failed(volume_id, why)
            return
        failure = self.waiting.succeeded(volume_id)
        if outcome == "repaired":
            self.healed += 1
        if failure is not None:
            done = {"gone": "was freed", "clean": "is readable again"}.get(outcome, "was repaired")
            log.info(
                "volume %s %s, after %d failed attempt(s) to repair it",
                volume_id,
                done,
                failure.attempts,
            )
        elif outcome == "repaired":
            log.info("healed volume %s", volume_id)

    def _failed(self, volume_id: str, why: str, exc: Exception | None = None) -> None:
        if volume_id not in self.waiting and len(self.waiting) >= MAX_TRACKED:
            if not self._full_logged:
                self._full_logged = True
                log.error(
                    "more than %d volumes could not be repaired: further ones are retried only "
                    "when a read meets them again (volume %s: %s)",
                    MAX_TRACKED,
                    volume_id,
                    why,
                )
            return
        failure = self.waiting.failed(volume_id, why)
        wait = failure.retry_at - self.clock.now()
        if failure.attempts == 1:
            log.error(
                "volume %s could not be repaired: %s (retrying in %.0f s, then less often)",
                volume_id,
                why,
                wait,
                exc_info=exc,
            )
        else:
            log.debug(
                "volume %s still cannot be repaired (%d attempts): %s; next in %.0f s",
                volume_id,
                failure.attempts,
                why,
                wait,
            )

    def status(self) -> dict[str, Any]:
        waiting = sorted(self.waiting.items(), key=lambda item: item[1].since)
        return {
            "queued": self._queue.qsize(),
            "healed": self.healed,
            "unrepaired": len(waiting),
            "unrepaired_volumes": [
                {
                    "volume_id": volume_id,
                    "why": failure.why,
                    "since": failure.since,
                    "attempts": failure.attempts,
                    "next_attempt": failure.retry_at,
                }
                for volume_id, failure in waiting[:MAX_LISTED]
            ],
        }
