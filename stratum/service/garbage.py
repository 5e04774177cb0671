"""Garbage collection: freeing the data of volumes no metadata refers to any more.

A volume is *retired* (moved to the ``gc`` queue in the metadata store) in the same
transaction that stops referring to it: an overwrite, a delete, a tier move's old copy. The
:class:`GarbageCollector` frees retired volumes in the background, never one being read:

- in this process, the reads in flight are counted by the object service
  (``ObjectService.reading``), and the collector skips what they hold;
- with worker processes sharing the store, each retired entry also waits ``gc_grace``
  seconds from the pass that first saw it, and the volumes the workers say they read
  (``peers_reading``, see :mod:`stratum.service.readers`) are skipped;
- an entry whose data could not be deleted (a cold tier out of reach) stays queued and is
  tried again later (:mod:`stratum.service.gc_retries`);
- an entry whose data a live volume record still uses, where it is, is never freed: only
  the removal of a version for good retires its volume, which Object Lock decides
  (:func:`stratum.service.versioning.removal_refused`), so a locked version's data, hot or
  cold, stays even if something queued it by mistake.

At start-up the collector also sweeps *orphans*: shard files a crash left behind before
their metadata commit (no volume record names them). Only a crash leaves them, so a server
that stopped cleanly says so in the metadata store (``info`` key :data:`CLEAN_STOP_KEY`,
value ``{"format": 1, "at": <clock time>}``, written by :meth:`GarbageCollector.mark_clean_stop`
once every writer has stopped and the start-up sweep, if one ran, finished), and the next
start takes the mark away (committed before any write is served) and skips the sweep: the
walk of every volume record would otherwise cost each restart of a large store minutes of
a core (about 10 s a million records) while it serves. A kill, a crash, a worker process
that ended unasked or had to be killed, or a stop during the sweep leaves no mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from stratum.block.tierstore import TierStore
from stratum.meta import catalog, versions
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.gc_retries import DeleteRetries
from stratum.service.idset import IdSet
from stratum.util.clock import Clock
from stratum.util.pacing import Pacer
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.objects")

CLEAN_STOP_KEY = b"garbage.clean-stop"
GC_INTERVAL = 2.0
# Entries a pass remembers waiting out their grace (worker processes): about 100 bytes each.
# A pass that reaches this many stops there, so that a delete of millions of objects drains
# this many a grace period instead of remembering them all.
SEEN_LIMIT = 50_000
SWEEP_PAGE = 2000  # volume records per read transaction of the orphan sweep's walk
MULTI = "multi"  # layout of a completed multipart upload: a list of part volumes


class VolumeStorage(Protocol):
    """What the service needs of a tier's storage to read and free volumes."""

    def read(
        self, layout: str, location: Mapping[str, Any], start: int, end: int
    ) -> AsyncIterator[bytes]: ...

    async def delete(self, layout: str, location: Mapping[str, Any]) -> None: ...


def _object_data(gc_key: str, volume: VolumeRecord) -> bool:
    """A version's own data: not a part, a delete marker, nor a copy a move left behind."""
    return gc_key == volume.volume_id and bool(volume.order) and not volume.kind


def _forget_all(tx: Tx, gc_keys: list[str], revived: Sequence[VolumeRecord] = ()) -> set[str]:
    """Forget the entries; the keys this transaction forgot (not a concurrent pass)."""
    forgotten = {gc_key for gc_key in gc_keys if catalog.forget_garbage(tx, gc_key)}
    for volume in revived:  # a version still names it: its volume record comes back
        if catalog.get_volume(tx, volume.volume_id) is None:
            catalog.put_volume(tx, volume)
    return forgotten


def _still_held(tx: Tx, page: list[tuple[str, VolumeRecord]]) -> set[str]:
    """The entries of ``page`` whose data is still in use: a live volume record uses it where
    it is, or (its volume record gone) a version of a key still names its volume."""
    out = set()
    for gc_key, volume in page:
        live = catalog.get_volume(tx, volume.volume_id)
        if live is None:
            if volume.key and versions.version_of_volume(tx, volume) is not None:
                out.add(gc_key)
        elif (live.tier, live.location) == (volume.tier, volume.location):
            out.add(gc_key)
    return out


class GarbageCollector:
    """Frees retired volumes (a periodic pass, woken when something is retired)."""

    def __init__(
        self,
        meta: MetaStore,
        clock: Clock,
        tiers: Mapping[str, TierStore],
        storage: Callable[[str], VolumeStorage],
        reading: Counter[str],
    ) -> None:
        """``storage`` finds a tier's storage by name; ``reading`` counts this process's
        reads in flight by volume id (the service keeps it)."""
        self.meta = meta
        self.clock = clock
        self.tiers = tiers
        self.storage = storage
        self.reading = reading
        # Seconds a retired volume waits before it is freed: 0 when this process is the only
        # reader, more when worker processes share the store and may be reading it.
        self.gc_grace = 0.0
        # Several processes: what the workers read (asked once a pass).
        self.peers_reading: Callable[[], set[str]] | None = None
        # told of each object version's volume freed (deleted or replaced: not read again),
        # with the time its retirement was first seen; the tier engine learns from it
        self.on_freed: Callable[[VolumeRecord, float], None] | None = None
        self._retired_seen: dict[str, float] = {}  # gc key -> clock time first seen
        self._retries = DeleteRetries(clock)  # garbage whose delete failed, to try again
        self._periodic = Periodic(
            "gc", self.collect, interval=GC_INTERVAL, log=log, what="garbage collection pass"
        )
        self._sweep_task: asyncio.Task[int] | None = None
        self._started_marker = ""
        # Set by stop(): the sweep's walk, in a thread that cancelling its task does not stop,
        # ends at its next page (a walk of ten million records takes minutes).
        self._stopping = False
        self._swept = False  # the start-up sweep finished, or a clean stop made it needless
        self._sweep_failed = False  # the last sweep ended in an error (it judged nothing)

    async def start(self, started_marker: str) -> None:
        """Collect every so often, and sweep the orphans of files older than
        ``started_marker`` (a volume id prefix of this start), unless the last stop was
        clean (the mark is taken away first, durably: a crash from now on leaves none)."""
        self._started_marker = started_marker
        clean = await self.meta.write(_take_clean_stop)
        self._periodic.start()
        if clean is not None:
            log.info("the last stop was clean: no orphan sweep at start-up")
            self._swept = True
            return
        log.info("the last stop was not known to be clean: sweeping orphans")
        self._sweep_task = asyncio.create_task(self._sweep_at_start(), name="orphan-sweep")

    async def _sweep_at_start(self) -> int:
        removed = await self.sweep_orphans()
        # a walk cut short by a stop, or ended by an error, judged nothing: no clean mark
        self._swept = not self._stopped() and not self._sweep_failed
        return removed

    async def mark_clean_stop(self) -> bool:
        """After :meth:`stop`, with every writer of this store stopped: say so for the next
        start (see the module docstring). False, and no mark, if the start-up sweep did not
        finish."""
        if not self._swept:
            return False
        mark = json.dumps({"format": 1, "at": self.clock.now()}).encode()
        await self.meta.write(lambda tx: tx.put("info", CLEAN_STOP_KEY, mark))
        return True

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._sweep_task is not None:
            self._stopping = True
            self._sweep_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep_task
            self._sweep_task = None
        if self.gc_grace and self.peers_reading is not None:
            # The primary stops after its workers: nobody else reads now, so free what the
            # grace held back (a stop must not leave deleted data for a recovery to revive).
            self.gc_grace, self.peers_reading = 0.0, None
            try:
                await self.collect()
            except Exception:
                log.exception("last garbage collection pass failed")

    def _stopped(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        """Something was retired: run now rather than at the next tick."""
        self._periodic.wake()

    def live_volume_ids(self, page: int = SWEEP_PAGE) -> IdSet:
        """Every volume id some metadata refers to whose data may be shard files (blocking).
        Segment volumes are left out: their records live in segment files, which the sweep
        does not look at.

        ``volumes`` and then ``gc`` are read ``page`` records at a time in short read
        transactions: one transaction over a large store would hold up any growth of the
        map, and the growth every read after it, the event loop's included (seconds at a
        million objects). A volume moving while the walk runs (retired: into ``gc``, read
        after ``volumes``; a tier move: its new copy is newer than the sweep) is seen, but
        one moving back from ``gc``, or absorbed by a multipart completion, may be missed:
        :meth:`sweep_orphans` frees nothing on the word of one walk."""
        live = IdSet()
        pacer = Pacer()  # gives way to requests between pages (stratum.util.pacing)

        def add(volume_id: str, layout: str, location: Mapping[str, Any]) -> None:
            if layout != "seg":
                live.add(volume_id)
                # After a tier move the data sits under a storage id of its own.
                live.add(str(location.get("volume_id", "")))

        for table in ("volumes", "gc"):
            after = ""
            while not self._stopped() and (
                batch := self.meta.read(
                    functools.partial(catalog.volume_page, after=after, limit=page, table=table)
                )
            ):
                for _key, raw in batch:
                    volume = VolumeRecord.decode(raw)
                    add(volume.volume_id, volume.layout, volume.location)
                    if volume.layout == MULTI:
                        for part in volume.location["parts"]:
                            add(part["volume_id"], part["layout"], part["location"])
                after = batch[-1][0]
                pacer.pause_blocking()
        return live.freeze()

    async def sweep_orphans(self) -> int:
        """Free shard files left by a crash before their metadata commit: files no walk of
        the metadata names, in two walks one after the other (see :meth:`live_volume_ids`;
        the second only when the first found some)."""
        loop = asyncio.get_running_loop()
        self._sweep_failed = False
        erasure = [tier.erasure for tier in self.tiers.values() if tier.erasure is not None]
        try:
            live = await loop.run_in_executor(None, self.live_volume_ids)
            if self._stopped():  # the walk was cut short: it names too little to judge by
                return 0
            suspects: set[str] = set()

            def note(volume_id: str) -> bool:  # nothing is freed on one walk's word
                if volume_id not in live:
                    suspects.add(volume_id)
                return True

            for store in erasure:
                await loop.run_in_executor(None, store.sweep_orphans, note, self._started_marker)
            if not suspects:
                return 0
            again = await loop.run_in_executor(None, self.live_volume_ids)
            if self._stopped():
                return 0

            def kept(volume_id: str) -> bool:
                return volume_id not in suspects or volume_id in again

            removed = 0
            for store in erasure:
                removed += await loop.run_in_executor(
                    None, store.sweep_orphans, kept, self._started_marker
                )
        except Exception:
            log.exception("orphan sweep failed")
            self._sweep_failed = True
            return 0
        if removed:
            log.info("removed %d orphaned shard files left by an interrupted write", removed)
        return removed

    async def free_volume(self, volume: VolumeRecord) -> None:
        """Delete the data of a volume no metadata refers to (a failure is logged)."""
        try:
            await self.delete_data(volume)
        except Exception:
            log.exception("could not free volume %s; it will be swept later", volume.volume_id)

    async def _delete_page(self, due: Sequence[tuple[str, VolumeRecord]]) -> list[Exception | None]:
        """Free the data of a page's due entries; for each, the error that stopped it or None.
        Small objects of a local tier go in one trip to a thread per tier (a page of deletes
        was a trip each, the most of what freeing them cost); the rest one by one."""
        errors: list[Exception | None] = [None] * len(due)
        small: dict[str, list[int]] = {}
        for n, (_gc_key, volume) in enumerate(due):
            if volume.layout == "seg" and volume.tier in self.tiers:
                small.setdefault(volume.tier, []).append(n)
                continue
            try:
                await self.delete_data(volume)
            except Exception as exc:
                errors[n] = exc
        for tier, entries in small.items():
            try:
                found = await self.tiers[tier].delete_small([due[n][1].location for n in entries])
            except Exception as exc:  # the tier itself failed: every entry is tried again
                found = [exc] * len(entries)
            for n, error in zip(entries, found, strict=True):
                errors[n] = error
        return errors

    async def delete_data(self, volume: VolumeRecord) -> None:
        """Raises the first error after trying every part (deleting again is harmless)."""
        tier = self.storage(volume.tier)
        if volume.layout != MULTI:
            await tier.delete(volume.layout, volume.location)
            return
        pieces = [(part["layout"], part["location"]) for part in volume.location["parts"]]
        if "manifest" in volume.location:
            pieces.append(("seg", volume.location["manifest"]))
        first: Exception | None = None
        for layout, location in pieces:
            try:
                await tier.delete(layout, location)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    async def collect(self) -> int:
        """Free every retired volume not being read; return how many were freed.

        The whole queue, a page at a time: with a grace period (several processes) each
        entry waits from the pass that first saw it, so a long queue drains in one wait (up
        to :data:`SEEN_LIMIT` entries a wait: a pass remembers no more).
        An entry whose data could not be deleted (a cold tier out of reach) stays queued and
        is tried again later and later, while the entries after it go on being freed.
        """
        freed = 0
        now = self.clock.now()
        seen: dict[str, float] = {}
        elsewhere: set[str] | None = None  # what the other processes read, asked once a pass
        after = ""
        while True:
            page = self.meta.read(functools.partial(catalog.pending_garbage, after=after))
            if not page:
                break
            after = page[-1][0]
            done: list[str] = []
            due: list[tuple[str, VolumeRecord]] = []  # to free now
            revived: list[VolumeRecord] = []
            ended: list[tuple[str, VolumeRecord, float]] = []
            held = self.meta.read(functools.partial(_still_held, page=page))
            for gc_key, volume in page:
                if gc_key in held:
                    revived.append(volume)
                    # Queued, yet a version still uses this very data (a locked one
                    # included): deleting it would lose a version that was never removed.
                    # Forget the entry; keep the data.
                    log.error("garbage entry %s names live data: not freed", gc_key)
                    done.append(gc_key)
                    continue
                # (without a grace, only entries left for a later pass stay remembered)
                first = seen[gc_key] = self._retired_seen.get(gc_key, now)
                if now - first < self.gc_grace or self.reading.get(volume.volume_id):
                    continue
                if not self._retries.may_try(gc_key, volume.tier):
                    continue
                if self.peers_reading is not None:
                    if elsewhere is None:
                        loop = asyncio.get_running_loop()
                        elsewhere = await loop.run_in_executor(None, self.peers_reading)
                    if volume.volume_id in elsewhere:
                        continue
                due.append((gc_key, volume))
            for (gc_key, volume), error in zip(due, await self._delete_page(due), strict=True):
                if error is not None:
                    self._retries.failed(gc_key, volume.tier, error)
                    continue
                self._retries.succeeded(gc_key, volume.tier)
                done.append(gc_key)
                first = seen.pop(gc_key, now)
                if _object_data(gc_key, volume):
                    ended.append((gc_key, volume, first))
            if done:
                # One commit for the page, not one per volume: each commit costs the writer
                # two fsyncs, and a large delete queues thousands of volumes. A crash before
                # it frees those volumes again at the next pass: harmless.
                forget = functools.partial(_forget_all, gc_keys=done, revived=revived)
                forgotten = await self.meta.write(forget)
                freed += len(done)
                if self.on_freed is not None:  # once per version, whichever pass forgot it
                    for gc_key, volume, first in ended:
                        if gc_key in forgotten:
                            self.on_freed(volume, first)
            if self.gc_grace and len(seen) >= SEEN_LIMIT:
                break  # the rest waits for a later pass, once these are freed
        self._retired_seen = seen
        self._retries.end_pass()
        return freed


def _take_clean_stop(tx: Tx) -> bytes | None:
    """The clean-stop mark, removed (None: the last stop was not clean)."""
    mark = tx.get("info", CLEAN_STOP_KEY)
    if mark is not None:
        tx.delete("info", CLEAN_STOP_KEY)
    return mark
