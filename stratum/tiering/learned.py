"""Learned placement: per object class, the re-access gaps seen so far decide, at the prices.

An object's **class** is its bucket, its key's directory with every run of digits replaced by
``#`` (``night-0042/part-03.tar`` -> ``night-#/``), its size band (a factor of 4) and how it
was written (single PUT or multipart; the engine cannot tell a copy from a PUT, and the
simulator's traces have only PUTs). Objects of a class are assumed to share habits:
how long after a read (or the write) the next read comes.

Each class keeps a histogram of those **gaps** over geometric bins (1 minute doubling up to
the horizon) plus a bin for "not read again within the horizon" (deleted, replaced or idle for
longer), every count decayed with a half-life (:data:`HALF_LIFE`) so the statistics follow a
changing workload. A class is about half a kilobyte between passes (its counts, name and
entry: 10,000 classes of 38-character names took 5.2 MB, measured with tracemalloc; a test
holds it under 6 MB), plus about 0.8 KB while a pass asks about it (13 MB at the peak of a
pass over all 10,000); at most :data:`MAX_CLASSES` are kept, the least recently updated
forgotten first, so memory is bounded whatever the number of objects.

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

**Observations** need no memory per object: the engine and the simulator report the same
three events through the same methods. A read (:meth:`Learner.reads`): the object's previous
read (or write) time is on its record, the gap is the time between them. An object's end,
deleted or replaced (:meth:`Learner.ended`): "not read again". A round (a tiering pass,
:meth:`Learner.begin_round`) that finds an object idle past the horizon
(:meth:`Learner.idle`): "not read again" too, counted once, at the first round after it
crossed the horizon; a later read or end of that object knows from the round times (kept by
the learner, not per object) that it was counted and adds nothing.

**Stored form** (the engine keeps it in LMDB, :mod:`stratum.tiering.learning` says where;
:meth:`Learner.snapshot` with :func:`encode_snapshot`, :meth:`Learner.load`), format 1: JSON
``{"format": 1, "bins": len(EDGES), "last_round": t | null, "previous_round": t | null,
"classes": [[name, updated, [count, ...]], ...], "long_gaps": [...]}``, classes least
recently updated first, each with ``bins + 1`` decayed counts (the last: "not read again").
A record of another format or bin count is ignored (the learner starts empty: the fixed
rules decide until evidence returns). ``long_gaps`` is empty but in a worker process's
record (``defer_long``): ``[[name, previous, last], ...]``, reads after an idle past the
horizon, which only the learner that runs the rounds can tell counted or not;
:meth:`Learner.merge` adds a worker's record to the primary's.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stratum.meta.records import VolumeRecord
from stratum.tiering.pricing import GB, MONTH, Prices

__all__ = [
    "HALF_LIFE",
    "HORIZON",
    "MAX_CLASSES",
    "MIN_EVIDENCE",
    "ClassStats",
    "Learner",
    "class_of",
    "class_of_volume",
]

DAY = 86400.0
HORIZON = 64 * DAY
HALF_LIFE = 30 * DAY
MAX_CLASSES = 10_000
MIN_EVIDENCE = 8.0
#: remaining() answers cached within a round, at most (a pass over a million objects asks
#: about as many ages): past this the cache starts again, the answers are the same
MAX_ANSWERS = 100_000
FORMAT = 1
#: upper edges of the gap bins: 1 minute, 2, 4, ... below the horizon, then the horizon
EDGES: tuple[float, ...] = tuple(
    [60.0 * 2**k for k in range(40) if 60.0 * 2**k < HORIZON] + [HORIZON]
)
NEVER = len(EDGES)  # the bin of "not read again within the horizon"
_DIGITS = re.compile(r"[0-9]+")


@functools.lru_cache(maxsize=4096)  # a pass asks about each object twice; the simulator
def class_of(bucket: str, key: str, size: int, written: str = "put") -> str:  # every hour
    """The class name of an object: ``bucket/dir-pattern/ band written``."""
    directory = key[: key.rfind("/") + 1]
    band = max(0, int(math.log2(max(size, 1)) // 2))
    return f"{bucket}/{_DIGITS.sub('#', directory)} {4**band}B+ {written}"


def class_of_volume(volume: VolumeRecord) -> str:
    """The class of an object's volume: multipart when it has parts (a copy is not told
    apart from a PUT: the volume record does not say)."""
    written = "multipart" if volume.part_sizes else "put"
    return class_of(volume.bucket, volume.key, volume.size, written)


#: lower edges of the gap bins
LOWS: tuple[float, ...] = (0.0, *EDGES[:-1])


@dataclass(slots=True)
class ClassStats:
    """The decayed gap histogram of one class (see the module docstring). Counts are kept
    in arrays of doubles, not lists of float objects: a third of the memory."""

    counts: array[float]
    updated: float
    # Sums over the bins from each one up (counts; counts x bin middles), made on the first
    # question after a change: a pass asks about many objects of a few classes, and with them
    # an answer is one bin's share plus two lookups, not a walk of every bin.
    _suffix: tuple[array[float], array[float]] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def empty(cls, now: float) -> ClassStats:
        return cls(array("d", bytes(8 * (NEVER + 1))), now)

    def decay_to(self, now: float) -> None:
        if now > self.updated:
            factor = 0.5 ** ((now - self.updated) / HALF_LIFE)
            self.counts = array("d", [c * factor for c in self.counts])
            self.updated = now
            self._suffix = None

    def observe(self, gap: float | None, now: float, weight: float = 1.0) -> None:
        """A gap between two reads (or the write and a read); None: none within the horizon."""
        self.decay_to(now)
        index = NEVER if gap is None or gap >= HORIZON else bisect.bisect_right(EDGES, gap)
        self.counts[index] += weight
        self._suffix = None

    def _sums(self) -> tuple[array[float], array[float]]:
        if self._suffix is None:
            counts, middles = array("d", bytes(8 * (NEVER + 1))), array("d", bytes(8 * (NEVER + 1)))
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

    Clock-free: the caller reports events (:meth:`reads`, :meth:`ended`, :meth:`idle`,
    :meth:`begin_round`) and asks (:meth:`decide`); ``now`` is always passed in. Not
    thread-safe: the engine calls it on the event loop only.
    """

    def __init__(
        self, prices: Prices, max_classes: int = MAX_CLASSES, *, defer_long: bool = False
    ) -> None:
        self.prices = prices
        self.max_classes = max_classes
        self.classes: OrderedDict[str, ClassStats] = OrderedDict()
        # a learner that runs no rounds (a worker process's) keeps the reads after an idle
        # past the horizon for the one that does (merge()): at most max_classes of them
        self.defer_long = defer_long
        self.long_gaps: list[tuple[str, float, float]] = []
        # the start of the latest round and of the one before (None: none yet): whether an
        # object idle past the horizon was already counted as "not read again"
        self.last_round: float | None = None
        self.previous_round: float | None = None
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

    # -- the events, as the engine and the simulator report them ------------------------

    def _counted(self, last: float) -> bool:
        """Whether a round has seen the object last read at ``last`` idle past the horizon
        (and so counted it as "not read again")."""
        return self.last_round is not None and last + HORIZON <= self.last_round

    def begin_round(self, now: float) -> None:
        """A round (a tiering pass) starts: every object will be asked about at ``now``."""
        self.forget_answers()
        self.previous_round, self.last_round = self.last_round, now

    def reads(self, name: str, previous: float, count: int, last: float) -> None:
        """``count`` reads of an object of class ``name``, the last at ``last``; the one before
        them (or its write) was at ``previous``. Reads batched together count as under a
        minute apart, the gap before them as ``last - previous``."""
        if count <= 0:
            return
        gap = last - previous
        if gap >= HORIZON and self.defer_long:
            if len(self.long_gaps) < self.max_classes:
                self.long_gaps.append((name, previous, last))
        elif gap < HORIZON or not self._counted(previous):
            self.observe(name, gap, last)  # a gap past the horizon lands in "not read again"
        if count > 1:
            self.observe(name, 0.0, last, weight=count - 1)

    def ended(self, name: str, last: float, now: float) -> None:
        """The object (last read or written at ``last``) was deleted or replaced at ``now``."""
        if not self._counted(last):
            self.observe(name, None, now)

    def idle(self, name: str, last: float, now: float) -> None:
        """The round at ``now`` finds the object last read at ``last``: past the horizon for
        the first time, it counts as "not read again"."""
        crossed = last + HORIZON
        if crossed <= now and (self.previous_round is None or crossed > self.previous_round):
            self.observe(name, None, now)

    # -- the decision -------------------------------------------------------------------

    def forget_answers(self) -> None:
        """Start a new pass (the statistics have changed since the answers were computed), or
        end one: the answers and each class's sums go (0.6 KB a class), the counts stay."""
        self._answers.clear()
        for stats in self.classes.values():
            stats._suffix = None

    def _remaining(self, name: str, minutes: int) -> tuple[float, float, float] | None:
        answer = self._answers.get((name, minutes))
        if answer is None:
            stats = self.classes.get(name)
            if stats is None:
                return None
            if len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
            answer = self._answers[(name, minutes)] = stats.remaining(minutes * 60.0)
        return answer

    def expected_costs(
        self, name: str, size: int, tier: str, age: float, tiers: Iterable[str]
    ) -> dict[str, float] | None:
        """Each allowed tier's expected cost over the horizon, or None: too little evidence."""
        answer = self._remaining(name, int(age // 60))
        if answer is None:
            return None
        evidence, p_read, held = answer
        if evidence < MIN_EVIDENCE:
            return None
        # after that read the object stays where it is for the class's further reads
        # within the horizon: q/(1-q) of them (q: a read is followed by another), each
        # a mean re-read gap later
        base = self._remaining(name, 0)
        assert base is not None
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

    # -- what it knows --------------------------------------------------------------------

    def table(self) -> list[dict[str, Any]]:
        """Every class with its summary, most recently updated first."""
        return [
            {"class": name, "updated": stats.updated, **stats.summary()}
            for name, stats in reversed(self.classes.items())
        ]

    def describe(self, name: str, age: float) -> dict[str, Any]:
        """A class's gap distribution for ``stratum explain``: its summary, the evidence
        beyond ``age`` and the share of each gap bin (upper edge in seconds; "never")."""
        stats = self.classes.get(name)
        if stats is None:
            return {"class": name, "evidence": 0.0, "evidence_beyond_idle": 0.0}
        total = sum(stats.counts) or 1.0
        pairs = zip(EDGES, stats.counts[:NEVER], strict=True)
        bins = {f"<{edge:.0f}s": round(count / total, 4) for edge, count in pairs}
        bins["never"] = round(stats.counts[NEVER] / total, 4)
        evidence, p_read, _ = stats.remaining(age)
        return {
            "class": name,
            **stats.summary(),
            "evidence_beyond_idle": round(evidence, 2),
            "p_read_within_horizon": round(p_read, 4),
            "min_evidence": MIN_EVIDENCE,
            "gap_shares": {k: v for k, v in bins.items() if v},
        }

    # -- the stored form (module docstring) ------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The stored form as Python values: cheap copies, taken on the loop; encoding them
        (:func:`encode_snapshot`) can then run anywhere."""
        return {
            "format": FORMAT,
            "bins": len(EDGES),
            "last_round": self.last_round,
            "previous_round": self.previous_round,
            "classes": [[n, s.updated, list(s.counts)] for n, s in self.classes.items()],
            "long_gaps": [list(gap) for gap in self.long_gaps],
        }

    def take(self) -> dict[str, Any]:
        """The snapshot, then forget it all: what a worker hands to the primary."""
        snapshot = self.snapshot()
        self.classes.clear()
        self.long_gaps = []
        self.forget_answers()
        return snapshot

    def load(self, raw: bytes | None) -> bool:
        """Take the statistics of a stored record; False (and nothing taken) when there is
        none or it is of another format."""
        data = decode_record(raw)
        if data is None:
            return False
        self.classes.clear()
        for name, updated, counts in data["classes"][-self.max_classes :]:
            self.classes[name] = ClassStats(array("d", map(float, counts)), float(updated))
        self.last_round = data.get("last_round")
        self.previous_round = data.get("previous_round")
        self.forget_answers()
        return True

    def merge(self, raw: bytes | None) -> bool:
        """Add what another learner stored (a worker's :meth:`take`): its counts to this
        one's, both decayed to the later of their times; its deferred reads as reads."""
        data = decode_record(raw)
        if data is None:
            return False
        for name, updated, counts in data["classes"]:
            mine = self.classes.get(name)
            if mine is None:
                self.observe(name, 0.0, float(updated), weight=0.0)  # an empty class
                mine = self.classes[name]
            else:
                self.classes.move_to_end(name)
            theirs = ClassStats(array("d", map(float, counts)), float(updated))
            later = max(mine.updated, theirs.updated)
            mine.decay_to(later)
            theirs.decay_to(later)
            pairs = zip(mine.counts, theirs.counts, strict=True)
            mine.counts = array("d", [a + b for a, b in pairs])
            mine._suffix = None
        for name, previous, last in data.get("long_gaps", []):
            self.reads(name, float(previous), 1, float(last))
        self.forget_answers()
        return True


def decode_record(raw: bytes | None) -> dict[str, Any] | None:
    """A stored record's values, or None: none, unreadable, or another format or bin count
    (its classes of the wrong length are dropped)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("bins") != len(EDGES):
        return None
    data["classes"] = [c for c in data.get("classes", []) if len(c[2]) == NEVER + 1]
    return data


def encode_snapshot(snapshot: dict[str, Any]) -> bytes:
    """The stored record of a :meth:`Learner.snapshot` (a few MB at most: off the loop)."""
    return json.dumps(snapshot, separators=(",", ":")).encode()


def __getattr__(name: str) -> Any:
    # The simulator's adapter lives beside the rules it runs (stratum.tiering.policy);
    # importing it from here, as before, still works.
    if name == "LearnedPolicy":
        from stratum.tiering.policy import LearnedPolicy

        return LearnedPolicy
    raise AttributeError(name)
