"""Autonomous tiering: where each volume should live, why, and moving it there.

Every object's bytes are one volume; a key never moves, tiering changes only where
its volume lives (hot pool, warm pool, cold remote bucket). The engine runs every
``tiering.interval``: for each volume the :class:`HeuristicPolicy` names a target tier
and the rule that chose it, with the values that decided; the mover then copies the
volume to its new home, checks the copy, switches the volume's location in one
metadata transaction and queues the old copy for collection. A crash at any step
leaves one readable copy: before the switch the old location is intact (the new copy
is an orphan), after it the new one is.

Rules, in order (all durations and thresholds from ``[tiering]``):

1. **pin**: an object's storage class (STANDARD hot, STANDARD_IA warm, GLACIER_IR cold)
   or its bucket's pin puts it there, whatever its access pattern.
2. **promote**: ``promote_reads`` reads within ``promote_window`` bring a warm or cold
   volume back to hot, if hot is below its high watermark.
3. **idle**: hot volumes unread for ``hot_idle_before_warm`` go to warm; volumes unread
   for ``warm_idle_before_cold`` and at least ``cold_min_size`` go to cold.
4. **watermark**: when a pool passes its high watermark, its least recently read
   volumes move down until it is under the low watermark.

Every move is kept in a decision log (LMDB ``decisions``:
``<ms, 13 hex><volume id><sequence, 8 hex>`` ->
JSON record, format version 1) and the last decision on the volume record, so
``stratum explain`` can say why an object is where it is and when it will move next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stratum.config import TieringConfig
from stratum.meta import catalog
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.service.ids import new_volume_id
from stratum.service.objects import MULTI, ObjectService
from stratum.util.clock import Clock

if TYPE_CHECKING:  # the cold tier's module imports botocore and cryptography: only when used
    from stratum.block.cold import ColdStore

log = logging.getLogger("stratum.tiering")

ORDER = ("hot", "warm", "cold")
TIER_OF_CLASS = {
    "STANDARD": "hot",
    "REDUCED_REDUNDANCY": "hot",
    "EXPRESS_ONEZONE": "hot",
    "STANDARD_IA": "warm",
    "ONEZONE_IA": "warm",
    "GLACIER_IR": "cold",
    "GLACIER": "cold",
    "DEEP_ARCHIVE": "cold",
}
DECISION_VERSION = 1
BATCH = 256


@dataclass(frozen=True)
class Decision:
    target: str
    rule: str
    inputs: dict[str, Any]


@dataclass
class Usage:
    used: int
    capacity: int

    @property
    def fraction(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0


def pinned_tier(record: ObjectRecord | None, bucket: BucketRecord | None) -> tuple[str, str]:
    """(tier, "object" | "bucket") the client pinned, or ("", "") for automatic."""
    if record is not None and record.storage_class in TIER_OF_CLASS:
        return TIER_OF_CLASS[record.storage_class], "object"
    if bucket is not None and bucket.pin:
        return bucket.pin, "bucket"
    return "", ""


class HeuristicPolicy:
    """The zero-configuration rules of the module docstring, with [tiering]'s values."""

    def __init__(self, config: TieringConfig, tiers: set[str]) -> None:
        self.config = config
        self.tiers = tiers

    def _available(self, tier: str) -> str:
        """The nearest tier that exists: a pin to a missing warm tier means hot, etc."""
        if tier in self.tiers:
            return tier
        index = ORDER.index(tier)
        for candidate in list(ORDER[index::-1]) + list(ORDER[index:]):
            if candidate in self.tiers:
                return candidate
        return "hot"

    def signals(self, volume: VolumeRecord, now: float) -> dict[str, Any]:
        seen = max(volume.last_access, volume.created)
        window = self.config.promote_window
        return {
            "size": volume.size,
            "idle_seconds": round(now - seen, 3),
            "last_access": volume.last_access,
            "access_count": volume.access_count,
            "access_rate_per_day": round(volume.access_rate, 4),
            "reads_in_window": sum(1 for t in volume.recent if now - t <= window),
        }

    def decide(
        self,
        volume: VolumeRecord,
        pin: tuple[str, str],
        now: float,
        usage: Mapping[str, Usage],
    ) -> Decision | None:
        """Where the volume should go now, or None to stay."""
        c = self.config
        inputs = self.signals(volume, now)
        tier = volume.tier
        if pin[0]:
            target = self._available(pin[0])
            if target != tier:
                return Decision(target, f"pin:{pin[1]}", {**inputs, "pinned": pin[0]})
            return None
        hot = usage.get("hot")
        if (
            tier != "hot"
            and inputs["reads_in_window"] >= c.promote_reads
            and (hot is None or hot.fraction < c.hot_high_watermark)
        ):
            return Decision("hot", "promote", {**inputs, "promote_reads": c.promote_reads})
        idle = inputs["idle_seconds"]
        cold_ok = "cold" in self.tiers and volume.size >= c.cold_min_size
        if tier in ("hot", "warm") and cold_ok and idle >= c.warm_idle_before_cold:
            return Decision("cold", "idle", {**inputs, "threshold": c.warm_idle_before_cold})
        if tier == "hot" and "warm" in self.tiers and idle >= c.hot_idle_before_warm:
            return Decision("warm", "idle", {**inputs, "threshold": c.hot_idle_before_warm})
        return None

    def next_move(self, volume: VolumeRecord, pin: tuple[str, str]) -> dict[str, Any] | None:
        """The next move the idle rules will make if the volume is not read again."""
        if pin[0]:
            return None
        c = self.config
        seen = max(volume.last_access, volume.created)
        cold_ok = "cold" in self.tiers and volume.size >= c.cold_min_size
        if volume.tier == "hot" and "warm" in self.tiers:
            return {"to": "warm", "at": seen + c.hot_idle_before_warm, "rule": "idle"}
        if volume.tier in ("hot", "warm") and cold_ok:
            return {"to": "cold", "at": seen + c.warm_idle_before_cold, "rule": "idle"}
        if volume.tier != "hot":
            return {
                "to": "hot",
                "at": None,
                "rule": f"promote after {c.promote_reads} reads within {c.promote_window:.0f} s",
            }
        return None


class ColdTierStorage:
    """The cold tier as the object service reads and frees volumes (layout "cold")."""

    def __init__(self, store: ColdStore) -> None:
        self.store = store

    async def read(
        self, layout: str, location: Mapping[str, Any], start: int, end: int
    ) -> AsyncIterator[bytes]:
        async for chunk in self.store.read(location, start, end):
            yield chunk

    async def delete(self, layout: str, location: Mapping[str, Any]) -> None:
        await self.store.delete(location)


@dataclass
class PassReport:
    decided: int = 0
    moved: int = 0
    failed: int = 0
    bytes_moved: int = 0
    moves: list[dict[str, Any]] = field(default_factory=list)


class TierEngine:
    def __init__(
        self,
        service: ObjectService,
        config: TieringConfig,
        clock: Clock,
        *,
        cold: ColdStore | None = None,
        capacity: Callable[[str], Usage] | None = None,
    ) -> None:
        self.service = service
        self.meta = service.meta
        self.config = config
        self.clock = clock
        self.cold = cold
        tiers = set(service.tiers) | ({"cold"} if cold is not None else set())
        self.policy = HeuristicPolicy(config, tiers)
        self._capacity = capacity or self._disk_capacity
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        if cold is not None:
            service.remote["cold"] = ColdTierStorage(cold)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.enabled:
            self._task = asyncio.create_task(self._run_forever(), name="tiering")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def nudge(self) -> None:
        """Run a pass soon (a pin was set): pins take effect within seconds."""
        self._wakeup.set()

    async def _run_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: see service.py
                async with asyncio.timeout(self.config.interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.run_pass()
            except Exception:
                log.exception("tiering pass failed")

    # -- capacity ---------------------------------------------------------------------

    def _disk_capacity(self, tier: str) -> Usage:
        store = self.service.tiers.get(tier)
        if store is None:
            return Usage(0, 0)
        capacity = store.capacity()  # blocking: usage() runs in an executor
        return Usage(capacity.used, capacity.total)

    def usage(self) -> dict[str, Usage]:
        return {name: self._capacity(name) for name in self.service.tiers}

    # -- a pass -----------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        async with self._lock:
            return await self._pass()

    async def _pass(self) -> PassReport:
        now = self.clock.now()
        usage = await asyncio.get_running_loop().run_in_executor(None, self.usage)
        report = PassReport()
        planned: list[tuple[VolumeRecord, Decision]] = []
        by_tier: dict[str, list[VolumeRecord]] = {t: [] for t in self.service.tiers}
        cursor = ""
        while True:
            batch, last = self.meta.read(functools.partial(self._batch, cursor=cursor))
            if last == cursor:
                break
            cursor = last
            for volume, pin in batch:
                decision = self.policy.decide(volume, pin, now, usage)
                if decision is not None:
                    planned.append((volume, decision))
                elif not pin[0] and volume.tier in by_tier:
                    by_tier[volume.tier].append(volume)
        planned += self._watermark_moves(by_tier, usage, planned)
        report.decided = len(planned)
        for volume, decision in planned:
            started = time.monotonic()
            ok = await self.move(volume, decision)
            if ok:
                report.moved += 1
                report.bytes_moved += volume.size
            else:
                report.failed += 1
            report.moves.append(
                {"volume_id": volume.volume_id, "to": decision.target, "rule": decision.rule}
            )
            if self.config.move_rate > 0:  # don't starve client traffic
                budget = volume.size / self.config.move_rate - (time.monotonic() - started)
                if budget > 0:
                    await asyncio.sleep(budget)
        await self._prune_log(now)
        return report

    def _batch(self, tx: Tx, cursor: str) -> tuple[list[tuple[VolumeRecord, tuple[str, str]]], str]:
        """Up to BATCH movable volumes after ``cursor``, and the last volume id walked."""
        cur = tx.cursor("volumes")
        out: list[tuple[VolumeRecord, tuple[str, str]]] = []
        last = cursor
        if not cur.set_range(cursor.encode() + b"\x00" if cursor else b""):
            return out, last
        for k, raw in cur:
            last = bytes(k).decode()
            volume = VolumeRecord.decode(bytes(raw))
            record = catalog.get_object(tx, volume.bucket, volume.key) if volume.key else None
            if volume.key and (record is None or record.volume_id != volume.volume_id):
                continue  # a multipart part, or not committed yet: not the engine's to move
            bucket = catalog.get_bucket(tx, volume.bucket) if volume.bucket else None
            out.append((volume, pinned_tier(record, bucket)))
            if len(out) >= BATCH:
                break
        return out, last

    def _watermark_moves(
        self,
        by_tier: dict[str, list[VolumeRecord]],
        usage: Mapping[str, Usage],
        planned: list[tuple[VolumeRecord, Decision]],
    ) -> list[tuple[VolumeRecord, Decision]]:
        c = self.config
        marks = {
            "hot": (c.hot_high_watermark, c.hot_low_watermark),
            "warm": (c.warm_high_watermark, c.warm_low_watermark),
        }
        leaving = {v.volume_id for v, _ in planned}
        moves: list[tuple[VolumeRecord, Decision]] = []
        for tier, (high, low) in marks.items():
            u = usage.get(tier)
            if u is None or not u.capacity or u.fraction <= high:
                continue
            below = [t for t in ORDER[ORDER.index(tier) + 1 :] if t in self.policy.tiers]
            if not below:
                continue
            used = u.used - sum(v.size for v, _ in planned if v.tier == tier)
            coldest = sorted(by_tier.get(tier, []), key=lambda v: max(v.last_access, v.created))
            for volume in coldest:
                if used / u.capacity <= low:
                    break
                if volume.volume_id in leaving:
                    continue
                target = below[0]
                if target == "cold" and volume.size < c.cold_min_size and len(below) > 1:
                    target = below[1]
                inputs = {
                    **self.policy.signals(volume, self.clock.now()),
                    "pool_used": u.used,
                    "pool_capacity": u.capacity,
                    "high_watermark": high,
                    "low_watermark": low,
                }
                moves.append((volume, Decision(target, "watermark", inputs)))
                used -= volume.size
        return moves

    # -- the mover --------------------------------------------------------------------

    async def move(self, volume: VolumeRecord, decision: Decision) -> bool:
        """Copy, verify, switch, free: True if the volume now lives in the target tier."""
        target = decision.target
        source_tier = volume.tier
        storage_id = new_volume_id(self.clock.now())
        record = self.meta.read(lambda tx: catalog.get_object(tx, volume.bucket, volume.key))
        # The moved copy's header carries the object's metadata like a fresh PUT's does, so a
        # store rebuilt from the disks alone (recover-metadata) gets it back.
        meta: dict[str, Any] = {
            "kind": "object",
            "bucket": volume.bucket,
            "key": volume.key,
            "created": volume.created,
            "moved_from": volume.volume_id,
        }
        if record is not None and record.volume_id == volume.volume_id:
            meta.update(
                owner_id=record.owner_id,
                content_type=record.content_type,
                user_meta=record.user_meta,
                headers=record.headers,
                storage_class=record.storage_class,
            )
        md5 = hashlib.md5()
        sha_needed = volume.layout != MULTI
        data = self._verified(volume, md5 if sha_needed else None)
        try:
            layout, location = await self._write(target, storage_id, data, volume.size, meta)
        except Exception as exc:
            log.warning("moving %s to %s failed: %s", volume.volume_id, target, exc)
            await self._log(volume, decision, f"failed: {exc}")
            return False
        if sha_needed and md5.hexdigest() != volume.md5:
            await self._free(target, layout, location)
            await self._log(volume, decision, "failed: checksum mismatch while copying")
            return False
        now = self.clock.now()
        placed = {"rule": decision.rule, "at": now, "from": source_tier, "inputs": decision.inputs}

        def switch(tx: Tx) -> bool:
            current = catalog.get_volume(tx, volume.volume_id)
            if current is None or current.location != volume.location:
                return False  # overwritten, deleted or moved meanwhile: keep what is there
            old = dataclasses.replace(current)
            current.tier, current.layout, current.location = target, layout, location
            current.placed = placed
            catalog.put_volume(tx, current)
            catalog.retire_location(tx, f"{volume.volume_id}.{storage_id}", old)
            _append_decision(tx, now, volume, decision, "moved")
            return True

        switched = await self.meta.write(switch)
        if not switched:
            await self._free(target, layout, location)
            return False
        self.service.wake_gc()
        log.info(
            "moved %s/%s (%d bytes) %s -> %s: %s",
            volume.bucket,
            volume.key,
            volume.size,
            source_tier,
            target,
            decision.rule,
        )
        return True

    async def _verified(self, volume: VolumeRecord, md5: Any | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in self.service.read_volume(volume, 0, volume.size):
            if md5 is not None:
                if len(chunk) > 65536:
                    await loop.run_in_executor(None, md5.update, chunk)
                else:
                    md5.update(chunk)
            yield chunk

    async def _write(
        self,
        target: str,
        storage_id: str,
        data: AsyncIterator[bytes],
        size: int,
        meta: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        if target == "cold":
            assert self.cold is not None, "no cold tier configured"
            location = await self.cold.put(storage_id, data, size, meta)
            return "cold", dict(location)
        store = self.service.tiers[target]
        if size <= self.service.small_threshold:
            blob = b"".join([c async for c in data])
            return "seg", await store.put_small(storage_id, blob, meta)
        writer = store.ec_writer(storage_id, meta, ())
        try:
            async for chunk in data:
                await writer.write(chunk)
            loc = await writer.finish()
        except BaseException:
            await writer.abort()
            raise
        return "ec", loc.to_dict()

    async def _free(self, tier: str, layout: str, location: Mapping[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.service.storage(tier).delete(layout, location)

    # -- the decision log -------------------------------------------------------------

    async def _log(self, volume: VolumeRecord, decision: Decision, outcome: str) -> None:
        now = self.clock.now()
        await self.meta.write(lambda tx: _append_decision(tx, now, volume, decision, outcome))

    async def _prune_log(self, now: float) -> None:
        cutoff = f"{int((now - self.config.decision_log_keep) * 1000):013x}".encode()

        def prune(tx: Tx) -> None:
            cur = tx.cursor("decisions")
            stale = []
            for key, _raw in cur:
                if bytes(key) >= cutoff:
                    break
                stale.append(bytes(key))
            for key in stale:
                tx.delete("decisions", key)

        await self.meta.write(prune)

    async def pin_bucket(self, bucket: str, tier: str) -> None:
        """Pin every object of a bucket to a tier ("" = automatic); applied within seconds."""

        def pin(tx: Tx) -> None:
            record = catalog.get_bucket(tx, bucket)
            if record is None:
                raise KeyError(bucket)
            record.pin = tier
            catalog.put_bucket(tx, record)

        await self.meta.write(pin)
        self.nudge()

    # -- explanations -----------------------------------------------------------------

    def explain(self, bucket: str, key: str) -> dict[str, Any]:
        def look(tx: Tx) -> dict[str, Any]:
            record = catalog.get_object(tx, bucket, key)
            if record is None:
                return {"error": f"no object {bucket}/{key}"}
            volume = catalog.get_volume(tx, record.volume_id)
            assert volume is not None
            pin = pinned_tier(record, catalog.get_bucket(tx, bucket))
            now = self.clock.now()
            decision = self.policy.decide(volume, pin, now, {})
            nxt = self.policy.next_move(volume, pin)
            return {
                "bucket": bucket,
                "key": key,
                "volume_id": volume.volume_id,
                "tier": volume.tier,
                "storage_class": TIER_CLASS[volume.tier],
                "layout": volume.layout,
                "size": volume.size,
                "location": _location_summary(volume),
                "signals": self.policy.signals(volume, now),
                "pin": pin[0] or None,
                "placed_by": volume.placed
                or {"rule": "new object: written to the hot tier", "at": volume.created},
                "pending": dataclasses.asdict(decision) if decision else None,
                "next_move": nxt,
            }

        return self.meta.read(look)


TIER_CLASS = {"hot": "STANDARD", "warm": "STANDARD_IA", "cold": "GLACIER_IR"}
_SEQUENCE = itertools.count()


def _location_summary(volume: VolumeRecord) -> dict[str, Any]:
    loc = volume.location
    if volume.layout == "ec":
        return {"layout": "erasure", "shards": len(loc.get("disks", [])), "disks": loc.get("disks")}
    if volume.layout == "seg":
        return {"layout": "replicated segments", "copies": len(loc.get("replicas", []))}
    if volume.layout == "cold":
        return {"layout": "encrypted remote object", "remote_key": loc.get("key")}
    return {"layout": "multipart", "parts": len(loc.get("parts", []))}


def _append_decision(
    tx: Tx, now: float, volume: VolumeRecord, decision: Decision, outcome: str
) -> None:
    record = {
        "v": DECISION_VERSION,
        "at": now,
        "volume_id": volume.volume_id,
        "bucket": volume.bucket,
        "key": volume.key,
        "from": volume.tier,
        "to": decision.target,
        "rule": decision.rule,
        "inputs": decision.inputs,
        "outcome": outcome,
    }
    # time first (the log is read newest first), then a counter: two decisions on one
    # volume in the same millisecond must not overwrite each other
    key = f"{int(now * 1000):013x}{volume.volume_id}{next(_SEQUENCE) & 0xFFFFFFFF:08x}".encode()
    tx.put("decisions", key, json.dumps(record, separators=(",", ":")).encode())


def read_decisions(
    tx: Tx, *, bucket: str | None = None, key: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest decisions first, optionally for one bucket or object."""
    out: list[dict[str, Any]] = []
    cur = tx.cursor("decisions")
    if not cur.last():
        return out
    while True:
        record = json.loads(bytes(cur.value()))
        if (bucket is None or record["bucket"] == bucket) and (key is None or record["key"] == key):
            out.append(record)
            if len(out) >= limit:
                break
        if not cur.prev():
            break
    return out


class SimulatedStratumPolicy:
    """Stratum's own policy, for the simulator (:mod:`stratum.tiering.simulator`).

    The same :class:`HeuristicPolicy` decides; this adapter turns a simulated object into
    the volume record it reads, noting the reads the simulator reports between its hourly
    questions as that hour's recent reads.
    """

    name = "stratum"

    def __init__(self, config: TieringConfig, tiers: set[str]) -> None:
        self.policy = HeuristicPolicy(config, tiers)
        self._seen: dict[tuple[str, str], tuple[int, list[float]]] = {}

    def place(self, obj: Any, now: float) -> str:
        ident = (obj.bucket, obj.key)
        count, recent = self._seen.get(ident, (0, []))
        new_reads = obj.access_count - count
        if new_reads > 0:
            recent = (recent + [obj.last_access] * min(new_reads, 16))[-16:]
        self._seen[ident] = (obj.access_count, recent)
        volume = VolumeRecord(
            volume_id="sim",
            tier=obj.tier,
            layout="sim",
            location={},
            size=obj.size,
            md5="",
            created=obj.created,
            last_access=obj.last_access,
            access_count=obj.access_count,
            access_rate=obj.access_rate,
            recent=recent,
        )
        decision = self.policy.decide(volume, ("", ""), now, {})
        return decision.target if decision is not None else str(obj.tier)
