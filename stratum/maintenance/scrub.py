"""Scrub, heal and disk monitoring: finding damage before a user does, and repairing it.

- **Scrub.** A pass walks every volume in id order, verifies every block (erasure
  shards) or every copy (small-object segments) and repairs what is missing or corrupt
  from the rest. Background passes run every ``scrub.interval`` at ``scrub.rate`` bytes
  per second and resume where they stopped after a restart (the cursor is kept in LMDB,
  ``info`` key ``scrub``, format version 1). ``scrub(throttle=False)`` runs a full pass
  at full speed for an operator; a bucket or key narrows it.
- **Heal.** A read that had to work around a damaged shard or copy queues its volume;
  the healer repairs queued volumes promptly, without waiting for the next scrub, and
  retries one it could not repair later and later (:mod:`stratum.maintenance.heal`).
- **Disks.** Every few seconds each disk is probed. A disk that disappears or fails is
  marked offline: reads go on from the other shards, new shards go to the online disks,
  and new writes stop only when fewer than k+1 disks remain. A disk that comes back
  empty at the same path (a replaced disk) takes its old identity and is refilled by an
  immediate full-speed scrub, during which it shows as "rebuilding". A scrub asked for
  probes the disks first, so a disk replaced since the last probe is taken back (its
  layout recreated) before the pass writes to it.
- **Cold bucket.** A full pass ends with a sweep of the cold bucket for objects no volume
  refers to (:mod:`stratum.maintenance.coldsweep`).

A check holds its volume like a GET does (``ObjectService.reading``), so the garbage
collector cannot free it meanwhile, and looks at the volume's record as it is once held: a
volume deleted, overwritten or moved since the pass listed it is not reported as
unrepaired. A repair may move a shard to another disk; the new location is committed only
if the volume still has the location that was repaired (an overwrite meanwhile wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from stratum.block.disk import open_disk
from stratum.block.erasure import ECLocation
from stratum.block.errors import StorageError
from stratum.block.segments import SegLocation
from stratum.block.tierstore import TierStore
from stratum.maintenance.coldsweep import MIN_AGE, sweep_cold
from stratum.maintenance.heal import Healer
from stratum.meta import catalog, versions
from stratum.meta.records import VolumeRecord
from stratum.meta.store import Tx
from stratum.meta.version_listing import every_version
from stratum.service.objects import MULTI, ObjectService
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

if TYPE_CHECKING:  # the cold tier's module imports botocore and cryptography: only when used
    from stratum.block.cold import ColdStore

log = logging.getLogger("stratum.maintenance")

INFO_KEY = b"scrub"
STATE_VERSION = 1
BATCH = 64
PROBE_INTERVAL = 5.0
MAX_LISTED_FAILURES = 100


@dataclass
class ScrubPass:
    """Figures of one scrub pass (persisted while it runs, kept when it ends)."""

    started: float = 0.0
    finished: float = 0.0
    volumes: int = 0
    bytes: int = 0
    damaged: int = 0
    repaired: int = 0
    unrepaired: int = 0
    failures: list[str] = field(default_factory=list)  # "volume id: why", first ones
    scope: str = ""  # "" = everything, else "bucket" or "bucket/key"
    # the cold bucket's sweep at the end of a full pass: ColdSweep figures, or {"error": why}
    cold_sweep: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> ScrubPass:
        """A pass as saved in the state (fields this version does not know are dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def note_failure(self, volume_id: str, why: str) -> None:
        self.unrepaired += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append(f"{volume_id}: {why}")


class Maintenance:
    def __init__(
        self,
        service: ObjectService,
        clock: Clock,
        *,
        interval: float,
        rate: int,
    ) -> None:
        self.service = service
        self.meta = service.meta
        self.tiers: Mapping[str, TierStore] = service.tiers
        self.clock = clock
        self.interval = interval
        self.rate = rate
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []  # rebuilds under way
        self.healer = Healer(self.meta, clock, self.check_stored)
        self._prober = Periodic(
            "disks",
            self.probe_disks,
            interval=PROBE_INTERVAL,
            first_delay=0,
            log=log,
            what="probing disks",
        )
        self._scrubber = Periodic(
            "scrub",
            self._scheduled_scrub,
            interval=max(1.0, min(60.0, interval / 10)),  # how often to look whether one is due
            first_delay=0,
            log=log,
            what="scheduled scrub",
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe_lock = asyncio.Lock()
        self._throttle = True
        self.current: ScrubPass | None = None
        self.disk_states: dict[str, str] = {}
        self.rebuilding: set[str] = set()
        self.disk_errors: dict[str, int] = {}
        self.scheduled = True  # False in a worker process: see start()
        self.last_unrepaired = 0  # volumes the last full pass could not repair
        # The cold tier, when there is one (set by the node): swept at the end of full passes.
        self.cold: ColdStore | None = None
        self.cold_min_age = MIN_AGE

    # -- life cycle -------------------------------------------------------------------

    async def start(self, *, scheduled: bool = True) -> None:
        """Heal and probe disks; ``scheduled``: also scrub on schedule and take back replaced
        disks (one process does that when several share the disks)."""
        self._loop = asyncio.get_running_loop()
        self.scheduled = scheduled
        last = self._load_state().get("last") or {}
        self.last_unrepaired = int(last.get("unrepaired", 0))
        self.healer.start()
        self._prober.start()
        if not scheduled:
            return
        self._scrubber.start()
        replaced = [d.disk_id for t in self.tiers.values() for d in t.replaced]
        self.rebuilding.update(replaced)
        if replaced:
            log.warning("%d disk(s) came back empty: rebuilding their shards", len(replaced))
            self._tasks.append(asyncio.create_task(self._rebuild(), name="rebuild"))

    async def stop(self) -> None:
        await self.healer.stop()
        for loop in (self._prober, self._scrubber):
            await loop.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- healing ----------------------------------------------------------------------

    def report_damage(self, volume_id: str, disk_id: str) -> None:
        """Called by the storage layer (from any thread) when a read met damage."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._enqueue, volume_id, disk_id)

    def _enqueue(self, volume_id: str, disk_id: str) -> None:
        self.disk_errors[disk_id] = self.disk_errors.get(disk_id, 0) + 1
        self.healer.enqueue(self.service.parent_of.get(volume_id, volume_id))

    def degraded(self) -> list[str]:
        """What is wrong while the node still serves (for ``/health/ready``; never blocks):
        volumes that could not be repaired, disks offline or being rebuilt."""
        out = []
        waiting = len(self.healer.waiting)
        if waiting:
            out.append(f"{waiting} volume(s) could not be repaired by the healer (retrying)")
        if self.last_unrepaired:
            out.append(f"the last scrub pass could not repair {self.last_unrepaired} volume(s)")
        for tier in self.tiers.values():
            for disk in tier.disks:
                state = self.disk_states.get(disk.disk_id, "online")
                if state != "online":
                    out.append(f"disk {disk.path} is {state}")
                elif disk.disk_id in self.rebuilding:
                    out.append(f"disk {disk.path} is being rebuilt")
        return out

    # -- checking one volume ----------------------------------------------------------

    async def check_stored(self, volume: VolumeRecord) -> tuple[str, str]:
        """:meth:`check_volume` on the volume as its record is now, held from the garbage
        collector meanwhile: ("gone", "") if it was deleted or overwritten since ``volume``
        was read, or moved before its repair failed (the location checked is no longer its)."""
        with self.service.reading(volume):
            get = functools.partial(catalog.get_volume, volume_id=volume.volume_id)
            current = self.meta.read(get)
            if current is None:
                return "gone", ""
            outcome, why = await self.check_volume(current)
            if outcome == "unrepaired":
                now = self.meta.read(get)
                if now is None or now.location != current.location:
                    return "gone", ""
            return outcome, why

    async def check_volume(self, volume: VolumeRecord) -> tuple[str, str]:
        """Verify and, if needed, repair a volume: ("clean" | "repaired" | "unrepaired", why)."""
        tier = self.tiers.get(volume.tier)
        if tier is None:
            return "clean", ""  # not a local tier (cold): its provider's business
        if volume.layout == MULTI:
            outcomes = []
            parts = volume.location["parts"]
            for index, part in enumerate(parts):
                outcome, why, new = await self._check_location(
                    tier, part["layout"], part["location"]
                )
                outcomes.append((outcome, why))
                if new is not None:
                    await self._commit_part(volume.volume_id, index, part["location"], new)
            manifest = volume.location.get("manifest")
            if manifest is not None:
                outcome, why, new = await self._check_location(tier, "seg", manifest)
                outcomes.append((outcome, why))
                if new is not None:
                    await self._commit_manifest(volume.volume_id, manifest, new)
            for wanted in ("unrepaired", "repaired"):
                for outcome, why in outcomes:
                    if outcome == wanted:
                        return outcome, why
            return "clean", ""
        outcome, why, new = await self._check_location(tier, volume.layout, volume.location)
        if new is not None:
            await self._commit_location(volume.volume_id, volume.location, new)
        return outcome, why

    async def _check_location(
        self, tier: TierStore, layout: str, location: Mapping[str, Any]
    ) -> tuple[str, str, dict[str, Any] | None]:
        """(outcome, why, new location if it changed)."""
        try:
            if layout == "seg":
                assert tier.segments is not None
                seg = SegLocation.from_dict(dict(location))
                fixed = await tier.segments.repair(seg)
                if fixed == seg:
                    return "clean", "", None
                return "repaired", "", fixed.to_dict()
            assert tier.erasure is not None
            loc = ECLocation.from_dict(dict(location))
            report = await tier.erasure.verify(loc)
            if report.clean:
                return "clean", "", None
            repaired = await tier.erasure.repair(loc)
            if not repaired.readable:
                return "unrepaired", f"stripes {list(repaired.unreadable_stripes)[:5]} lost", None
            tier.erasure.forget_degraded(loc.volume_id)
            new = repaired.location.to_dict() if repaired.location != loc else None
            return "repaired", "", new
        except StorageError as exc:
            return "unrepaired", str(exc), None

    async def _commit_location(
        self, volume_id: str, old: Mapping[str, Any], new: dict[str, Any]
    ) -> None:
        def commit(tx: Tx) -> None:
            volume = catalog.get_volume(tx, volume_id)
            if volume is not None and volume.location == old:
                volume.location = new
                catalog.put_volume(tx, volume)

        await self.meta.write(commit)

    async def _commit_part(
        self, volume_id: str, index: int, old: Mapping[str, Any], new: dict[str, Any]
    ) -> None:
        def commit(tx: Tx) -> None:
            volume = catalog.get_volume(tx, volume_id)
            if volume is None or volume.layout != MULTI:
                return
            part = volume.location["parts"][index]
            if part["location"] == old:
                part["location"] = new
                catalog.put_volume(tx, volume)

        await self.meta.write(commit)

    async def _commit_manifest(
        self, volume_id: str, old: Mapping[str, Any], new: dict[str, Any]
    ) -> None:
        def commit(tx: Tx) -> None:
            volume = catalog.get_volume(tx, volume_id)
            if volume is not None and volume.location.get("manifest") == old:
                volume.location["manifest"] = new
                catalog.put_volume(tx, volume)

        await self.meta.write(commit)

    # -- scrubbing --------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        raw = self.meta.read(lambda tx: tx.get("info", INFO_KEY))
        if not raw:
            return {"version": STATE_VERSION, "cursor": None, "current": None, "last": None}
        state: dict[str, Any] = json.loads(raw)
        return state

    async def _save_state(self, state: dict[str, Any]) -> None:
        encoded = json.dumps(state).encode()
        await self.meta.write(lambda tx: tx.put("info", INFO_KEY, encoded))

    def status(self) -> dict[str, Any]:
        state = self._load_state()
        disks = []
        for tier_name, tier in self.tiers.items():
            for disk in tier.disks:
                state_text = self.disk_states.get(disk.disk_id, "online")
                if disk.disk_id in self.rebuilding and state_text == "online":
                    state_text = "rebuilding"
                try:
                    used, free = disk.total_bytes() - disk.free_bytes(), disk.free_bytes()
                except OSError:
                    used = free = 0
                disks.append(
                    {
                        "tier": tier_name,
                        "path": str(disk.path),
                        "id": disk.disk_id,
                        "state": state_text,
                        "used_bytes": used,
                        "free_bytes": free,
                        "errors": self.disk_errors.get(disk.disk_id, 0),
                        **tier.describe_disk(disk.disk_id),  # backing, health, capacity
                    }
                )
        return {
            "scrub": {
                "running": self.current is not None,
                "current": asdict(self.current) if self.current else state.get("current"),
                "last_pass": state.get("last"),
                "interval_seconds": self.interval,
                "rate_bytes_per_second": self.rate,
            },
            "heal": self.healer.status(),
            "disks": disks,
        }

    async def scrub(
        self, *, bucket: str | None = None, key: str | None = None, throttle: bool = False
    ) -> ScrubPass:
        """One pass now: everything, a bucket, or one object. Returns its figures."""
        if bucket is not None:
            await self.probe_disks()  # a disk taken back now is refilled by a pass of its own
            return await self._scrub_scope(bucket, key)
        self._throttle = throttle and self._throttle
        try:
            async with self._lock:
                return await self._full_pass(throttle=throttle, resume=False)
        finally:
            self._throttle = True

    async def _scrub_scope(self, bucket: str, key: str | None) -> ScrubPass:
        figures = ScrubPass(started=self.clock.now(), scope=bucket + (f"/{key}" if key else ""))

        def volumes(tx: Tx) -> list[VolumeRecord]:
            # every version: noncurrent ones and delete markers' records are data to keep too
            if key is not None:
                records = list(versions.history(tx, bucket, key))
            else:
                records = list(every_version(tx, bucket))
            found = [catalog.get_volume(tx, r.volume_id) for r in records]
            return [v for v in found if v is not None]

        for volume in self.meta.read(volumes):
            await self._scrub_one(volume, figures)
        figures.finished = self.clock.now()
        return figures

    async def _scrub_one(self, volume: VolumeRecord, figures: ScrubPass) -> None:
        if volume.tier not in self.tiers:  # a remote tier's data: its provider checks it
            figures.volumes += 1
            figures.bytes += volume.size
            return
        outcome, why = await self.check_stored(volume)
        if outcome == "gone":
            return
        if volume.volume_id in self.healer.waiting and outcome != "unrepaired":
            self.healer.settle(volume.volume_id, outcome, why)
        figures.volumes += 1
        figures.bytes += volume.size
        if outcome == "repaired":
            figures.damaged += 1
            figures.repaired += 1
        elif outcome == "unrepaired":
            figures.damaged += 1
            figures.note_failure(volume.volume_id, why)

    async def _full_pass(self, *, throttle: bool, resume: bool) -> ScrubPass:
        # A disk replaced since the last probe is taken back, its layout recreated, before
        # this pass writes to it; a pass at full speed refills it, a throttled one leaves
        # that to a pass of its own.
        await self.probe_disks(refill=throttle)
        refilling = set(self.rebuilding)
        state = self._load_state()
        cursor: str = ""
        figures = ScrubPass(started=self.clock.now())
        if resume and state.get("current"):
            figures = ScrubPass.from_dict(state["current"])
            cursor = state.get("cursor") or ""
        self.current = figures
        last_save = time.monotonic()
        try:
            while True:
                batch = self.meta.read(functools.partial(_volumes_after, cursor=cursor))
                if not batch:
                    break
                for volume in batch:
                    started = time.monotonic()
                    await self._scrub_one(volume, figures)
                    cursor = volume.volume_id
                    if throttle and self._throttle and self.rate > 0:
                        budget = volume.size / self.rate - (time.monotonic() - started)
                        if budget > 0:
                            await asyncio.sleep(budget)
                # A batch whose checks never wait (a remote tier's volumes, counted only)
                # would otherwise run the next one without ever letting the loop serve.
                await asyncio.sleep(0)
                if time.monotonic() - last_save > 5:
                    state.update(cursor=cursor, current=asdict(figures))
                    await self._save_state(state)
                    last_save = time.monotonic()
            if self.cold is not None:
                figures.cold_sweep = await self._sweep_cold()
            figures.finished = self.clock.now()
            state.update(cursor=None, current=None, last=asdict(figures))
            await self._save_state(state)
            self.last_unrepaired = figures.unrepaired
            if figures.unrepaired:
                log.error("scrub pass found %d volume(s) it could not repair", figures.unrepaired)
            else:
                log.info(
                    "scrub pass done: %d volumes, %d bytes, %d repaired",
                    figures.volumes,
                    figures.bytes,
                    figures.repaired,
                )
            return figures
        finally:
            self.current = None
            self.rebuilding -= refilling

    async def _sweep_cold(self) -> dict[str, Any]:
        assert self.cold is not None
        try:
            swept = await sweep_cold(self.meta, self.cold, self.clock, min_age=self.cold_min_age)
        except Exception as exc:  # the cold store out of reach: the next pass sweeps
            log.error("sweeping the cold bucket failed: %s", exc)
            return {"error": str(exc)}
        return swept.to_dict()

    async def _scheduled_scrub(self) -> None:
        """A pass if one is due (``scrub.interval`` after the last ended) or was cut short."""
        state = self._load_state()
        last = state.get("last") or {}
        due = self.clock.now() - float(last.get("finished", 0.0)) >= self.interval
        if state.get("current") or due:
            async with self._lock:
                await self._full_pass(throttle=True, resume=True)

    async def _rebuild(self) -> None:
        """Refill disks that came back empty: a full pass at full speed."""
        await self.scrub(throttle=False)

    # -- disks ------------------------------------------------------------------------

    async def probe_disks(self, *, refill: bool = True) -> None:
        """Find each disk's state; take back a replaced disk (an empty directory at its path)
        and, with ``refill``, start a full pass at full speed to refill it. A disk coming
        back online makes the healer retry the volumes it could not repair."""
        loop = asyncio.get_running_loop()
        came_back = False
        async with self._probe_lock:  # the prober's, and a scrub's before it writes
            for tier in self.tiers.values():
                states = await loop.run_in_executor(None, tier.probe)
                offline = {d for d, s in states.items() if s != "online"}
                for disk in tier.disks:
                    before = self.disk_states.get(disk.disk_id, "online")
                    now = states.get(disk.disk_id, "online")
                    if before != now:
                        log.warning("disk %s (%s): %s", disk.path, disk.disk_id[:8], now)
                    missing = now == "offline: identity file missing"
                    if missing and self.scheduled and disk.path.is_dir():
                        # A replaced disk mounted at the same path: give it its identity and
                        # layout back, and refill it.
                        await loop.run_in_executor(
                            None, functools.partial(open_disk, disk.path, expected_id=disk.disk_id)
                        )
                        offline.discard(disk.disk_id)
                        now = "online"
                        self.rebuilding.add(disk.disk_id)
                        if refill:
                            self._tasks.append(asyncio.create_task(self._rebuild(), name="rebuild"))
                    came_back = came_back or (before != "online" and now == "online")
                    self.disk_states[disk.disk_id] = now
                tier.set_offline(offline)
        if came_back:
            self.healer.retry_all_now()


def _volumes_after(tx: Tx, cursor: str, limit: int = BATCH) -> list[VolumeRecord]:
    cur = tx.cursor("volumes")
    out: list[VolumeRecord] = []
    start = cursor.encode() + b"\x00" if cursor else b""
    if not cur.set_range(start):
        return out
    for _key, raw in cur:
        out.append(VolumeRecord.decode(bytes(raw)))
        if len(out) >= limit:
            break
    return out
