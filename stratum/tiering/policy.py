"""Where a volume should live: the tiering rules, shared by the engine and the simulator.

The engine (:mod:`stratum.tiering.engine`) asks :class:`HeuristicPolicy` about every volume
on each pass; the simulator (:mod:`stratum.tiering.simulator`) asks the same policy through
:class:`SimulatedStratumPolicy` (and :class:`LearnedPolicy`, which also reports reads and
ends to the learner as the engine's access recording and garbage collector do), so what it
predicts is what the engine would do.

Rules, in order (all durations and thresholds from ``[tiering]``):

1. **pin**: an object's storage class (STANDARD hot, STANDARD_IA warm, GLACIER_IR cold)
   or its bucket's pin puts it there, whatever its access pattern.
2. **promote**: ``promote_reads`` reads within ``promote_window`` bring a warm or cold
   volume back to hot, if hot is below its high watermark (``promote_reads = 0``: never).
3. **learned** (``policy = "learned"``, with a :class:`~stratum.tiering.learned.Learner`):
   the tier of lowest expected cost for the volume's class at its idle age (or, with too
   little evidence in it, its nearest related class's: same bucket and size band, then
   bucket); when none has enough, rule 3's fixed form decides, **idle**: hot volumes unread for
   ``hot_idle_before_warm`` go to warm; volumes unread for ``warm_idle_before_cold`` and at
   least ``cold_min_size`` go to cold.
4. **watermark**: when a pool passes its high watermark, its least recently read
   volumes move down until it is under the low watermark.

Each answer is a :class:`Decision`: the target tier, the rule that chose it and the values
that decided, which the decision log keeps (:mod:`stratum.tiering.decisions`).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratum.config import TieringConfig
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.tiering.learned import Learner, class_of, class_of_volume
from stratum.tiering.prefetch import RULE as PREFETCH_RULE
from stratum.tiering.prefetch import Prefetcher, held

if TYPE_CHECKING:
    from stratum.tiering.simulator import SimObject

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
TIER_CLASS = {"hot": "STANDARD", "warm": "STANDARD_IA", "cold": "GLACIER_IR"}


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
    """The zero-configuration rules of the module docstring, with [tiering]'s values. With a
    ``learner`` it reports idle objects to it; with ``policy = "learned"`` too, rule 3 is
    the learned one."""

    def __init__(
        self, config: TieringConfig, tiers: set[str], learner: Learner | None = None
    ) -> None:
        self.config = config
        self.tiers = tiers
        self.learner = learner
        self.learned = self.deferred = 0  # rule 3's decisions by the learner / the fixed rule
        local = tuple(t for t in ORDER if t in tiers and t != "cold")
        self._choices = {False: local, True: (*local, "cold")}  # by "cold is allowed"

    def learner_tiers(self, size: int) -> tuple[str, ...]:
        """The tiers rule 3 may choose for a volume of ``size`` bytes."""
        cold_ok = "cold" in self.tiers and size >= self.config.cold_min_size
        return self._choices[cold_ok]

    def observe_idle(self, volume: VolumeRecord, now: float) -> None:
        """A pass sees the volume: the learner counts one idle past its horizon."""
        if self.learner is not None:
            seen = max(volume.last_access, volume.created)
            self.learner.idle(class_of_volume(volume), seen, now)

    def learned_costs(
        self, volume: VolumeRecord, now: float
    ) -> tuple[str, str, dict[str, float]] | None:
        """(class, cheapest tier, expected cost per tier) by the learner, or None: no
        learner, or too little evidence for the volume's class at its idle age."""
        if self.learner is None or self.config.policy != "learned":
            return None
        name = class_of_volume(volume)
        age = now - max(volume.last_access, volume.created)
        decision = self.learner.decide(
            name, volume.size, volume.tier, age, self.learner_tiers(volume.size)
        )
        if decision is None:
            return None
        return name, decision[0], decision[1]

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
        return {
            "size": volume.size,
            "idle_seconds": round(now - seen, 3),
            "last_access": volume.last_access,
            "access_count": volume.access_count,
            "access_rate_per_day": round(volume.access_rate, 4),
            "reads_in_window": self._reads_in_window(volume, now),
        }

    def _reads_in_window(self, volume: VolumeRecord, now: float) -> int:
        window = self.config.promote_window
        return sum(1 for t in volume.recent if now - t <= window)

    def decide(
        self,
        volume: VolumeRecord,
        pin: tuple[str, str],
        now: float,
        usage: Mapping[str, Usage],
    ) -> Decision | None:
        """Where the volume should go now by rules 1 to 3, or None to stay. The signals
        (the decision's inputs) are gathered only for a decision: most volumes stay."""
        c = self.config
        tier = volume.tier
        if pin[0]:
            target = self._available(pin[0])
            if target != tier:
                inputs = self.signals(volume, now)
                return Decision(target, f"pin:{pin[1]}", {**inputs, "pinned": pin[0]})
            return None
        hot = usage.get("hot")
        if (
            tier != "hot"
            and c.promote_reads > 0  # 0 means never (reads >= 0 would hold for every volume)
            and self._reads_in_window(volume, now) >= c.promote_reads
            and (hot is None or hot.fraction < c.hot_high_watermark)
        ):
            inputs = self.signals(volume, now)
            return Decision("hot", "promote", {**inputs, "promote_reads": c.promote_reads})
        learning = c.policy == "learned"
        if learning and held(volume.placed, volume.last_access, now, c.prefetch_window):
            return None  # promoted ahead of a read that has not come yet
        learned = self.learned_costs(volume, now)
        if learned is not None:
            self.learned += 1
            name, target, costs = learned
            if target == tier:
                return None
            rounded = {t: round(cost, 9) for t, cost in costs.items()}
            inputs = {**self.signals(volume, now), "class": name, "expected_costs": rounded}
            if self.learner is not None:  # the class, or the relative, whose gaps decided
                age = now - max(volume.last_access, volume.created)
                inputs["evidence_class"] = self.learner.evidence_class(name, age)
            return Decision(target, "learned", inputs)
        if self.learner is not None and c.policy == "learned":
            self.deferred += 1
        idle = round(now - max(volume.last_access, volume.created), 3)  # as signals() has it
        cold_ok = "cold" in self.tiers and volume.size >= c.cold_min_size
        if tier in ("hot", "warm") and cold_ok and idle >= c.warm_idle_before_cold:
            inputs = {**self.signals(volume, now), "threshold": c.warm_idle_before_cold}
            return Decision("cold", "idle", inputs)
        if tier == "hot" and "warm" in self.tiers and idle >= c.hot_idle_before_warm:
            inputs = {**self.signals(volume, now), "threshold": c.hot_idle_before_warm}
            return Decision("warm", "idle", inputs)
        return None

    def watermarks(self) -> dict[str, tuple[float, float]]:
        """{tier: (high, low)} for the pools rule 4 watches."""
        c = self.config
        return {
            "hot": (c.hot_high_watermark, c.hot_low_watermark),
            "warm": (c.warm_high_watermark, c.warm_low_watermark),
        }

    def demotion_target(self, tier: str, size: int) -> str | None:
        """Where rule 4 sends a volume of ``size`` bytes out of ``tier`` (None: no tier below)."""
        below = [t for t in ORDER[ORDER.index(tier) + 1 :] if t in self.tiers]
        if not below:
            return None
        if below[0] == "cold" and size < self.config.cold_min_size and len(below) > 1:
            return below[1]
        return below[0]

    def watermark_decision(self, volume: VolumeRecord, pick: Demotion, now: float) -> Decision:
        """Rule 4's decision on a volume it picked, with the values that decided."""
        return Decision(pick.target, "watermark", {**self.signals(volume, now), **pick.inputs})

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
        if volume.tier != "hot" and c.promote_reads > 0:
            return {
                "to": "hot",
                "at": None,
                "rule": f"promote after {c.promote_reads} reads within {c.promote_window:.0f} s",
            }
        return None


@dataclass(frozen=True)
class Demotion:
    """A volume rule 4 picked: it leaves ``tier`` for ``target``; ``inputs`` are the pool's
    figures that decided (fill, capacity, watermarks)."""

    volume_id: str
    tier: str
    target: str
    inputs: dict[str, Any]


class WatermarkCandidates:
    """Rule 4 over one pass, in memory bounded by ``limit`` per tier, not by the store.

    The engine tells it of every move rules 1 to 3 chose (:meth:`leaving`: those bytes leave
    the pool too) and offers every unpinned volume they leave in place (:meth:`offer`). Of
    each pool above its high watermark it keeps only the least recently read volumes that
    can be needed to bring the pool under its low watermark (a max-heap on the last read:
    the most recently read goes as soon as the colder ones cover the excess), and at most
    ``limit`` of them: a pool that needs more gets the rest at the next pass. Each entry is
    (last read, walk order, size, id), a few hundred bytes, never the volume record.

    :meth:`picks` then applies rule 4 to what was kept, exactly as to the whole pool: least
    recently read first (walk order among equals), until the pool would be under its low
    watermark.
    """

    def __init__(self, policy: HeuristicPolicy, usage: Mapping[str, Usage], limit: int) -> None:
        self._limit = limit
        self._pools: dict[str, tuple[Usage, float, float]] = {}
        self._leaving: dict[str, int] = {}
        self._heaps: dict[str, list[tuple[float, int, int, str]]] = {}
        self._held: dict[str, int] = {}
        self._policy = policy
        self._offered = 0
        for tier, (high, low) in policy.watermarks().items():
            u = usage.get(tier)
            if u is None or not u.capacity or u.fraction <= high:
                continue
            if policy.demotion_target(tier, 0) is None:
                continue
            self._pools[tier] = (u, high, low)
            self._leaving[tier] = 0
            self._heaps[tier] = []
            self._held[tier] = 0

    def leaving(self, volume: VolumeRecord) -> None:
        """Rules 1 to 3 move this volume out of its tier."""
        if volume.tier in self._leaving:
            self._leaving[volume.tier] += volume.size

    def offer(self, volume: VolumeRecord) -> None:
        """An unpinned volume that no other rule moves."""
        heap = self._heaps.get(volume.tier)
        if heap is None:
            return
        u, _high, low = self._pools[volume.tier]
        excess = u.used - self._leaving[volume.tier] - low * u.capacity
        if excess <= 0:
            return  # the moves already chosen bring the pool down
        self._offered += 1
        seen = max(volume.last_access, volume.created)
        heapq.heappush(heap, (-seen, -self._offered, volume.size, volume.volume_id))
        held = self._held[volume.tier] + volume.size
        # Drop the most recently read while the others cover the excess (a byte of margin
        # for the float arithmetic of picks()), or while there are too many.
        while heap and (len(heap) > self._limit or held - heap[0][2] >= excess + 1):
            held -= heapq.heappop(heap)[2]
        self._held[volume.tier] = held

    def picks(self) -> list[Demotion]:
        """What leaves each pool, least recently read first, until it would be under its low
        watermark."""
        out: list[Demotion] = []
        for tier, (u, high, low) in self._pools.items():
            used = u.used - self._leaving[tier]
            for _seen, _order, size, volume_id in sorted(self._heaps[tier], reverse=True):
                if used / u.capacity <= low:
                    break
                target = self._policy.demotion_target(tier, size)
                assert target is not None
                inputs = {
                    "pool_used": u.used,
                    "pool_capacity": u.capacity,
                    "high_watermark": high,
                    "low_watermark": low,
                }
                out.append(Demotion(volume_id, tier, target, inputs))
                used -= size
        return out


class SimulatedStratumPolicy:
    """Stratum's own policy, for the simulator (:mod:`stratum.tiering.simulator`).

    The same :class:`HeuristicPolicy` decides; this adapter turns a simulated object into
    the volume record it reads, noting the reads the simulator reports between its hourly
    questions as that hour's recent reads.
    """

    name = "stratum"

    def __init__(
        self, config: TieringConfig, tiers: set[str], learner: Learner | None = None
    ) -> None:
        self.policy = HeuristicPolicy(config, tiers, learner)
        self._seen: dict[tuple[str, str], tuple[int, list[float]]] = {}

    def place(self, obj: SimObject, now: float) -> str:
        ident = (obj.bucket, obj.key)
        count, recent = self._seen.get(ident, (0, []))
        new_reads = obj.access_count - count
        if new_reads > 0:
            recent = (recent + [obj.last_access] * min(new_reads, 16))[-16:]
        self._seen[ident] = (obj.access_count, recent)
        volume = VolumeRecord(
            volume_id="sim",
            bucket=obj.bucket,
            key=obj.key,
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
            placed={"rule": PREFETCH_RULE, "at": obj.promoted_at} if obj.promoted_at else {},
        )
        self.policy.observe_idle(volume, now)
        decision = self.policy.decide(volume, ("", ""), now, {})
        return decision.target if decision is not None else str(obj.tier)


class LearnedPolicy(SimulatedStratumPolicy):
    """The learned policy in the simulator: the same rules with ``learner`` for rule 3, fed
    by the simulator's hooks as the engine is by the service (a GET: the gap since the
    object's previous read or write; a DELETE or a PUT over it: its end; each round: the
    idle ones past the horizon). ``fallback`` gives the [tiering] values and tiers."""

    name = "learned"

    def __init__(
        self, learner: Learner, fallback: SimulatedStratumPolicy, cold_min_size: int
    ) -> None:
        config = dataclasses.replace(
            fallback.policy.config, cold_min_size=cold_min_size, policy="learned"
        )
        super().__init__(config, fallback.policy.tiers, learner)
        self.learner = learner
        # group-aware promotion, as the engine runs it; the simulator asks for it by name
        self.prefetcher = Prefetcher(
            after=config.prefetch_after,
            window=config.prefetch_window,
            count=config.prefetch_count,
            budget=config.prefetch_budget,
        )
        self.move_rate = config.move_rate  # a promotion lands when its bytes have moved

    @property
    def learned(self) -> int:
        return self.policy.learned

    @property
    def deferred(self) -> int:
        return self.policy.deferred

    def begin_round(self, now: float, tier_bytes: Any, objects: Iterable[Any]) -> None:
        self.learner.begin_round(now)

    def on_read(self, obj: SimObject, now: float) -> None:
        """Before the simulator counts a GET at ``now``."""
        previous = max(obj.last_access, obj.created)
        self.learner.reads(class_of(obj.bucket, obj.key, obj.size), previous, 1, now)

    def on_end(self, obj: SimObject, now: float) -> None:
        """The object is deleted or replaced at ``now``."""
        last = max(obj.last_access, obj.created)
        self.learner.ended(class_of(obj.bucket, obj.key, obj.size), last, now)
