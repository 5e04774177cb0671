"""Where a volume should live: the tiering rules, shared by the engine and the simulator.

The engine (:mod:`stratum.tiering.engine`) asks :class:`HeuristicPolicy` about every volume
on each pass; the simulator (:mod:`stratum.tiering.simulator`) asks the same policy through
:class:`SimulatedStratumPolicy`, so what it predicts is what the engine would do.

Rules, in order (all durations and thresholds from ``[tiering]``):

1. **pin**: an object's storage class (STANDARD hot, STANDARD_IA warm, GLACIER_IR cold)
   or its bucket's pin puts it there, whatever its access pattern.
2. **promote**: ``promote_reads`` reads within ``promote_window`` bring a warm or cold
   volume back to hot, if hot is below its high watermark (``promote_reads = 0``: never).
3. **idle**: hot volumes unread for ``hot_idle_before_warm`` go to warm; volumes unread
   for ``warm_idle_before_cold`` and at least ``cold_min_size`` go to cold.
4. **watermark**: when a pool passes its high watermark, its least recently read
   volumes move down until it is under the low watermark.

Each answer is a :class:`Decision`: the target tier, the rule that chose it and the values
that decided, which the decision log keeps (:mod:`stratum.tiering.decisions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratum.config import TieringConfig
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord

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
        """Where the volume should go now by rules 1 to 3, or None to stay."""
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
            and c.promote_reads > 0  # 0 means never (reads >= 0 would hold for every volume)
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

    def watermark_moves(
        self,
        by_tier: Mapping[str, Sequence[VolumeRecord]],
        usage: Mapping[str, Usage],
        planned: Sequence[tuple[VolumeRecord, Decision]],
        now: float,
    ) -> list[tuple[VolumeRecord, Decision]]:
        """Rule 4: what leaves each pool above its high watermark, least recently read
        first, until it would be under its low one.

        ``by_tier``: the unpinned volumes no other rule moves, per tier; ``planned``: the
        moves rules 1 to 3 already chose (their bytes leave too).
        """
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
            below = [t for t in ORDER[ORDER.index(tier) + 1 :] if t in self.tiers]
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
                    **self.signals(volume, now),
                    "pool_used": u.used,
                    "pool_capacity": u.capacity,
                    "high_watermark": high,
                    "low_watermark": low,
                }
                moves.append((volume, Decision(target, "watermark", inputs)))
                used -= volume.size
        return moves

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

    def place(self, obj: SimObject, now: float) -> str:
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
