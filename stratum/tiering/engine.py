"""The tiering engine: a pass over every volume on a schedule, and the moves it decides.

Every object's bytes are one volume; a key never moves, tiering changes only where
its volume lives (hot pool, warm pool, cold remote bucket). The engine runs a pass every
``tiering.interval``, and soon after a pin is set (:meth:`TierEngine.nudge`): for each
volume the policy (:mod:`stratum.tiering.policy`) names a target tier and the rule that
chose it, with the values that decided; the mover (:mod:`stratum.tiering.mover`) then
moves the volume, at most ``tiering.move_rate`` bytes per second so that client traffic
is not starved. Every move is kept in the decision log (:mod:`stratum.tiering.decisions`)
and the last decision on the volume record, so ``stratum explain`` can say why an object
is where it is and when it will move next.

The engine also keeps the learned policy's class statistics
(:class:`~stratum.tiering.learned.Learner`), whichever ``tiering.policy`` decides: the
service tells it of every batch of reads it records and of every object version's data it
frees, and each pass of the objects idle past the learner's horizon. They are kept in LMDB
across restarts, and worker processes hand what they learn from their reads to the primary
(:mod:`stratum.tiering.learning`).

A pass never holds the loop nor every record: it reads the volume records a page at a time
off the event loop, decides a slice of a page per loop step, and keeps for the watermark
rule only the candidates it can need (:class:`~stratum.tiering.policy.WatermarkCandidates`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stratum.config import TieringConfig
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.service import lifecycle
from stratum.service.objects import ObjectService
from stratum.tiering.decisions import decisions_indexed, index_decisions, prune_decisions
from stratum.tiering.learned import Learner, class_of_volume
from stratum.tiering.learning import HAND_OVER_INTERVAL, SAVE_INTERVAL, LearnerStore
from stratum.tiering.lifecycle_pins import lifecycle_pin
from stratum.tiering.mover import ColdTierStorage, Mover
from stratum.tiering.policy import (
    TIER_CLASS,
    Decision,
    HeuristicPolicy,
    Usage,
    WatermarkCandidates,
    pinned_tier,
)
from stratum.tiering.prefetch import RULE as PREFETCH_RULE
from stratum.tiering.prefetch import Prefetcher, following_keys, held, scope_of
from stratum.tiering.pricing import DEFAULT_PRICES, Prices
from stratum.util.clock import Clock
from stratum.util.pacing import Pacer
from stratum.util.periodic import Periodic

if TYPE_CHECKING:  # the cold tier's module imports botocore and cryptography: only when used
    from stratum.block.cold import ColdStore

log = logging.getLogger("stratum.tiering")

# Volume records read per transaction, in an executor (copied out raw: about a millisecond).
PAGE = 1000
# Records decided per step of the event loop: decoding them, their objects' point reads and
# the rules take about a millisecond (several on a slow ARM board), then requests run.
SLICE = 50
# Watermark candidates kept per pool (rule 4; see WatermarkCandidates): a few hundred bytes each.
WATERMARK_CANDIDATES = 10_000
# A scheduled pass waits at least this many times as long as the last one worked (its pauses
# for requests not counted: a tenth of the time at most goes to passes; a nudge, for a pin,
# does not wait).
PASS_SHARE = 10
# Reads waiting for group-aware promotion (two short strings each).
PREFETCH_QUEUE = 1000
# Moves listed in a pass's report (all are counted, and all are in the decision log).
LISTED_MOVES = 1000


@dataclass
class PassReport:
    volumes: int = 0  # volume records looked at
    decided: int = 0
    moved: int = 0
    failed: int = 0
    bytes_moved: int = 0
    moves: list[dict[str, Any]] = field(default_factory=list)  # the first LISTED_MOVES


class TierEngine:
    def __init__(
        self,
        service: ObjectService,
        config: TieringConfig,
        clock: Clock,
        *,
        cold: ColdStore | None = None,
        capacity: Callable[[str], Usage] | None = None,
        prices: Prices = DEFAULT_PRICES,
    ) -> None:
        self.service = service
        self.meta = service.meta
        self.config = config
        self.clock = clock
        self.cold = cold
        tiers = set(service.tiers) | ({"cold"} if cold is not None else set())
        self.learner = Learner(prices)
        self.policy = HeuristicPolicy(config, tiers, self.learner)
        learned = config.policy == "learned"
        self.prefetcher = Prefetcher(
            after=config.prefetch_after,
            window=config.prefetch_window,
            count=config.prefetch_count,
            budget=config.prefetch_budget if learned else 0,
        )
        # reads that asked for promotion, waiting for the one task that moves them; the oldest
        # are dropped past PREFETCH_QUEUE (a burst of slow reads outruns move_rate)
        self._prefetch_wanted: collections.deque[tuple[str, str]] = collections.deque(
            maxlen=PREFETCH_QUEUE
        )
        self._prefetching: asyncio.Task[None] | None = None
        self._learner_store = LearnerStore(self.meta)
        self._learner_saved = clock.now()
        self._role = ""  # "primary" (runs passes) or "worker" (hands its learning over)
        self._hand_over = Periodic(
            "learner",
            self.hand_over_learning,
            interval=HAND_OVER_INTERVAL,
            log=log,
            what="handing the learner's statistics over",
        )
        if config.enabled:
            service.on_reads = self._learn_reads
            service.garbage.on_freed = self._learn_end
        self.mover = Mover(service, clock, cold)
        self._capacity = capacity or self._disk_capacity
        self._passes = Periodic(
            "tiering", self._scheduled_pass, interval=config.interval, log=log, what="tiering pass"
        )
        self._pass_took = 0.0  # seconds the last pass took
        self._pass_ended = -math.inf  # time.monotonic()
        self._nudged = False
        self._lock = asyncio.Lock()
        self._log_indexed = False
        # Moves since the process started, by (from, to, "moved" | "failed"): for /metrics.
        self.moves: dict[tuple[str, str, str], int] = {}
        self.moved_bytes: dict[tuple[str, str], int] = {}
        self.lifecycle_day = lifecycle.DAY  # seconds in a lifecycle rule's day (transitions)
        if cold is not None:
            service.remote["cold"] = ColdTierStorage(cold)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the learner knew; run a pass every ``tiering.interval`` (the first one an
        interval after start)."""
        if self.config.enabled:
            self._role = "primary"
            await self.load_learner()
            self._passes.start()

    async def start_worker(self) -> None:
        """A worker process: learn from the reads it serves, for the primary."""
        if self.config.enabled:
            self._role = "worker"
            self.learner.defer_long = True
            self._hand_over.start()

    async def stop(self) -> None:
        if self._prefetching is not None:
            self._prefetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prefetching
        await self._passes.stop()
        await self._hand_over.stop()
        if self._role == "primary":
            await self.save_learner()
        elif self._role == "worker":
            await self.hand_over_learning()

    # -- learning -----------------------------------------------------------------------

    def _learn_reads(self, batches: list[tuple[VolumeRecord, float, int, float]]) -> None:
        prefetching = self.prefetcher.enabled
        for volume, previous, count, last in batches:
            if volume.key and not volume.kind:
                self.learner.reads(class_of_volume(volume), previous, count, last)
                slow = volume.tier != "hot"
                if prefetching and self.prefetcher.read(volume.bucket, volume.key, slow, last):
                    self._prefetch_wanted.append((volume.bucket, volume.key))
        if self._prefetch_wanted and (self._prefetching is None or self._prefetching.done()):
            self._prefetching = asyncio.get_running_loop().create_task(self._prefetch())

    # -- group-aware promotion ------------------------------------------------------------

    async def _prefetch(self) -> None:
        """Promote what follows each read the prefetcher named (:mod:`stratum.tiering.prefetch`):
        the candidates read off the loop, moved one after another at ``move_rate``, unless
        hot is above its high watermark."""
        loop = asyncio.get_running_loop()
        while self._prefetch_wanted:
            bucket, key = self._prefetch_wanted.popleft()
            try:
                await self._prefetch_after(loop, bucket, key)
            except Exception:  # one failed promotion must not end the others' task
                log.exception("promoting what follows %s/%s failed", bucket, key)

    async def _prefetch_after(self, loop: asyncio.AbstractEventLoop, bucket: str, key: str) -> None:
        """Promote what follows one read (see :meth:`_prefetch`)."""
        usage = await loop.run_in_executor(None, self.usage)
        hot = usage.get("hot")
        if hot is not None and hot.fraction >= self.config.hot_high_watermark:
            return
        find = functools.partial(
            _following_volumes, bucket=bucket, key=key, limit=4 * self.prefetcher.count
        )
        found = await loop.run_in_executor(None, self.meta.read, find)
        now = self.clock.now()
        chosen = self.prefetcher.take(bucket, key, [(v.key, v.size) for v in found], now)
        by_key = {volume.key: volume for volume in found}
        for name, _size in chosen:
            volume = by_key[name]
            inputs = {**self.policy.signals(volume, now), "after_read_of": key}
            inputs["scope"] = scope_of(bucket, key)
            await self._move(volume, Decision("hot", PREFETCH_RULE, inputs), PassReport())

    def _learn_end(self, volume: VolumeRecord, when: float) -> None:
        last = max(volume.last_access, volume.created)
        self.learner.ended(class_of_volume(volume), last, when)

    async def load_learner(self) -> None:
        """Take the statistics saved in LMDB."""
        self.learner = self.policy.learner = await self._learner_store.load(self.learner)

    async def save_learner(self) -> None:
        await self._learner_store.save(self.learner)
        self._learner_saved = self.clock.now()

    async def hand_over_learning(self) -> None:
        await self._learner_store.hand_over(self.learner)

    def classes(self, limit: int) -> dict[str, Any]:
        """The learner's classes, most recently updated first (``stratum tier classes``)."""
        table = self.learner.table()
        prefetch = {**self.prefetcher.summary(), "scopes": list(self.prefetcher.scopes())[:limit]}
        return {
            "policy": self.config.policy,
            "count": len(table),
            "classes": table[:limit],
            "prefetch": prefetch,
        }

    def nudge(self) -> None:
        """Run a pass soon (a pin was set), however long the last one took."""
        self._nudged = True
        self._passes.wake()

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

    async def _scheduled_pass(self) -> None:
        """Every ``interval``, but never sooner after the last pass than :data:`PASS_SHARE`
        times as long as it took, unless nudged: a pass over ten million objects takes
        minutes of a core, and back to back they would take one for good."""
        waited = time.monotonic() - self._pass_ended
        if not self._nudged and waited < PASS_SHARE * self._pass_took:
            return
        self._nudged = False
        await self.run_pass()

    async def run_pass(self) -> PassReport:
        async with self._lock:
            pacer = Pacer()
            try:
                return await self._pass(pacer)
            finally:
                self._pass_ended = time.monotonic()
                self._pass_took = pacer.worked  # its work, not the pauses it gave requests

    async def _pass(self, pacer: Pacer) -> PassReport:
        """Walk every volume: pages of raw records read off the event loop, decided a slice
        per loop step, what rules 1 to 3 decide moved as the walk goes, then what rule 4
        picked. Memory: a page, the watermark candidates and a slice's moves, whatever the
        number of volumes. Deciding runs on the loop rather than in a thread: a thread
        decoding in Python would hold the GIL the loop needs after each of its system calls.
        Between two slices the walk gives way to requests as ``pacer`` says
        (:mod:`stratum.util.pacing`): flat out on an idle server, a tenth of the time on a
        busy one.
        """
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        usage = await loop.run_in_executor(None, self.usage)
        await self._index_log()
        report = PassReport()
        await self._learner_store.merge_handed_over(self.learner)
        self.learner.begin_round(now)
        candidates = WatermarkCandidates(self.policy, usage, WATERMARK_CANDIDATES)
        after = ""
        while True:
            read = functools.partial(catalog.volume_page, after=after, limit=PAGE)
            page = await loop.run_in_executor(None, self.meta.read, read)
            if not page:
                break
            after = page[-1][0]
            report.volumes += len(page)
            for start in range(0, len(page), SLICE):
                await pacer.pause()  # requests are served between two slices
                records = page[start : start + SLICE]
                decide = functools.partial(self._decide, records, now, usage, candidates)
                for volume, decision in self.meta.read(decide):
                    await self._move(volume, decision, report)
        picked_at = self.clock.now()
        for pick in candidates.picks():
            lookup = functools.partial(catalog.get_volume, volume_id=pick.volume_id)
            current = self.meta.read(lookup)
            if current is None or current.tier != pick.tier:
                continue  # deleted or moved since it was offered
            decision = self.policy.watermark_decision(current, pick, picked_at)
            await self._move(current, decision, report)
        await self._prune_log(now)
        self.learner.forget_answers()  # between passes only the counts are kept
        if self.clock.now() - self._learner_saved >= SAVE_INTERVAL:
            await self.save_learner()
        return report

    def _decide(
        self,
        records: list[tuple[str, bytes]],
        now: float,
        usage: Mapping[str, Usage],
        candidates: WatermarkCandidates,
        tx: Tx,
    ) -> list[tuple[VolumeRecord, Decision]]:
        """Rules 1 to 3 on a slice of a page (a few milliseconds on the loop: decoding and
        point reads); the volumes they leave in place are offered to rule 4."""
        buckets: dict[str, BucketRecord | None] = {}
        planned: list[tuple[VolumeRecord, Decision]] = []
        for _volume_id, raw in records:
            volume = VolumeRecord.decode(raw)
            record = versions.version_of_volume(tx, volume) if volume.key else None
            if volume.key and record is None:
                continue  # a part, a delete marker, or not committed yet: not the engine's
            if record is not None:
                self.policy.observe_idle(volume, now)
            if volume.bucket not in buckets:
                buckets[volume.bucket] = (
                    catalog.get_bucket(tx, volume.bucket) if volume.bucket else None
                )
            bucket = buckets[volume.bucket]
            pin = lifecycle_pin(tx, record, bucket, now, self.lifecycle_day) if record else ("", "")
            pin = pin if pin[0] else pinned_tier(record, bucket)
            decision = self.policy.decide(volume, pin, now, usage)
            if decision is not None:
                planned.append((volume, decision))
                candidates.leaving(volume)
            elif not pin[0]:
                candidates.offer(volume)
        return planned

    async def _move(self, volume: VolumeRecord, decision: Decision, report: PassReport) -> None:
        started = time.monotonic()
        report.decided += 1
        ok = await self.mover.move(volume, decision)
        path = (volume.tier, decision.target)
        if ok:
            report.moved += 1
            report.bytes_moved += volume.size
            self.moved_bytes[path] = self.moved_bytes.get(path, 0) + volume.size
        else:
            report.failed += 1
        counted = (*path, "moved" if ok else "failed")
        self.moves[counted] = self.moves.get(counted, 0) + 1
        if len(report.moves) < LISTED_MOVES:
            report.moves.append(
                {"volume_id": volume.volume_id, "to": decision.target, "rule": decision.rule}
            )
        if self.config.move_rate > 0:  # don't starve client traffic
            budget = volume.size / self.config.move_rate - (time.monotonic() - started)
            if budget > 0:
                await asyncio.sleep(budget)

    async def _prune_log(self, now: float) -> None:
        """Forget decisions older than ``decision_log_keep``, a page per transaction: the
        writer thread, shared with every PUT, is never held long."""
        before = now - self.config.decision_log_keep
        prune = functools.partial(prune_decisions, before=before, limit=PAGE)
        while await self.meta.write(prune) == PAGE:
            pass

    async def _index_log(self) -> None:
        """Index a decision log written before it had an index, a page per transaction."""
        if self._log_indexed or self.meta.read(decisions_indexed):
            self._log_indexed = True
            return
        index = functools.partial(index_decisions, limit=PAGE)
        while not await self.meta.write(index):
            pass
        self._log_indexed = True

    # -- pins -------------------------------------------------------------------------

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

    def explain(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
        # Between passes the learner's answers are not kept (reads since would make them
        # stale): an explanation computes its own and leaves none. A pass's are its own.
        between_passes = not self._lock.locked()
        if between_passes:
            self.learner.forget_answers()
        try:
            return self.meta.read(functools.partial(self._explain, bucket, key, version_id))
        finally:
            if between_passes:
                self.learner.forget_answers()

    def _explain(self, bucket: str, key: str, version_id: str | None, tx: Tx) -> dict[str, Any]:
        current = catalog.get_object(tx, bucket, key)
        try:
            found = versions.find(tx, bucket, key, version_id) if version_id else current
        except versions.InvalidVersionId:
            return {"error": f"no version id of this store looks like {version_id!r}"}
        record = found
        if record is None or record.delete_marker:
            what = f" version {version_id}" if version_id else ""
            return {"error": f"no object {bucket}/{key}{what}"}
        volume = catalog.get_volume(tx, record.volume_id)
        assert volume is not None
        now = self.clock.now()
        found_bucket = catalog.get_bucket(tx, bucket)
        pin = lifecycle_pin(tx, record, found_bucket, now, self.lifecycle_day)
        pin = pin if pin[0] else pinned_tier(record, found_bucket)
        decision = self.policy.decide(volume, pin, now, {})
        nxt = self.policy.next_move(volume, pin)
        if nxt is not None and nxt["rule"] == "idle" and self.config.policy == "learned":
            nxt = {**nxt, "rule": "idle, unless learned moves it first"}
        return {
            "bucket": bucket,
            "key": key,
            "version": _version_summary(tx, bucket, record, volume, current),
            "volume_id": volume.volume_id,
            "tier": volume.tier,
            "storage_class": TIER_CLASS[volume.tier],
            "layout": volume.layout,
            "size": volume.size,
            "location": _location_summary(volume),
            "signals": self.policy.signals(volume, now),
            "pin": pin[0] or None,
            "pinned_by": pin[1] or None,  # "object", "bucket" or "lifecycle:<rule id>"
            "placed_by": volume.placed
            or {"rule": "new object: written to the hot tier", "at": volume.created},
            "pending": dataclasses.asdict(decision) if decision else None,
            "next_move": nxt,
            "learned": self._learned_view(volume, pin, decision, now),
        }

    def _learned_view(
        self, volume: VolumeRecord, pin: tuple[str, str], decision: Decision | None, now: float
    ) -> dict[str, Any]:
        """The volume's class as the learner sees it, the expected cost of each tier and
        what rule 3 decides with them (whether or not ``policy`` is "learned")."""
        name = class_of_volume(volume)
        age = now - max(volume.last_access, volume.created)
        costs = self.learner.expected_costs(
            name, volume.size, volume.tier, age, self.policy.learner_tiers(volume.size)
        )
        view: dict[str, Any] = {
            "policy": self.config.policy,
            "gaps": self.learner.describe(name, age),
            "expected_costs": {t: round(c, 9) for t, c in costs.items()} if costs else None,
        }
        if costs is None:
            view["decision"] = "too little evidence: the idle thresholds decide"
        else:
            best = min(costs, key=lambda t: (costs[t], t != volume.tier))
            view["decision"] = "stay" if best == volume.tier else f"-> {best}"
        window = self.config.prefetch_window
        if pin[0]:
            view["decision"] += f" (overridden: pinned by {pin[1]})"
        elif self.config.policy == "learned" and held(
            volume.placed, volume.last_access, now, window
        ):
            view["decision"] += " (held in hot: promoted ahead of a read that has not come yet)"
        elif decision is not None and decision.rule not in ("learned", "idle"):
            view["decision"] += f" (overridden by rule {decision.rule})"
        return view


def _following_volumes(tx: Tx, bucket: str, key: str, limit: int) -> list[VolumeRecord]:
    """The current versions' volumes of the keys after ``key`` in its scope (at most
    ``limit`` keys looked at) that are not in hot."""
    page = catalog.list_objects(
        tx, bucket, prefix=following_keys(key)[1], start_after=key, max_keys=limit
    )
    found = []
    for listed in page.listed():
        record = catalog.get_object(tx, bucket, listed.key)
        volume = catalog.get_volume(tx, record.volume_id) if record is not None else None
        if volume is not None and volume.tier != "hot" and volume.key and not volume.kind:
            found.append(volume)
    return found


def _version_summary(
    tx: Tx, bucket: str, record: ObjectRecord, volume: VolumeRecord, current: ObjectRecord | None
) -> dict[str, Any]:
    """Which version this is and, if an older one no client reads, that it is the kind of
    data that belongs in a colder tier: kept for recovery, not for reading."""
    is_current = current is not None and current.volume_id == record.volume_id
    since = None
    if not is_current:
        since = versions.superseded_at(tx, bucket, record.key, versions.order_of(record))
        if since is None:  # its newest successor is gone or it was never in versions
            since = record.last_modified
    return {
        "id": record.version_id,
        "current": is_current,
        "noncurrent_since": since,
        "never_read": volume.access_count == 0,
    }


def _location_summary(volume: VolumeRecord) -> dict[str, Any]:
    loc = volume.location
    if volume.layout == "ec":
        return {"layout": "erasure", "shards": len(loc.get("disks", [])), "disks": loc.get("disks")}
    if volume.layout == "seg":
        return {"layout": "replicated segments", "copies": len(loc.get("replicas", []))}
    if volume.layout == "cold":
        return {"layout": "encrypted remote object", "remote_key": loc.get("key")}
    return {"layout": "multipart", "parts": len(loc.get("parts", []))}
