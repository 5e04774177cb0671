"""Where the tier engine keeps what its learner learned, across restarts and processes.

LMDB keys (table ``info``), each value a learner record (format in
:mod:`stratum.tiering.learned`):

- ``tiering.learner``: the primary process's statistics, written every
  :data:`SAVE_INTERVAL` of the injected clock (after a pass) and at stop, read at start.
- ``tiering.learner.from.<pid>.<seq>``: what one worker process learned from the reads it
  recorded since its previous hand-over (written every :data:`HAND_OVER_INTERVAL`, when the
  primary asks for the workers' reads before ``stratum tier run``, and at stop); the primary
  adds each to its own at the start of a pass and deletes it.

Worker processes serve reads too (``[server] workers``): without the hand-over the primary
would see only its own share of the re-reads, and every class would look less read than it
is. Encoding and decoding (up to a few MB) run off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os

from stratum.meta.store import MetaStore, Tx
from stratum.tiering.learned import Learner, encode_snapshot

__all__ = ["HAND_OVER_INTERVAL", "SAVE_INTERVAL", "LearnerStore"]

SAVED_KEY = b"tiering.learner"
FROM_PREFIX = b"tiering.learner.from."
SAVE_INTERVAL = 600.0  # seconds of the injected clock: a crash forgets at most this much
HAND_OVER_INTERVAL = 30.0  # seconds between a worker's hand-overs (a flush cadence)
MAX_HANDED_OVER = 1000  # worker records merged per pass at most (the rest at the next)


def _read_saved(tx: Tx) -> bytes | None:
    return tx.get("info", SAVED_KEY)


def _any_handed_over(tx: Tx) -> bool:
    cursor = tx.cursor("info")
    return bool(cursor.set_range(FROM_PREFIX)) and bytes(cursor.key()).startswith(FROM_PREFIX)


def _take_handed_over(tx: Tx) -> list[bytes]:
    out: list[bytes] = []
    cursor = tx.cursor("info")
    if not cursor.set_range(FROM_PREFIX):
        return out
    keys = []
    for key, raw in cursor:
        if not bytes(key).startswith(FROM_PREFIX) or len(out) >= MAX_HANDED_OVER:
            break
        keys.append(bytes(key))
        out.append(bytes(raw))
    for key in keys:
        tx.delete("info", key)
    return out


class LearnerStore:
    """Loads, saves and merges one process's :class:`Learner` (see the module docstring)."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self._sequence = 0

    async def load(self, learner: Learner) -> Learner:
        """A learner with ``learner``'s prices holding the saved statistics, or ``learner``
        itself when none are saved (decoded off the loop, then swapped in by the caller)."""
        loaded = Learner(learner.prices, learner.max_classes)
        raw = await asyncio.get_running_loop().run_in_executor(None, self.meta.read, _read_saved)
        ok = await asyncio.get_running_loop().run_in_executor(None, loaded.load, raw)
        return loaded if ok else learner

    async def save(self, learner: Learner) -> None:
        """Copied on the loop (cheap), encoded and written off it."""
        await self._put(SAVED_KEY, learner.snapshot())

    async def hand_over(self, learner: Learner) -> None:
        """A worker: store what its learner learned since the last hand-over, and forget it."""
        if not learner.classes and not learner.deferred:
            return
        self._sequence += 1
        key = FROM_PREFIX + f"{os.getpid()}.{self._sequence:012d}".encode()
        await self._put(key, learner.take())

    async def merge_handed_over(self, learner: Learner) -> int:
        """The primary: add the workers' records to ``learner``; how many there were."""
        if not self.meta.read(_any_handed_over):  # a point read: no write when none
            return 0
        records = await self.meta.write(_take_handed_over)
        for raw in records:
            learner.merge(raw)
        return len(records)

    async def _put(self, key: bytes, snapshot: dict[str, object]) -> None:
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(None, encode_snapshot, snapshot)
        await self.meta.write(functools.partial(_put_info, key=key, raw=raw))


def _put_info(tx: Tx, key: bytes, raw: bytes) -> None:
    tx.put("info", key, raw)
