"""Learned placement: per object class, the re-access gaps seen so far decide, at the prices.

An object's **class** is its bucket, its key's directory with every run of digits replaced by
``#`` (``night-0042/part-03.tar`` -> ``night-#/``), its size band (a factor of 4) and how it
was written (single PUT, multipart, copy). Objects of a class are assumed to share habits:
how long after a read (or the write) the next read comes.

Each class keeps a histogram of those **gaps** over geometric bins (1 minute doubling up to
the horizon) plus a bin for "not read again within the horizon" (deleted, replaced or idle for
longer), every count decayed with a half-life (:data:`HALF_LIFE`) so the statistics follow a
changing workload. A class is a few hundred bytes; at most :data:`MAX_CLASSES` are kept, the
least recently updated forgotten first, so memory is bounded whatever the number of objects.

**The decision** (ski rental with the class's gap distribution instead of a fixed
threshold): for an object idle for ``a`` seconds, the class's gaps longer than ``a`` give the
distribution of the time ``R`` to its next read. For each tier ``X`` the expected cost over
the coming horizon ``H`` is

    move(current -> X) + storage_X * size * E[min(R, H)] + P(R < H) * (read_X + slow_X)

(``read_X``: egress and request price of a GET from X; ``slow_X``: the ``slow_read`` weight
unless X is the first tier), where the read and the storage also count the further reads the
class shows after a read within the horizon (``q / (1 - q)`` of them, ``q`` the share of
reads followed by another, each the mean of min(gap, horizon) later), and the object goes to
the cheapest. A class with less evidence than :data:`MIN_EVIDENCE` beyond ``a`` defers to the
fixed rules (the caller's fallback), so a new class starts from the defaults and improves as
gaps are observed.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stratum.tiering.pricing import GB, MONTH, Prices

__all__ = [
    "HALF_LIFE",
    "HORIZON",
    "MAX_CLASSES",
    "MIN_EVIDENCE",
    "ClassStats",
    "Learner",
    "class_of",
]

DAY = 86400.0
HORIZON = 64 * DAY
HALF_LIFE = 30 * DAY
MAX_CLASSES = 10_000
MIN_EVIDENCE = 8.0
#: upper edges of the gap bins: 1 minute, 2, 4, ... below the horizon, then the horizon
EDGES: tuple[float, ...] = tuple(
    [60.0 * 2**k for k in range(40) if 60.0 * 2**k < HORIZON] + [HORIZON]
)
NEVER = len(EDGES)  # the bin of "not read again within the horizon"
_DIGITS = re.compile(r"[0-9]+")


def class_of(bucket: str, key: str, size: int, written: str = "put") -> str:
    """The class name of an object: ``bucket/dir-pattern/ band written``."""
    directory = key[: key.rfind("/") + 1]
    band = max(0, int(math.log2(max(size, 1)) // 2))
    return f"{bucket}/{_DIGITS.sub('#', directory)} {4**band}B+ {written}"


#: lower edges of the gap bins
LOWS: tuple[float, ...] = (0.0, *EDGES[:-1])


@dataclass
class ClassStats:
    """The decayed gap histogram of one class (see the module docstring)."""

    counts: list[float]
    updated: float
    # Sums over the bins from each one up (counts; counts x bin middles), made on the first
    # question after a change: a pass asks about many objects of a few classes, and with them
    # an answer is one bin's share plus two lookups, not a walk of every bin.
    _suffix: tuple[list[float], list[float]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, now: float) -> ClassStats:
        return cls([0.0] * (NEVER + 1), now)

    def decay_to(self, now: float) -> None:
        if now > self.updated:
            factor = 0.5 ** ((now - self.updated) / HALF_LIFE)
            self.counts = [c * factor for c in self.counts]
            self.updated = now
            self._suffix = None

    def observe(self, gap: float | None, now: float, weight: float = 1.0) -> None:
        """A gap between two reads (or the write and a read); None: none within the horizon."""
        self.decay_to(now)
        index = NEVER if gap is None or gap >= HORIZON else bisect.bisect_right(EDGES, gap)
        self.counts[index] += weight
        self._suffix = None

    def _sums(self) -> tuple[list[float], list[float]]:
        if self._suffix is None:
            counts, middles = [0.0] * (NEVER + 1), [0.0] * (NEVER + 1)
            for index in range(NEVER - 1, -1, -1):
                count = self.counts[index]
                counts[index] = counts[index + 1] + count
                middles[index] = middles[index + 1] + count * (LOWS[index] + EDGES[index]) / 2
            self._suffix = (counts, middles)
        return self._suffix

    def remaining(self, age: float) -> tuple[float, float, float]:
        """(evidence, P(R < H), E[min(R, H)]) for an object idle for ``age`` seconds, from the
        gaps longer than ``age`` (uniform within a bin), ``R`` the time to its next read."""
        counts, middles = self._sums()
        index = bisect.bisect_right(EDGES, age)  # the first bin that ends after age
        reads = expected = 0.0
        if index < NEVER:
            # the bin age falls in: the share of its gaps longer than age, on average
            # halfway between age (or the bin's start) and its end, seen from age
            low, high = LOWS[index], EDGES[index]
            start = max(low, age)
            reads = self.counts[index] * (high - start) / (high - low)
            expected = reads * ((start + high) / 2 - age)
            # the bins after it: all their gaps, each at its bin's middle
            reads += counts[index + 1]
            expected += middles[index + 1] - age * counts[index + 1]
        never = self.counts[NEVER]
        mass = reads + never
        if mass <= 0:
            return 0.0, 0.0, HORIZON
        # reads after the horizon from age count as never: the horizon is from the gap's start
        expected += never * max(0.0, HORIZON - age)
        return mass, reads / mass, expected / mass

    def summary(self) -> dict[str, Any]:
        total = sum(self.counts)
        reread = total - self.counts[NEVER]
        median = None
        if reread > 0:
            running = 0.0
            for index, count in enumerate(self.counts[:NEVER]):
                running += count
                if running >= reread / 2:
                    median = EDGES[index]
                    break
        return {
            "evidence": round(total, 2),
            "reread_ratio": round(reread / total, 4) if total else None,
            "median_gap_below": median,
        }


class Learner:
    """Class statistics and the decision of the module docstring, at ``prices``.

    Pure and clock-free: the caller reports gaps (:meth:`observe`) and asks
    (:meth:`decide`); ``now`` is always passed in.
    """

    def __init__(self, prices: Prices, max_classes: int = MAX_CLASSES) -> None:
        self.prices = prices
        self.max_classes = max_classes
        self.classes: OrderedDict[str, ClassStats] = OrderedDict()
        # remaining() by (class, whole minutes of age) until forget_answers(): a pass asks
        # about many objects of few classes
        self._answers: dict[tuple[str, int], tuple[float, float, float]] = {}
        tiers = prices.tiers
        self._first = tiers[0]
        self._out = {
            t: (prices.egress.get(t, 0.0), prices.get_requests.get(t, 0.0) / 1000) for t in tiers
        }

    def observe(self, name: str, gap: float | None, now: float, weight: float = 1.0) -> None:
        stats = self.classes.get(name)
        if stats is None:
            stats = self.classes[name] = ClassStats.empty(now)
            while len(self.classes) > self.max_classes:
                self.classes.popitem(last=False)
        else:
            self.classes.move_to_end(name)
        stats.observe(gap, now, weight)

    def forget_answers(self) -> None:
        """Start a new pass: the statistics have changed since the answers were computed."""
        self._answers.clear()

    def expected_costs(
        self, name: str, size: int, tier: str, age: float, tiers: Iterable[str]
    ) -> dict[str, float] | None:
        """Each allowed tier's expected cost over the horizon, or None: too little evidence."""
        minutes = int(age // 60)
        answer = self._answers.get((name, minutes))
        if answer is None:
            stats = self.classes.get(name)
            if stats is None:
                return None
            answer = self._answers[(name, minutes)] = stats.remaining(minutes * 60.0)
        evidence, p_read, held = answer
        if evidence < MIN_EVIDENCE:
            return None
        # after that read the object stays where it is for the class's further reads
        # within the horizon: q/(1-q) of them (q: a read is followed by another), each
        # a mean re-read gap later
        base = self._answers.get((name, 0))
        if base is None:
            base = self._answers[(name, 0)] = self.classes[name].remaining(0.0)
        _, q, mean_gap = base
        further = min(q / (1 - q) if q < 1 else math.inf, (HORIZON - held) / max(mean_gap, 1.0))
        reads = p_read * (1 + further)
        held = min(HORIZON, held + p_read * further * mean_gap)
        prices, gb = self.prices, size / GB
        slow = prices.slow_read / 1000
        costs: dict[str, float] = {}
        for target in tiers:
            egress, request = self._out[target]
            read = gb * egress + request + (slow if target != self._first else 0.0)
            cost = gb * prices.storage[target] * held / MONTH + reads * read
            if target != tier:
                out_egress, out_request = self._out[tier]
                cost += gb * (out_egress + prices.move) + out_request
                cost += prices.put_requests.get(target, 0.0) / 1000
            costs[target] = cost
        return costs

    def decide(
        self, name: str, size: int, tier: str, age: float, tiers: Iterable[str]
    ) -> tuple[str, dict[str, float]] | None:
        costs = self.expected_costs(name, size, tier, age, tiers)
        if costs is None:
            return None
        best = min(costs, key=lambda t: (costs[t], t != tier))
        return best, costs

    def table(self) -> list[dict[str, Any]]:
        """Every class with its summary, most recently updated first."""
        return [
            {"class": name, **stats.summary()} for name, stats in reversed(self.classes.items())
        ]


class _Seen:
    __slots__ = ("censored", "count", "created", "last", "name")

    def __init__(self, name: str, created: float, count: int, last: float) -> None:
        self.name = name
        self.created = created
        self.count = count
        self.last = last
        self.censored = False  # already counted as not read again within the horizon


class LearnedPolicy:
    """The learned placement in the simulator: the gaps come from the simulated objects'
    reads (several reads within one round: the last gap as seen, the others as under a
    minute), deletes and replacements; ``fallback`` (Stratum's fixed rules) decides for
    classes with too little evidence."""

    name = "learned"

    def __init__(self, learner: Learner, fallback: Any, cold_min_size: int) -> None:
        self.learner = learner
        self.fallback = fallback
        self.cold_min_size = cold_min_size
        self.seen: dict[tuple[str, str], _Seen] = {}
        self.learned = self.deferred = 0  # decisions by each path

    def begin_round(self, now: float, tier_bytes: Any, objects: Iterable[Any]) -> None:
        self.learner.forget_answers()
        alive = set()
        for obj in objects:
            ident = (obj.bucket, obj.key)
            alive.add(ident)
            seen = self.seen.get(ident)
            if seen is not None and seen.created != obj.created:  # replaced by a new PUT
                self._end(seen, now)
                del self.seen[ident]
        for ident in [i for i in self.seen if i not in alive]:
            self._end(self.seen.pop(ident), now)

    def _end(self, seen: _Seen, now: float) -> None:
        if not seen.censored:
            self.learner.observe(seen.name, None, now)

    def place(self, obj: Any, now: float) -> str:
        ident = (obj.bucket, obj.key)
        seen = self.seen.get(ident)
        if seen is None:
            name = class_of(obj.bucket, obj.key, obj.size)
            seen = self.seen[ident] = _Seen(name, obj.created, 0, obj.created)
        new = obj.access_count - seen.count
        if new > 0:
            learner = self.learner
            if not seen.censored:
                learner.observe(seen.name, obj.last_access - seen.last, now)
            if new > 1:
                learner.observe(seen.name, 0.0, now, weight=new - 1)
            seen.count, seen.last, seen.censored = obj.access_count, obj.last_access, False
        age = now - seen.last
        if age >= HORIZON and not seen.censored:
            self.learner.observe(seen.name, None, now)
            seen.censored = True
        tiers = ("hot", "warm", "cold") if obj.size >= self.cold_min_size else ("hot", "warm")
        decision = self.learner.decide(seen.name, obj.size, obj.tier, age, tiers)
        if decision is None:
            self.deferred += 1
            return str(self.fallback.place(obj, now))
        self.learned += 1
        return decision[0]
