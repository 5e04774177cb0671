"""Learned placement: per object class, the re-access gaps seen so far decide, at the prices.

An object's **class** is its bucket, its key's directory with every run of digits replaced by
``#`` (``night-0042/part-03.tar`` -> ``night-#/``), its size band (a factor of 4) and how it
was written (single PUT or multipart; the engine cannot tell a copy from a PUT, and the
simulator's traces have only PUTs). Objects of a class are assumed to share habits:
how long after a read (or the write) the next read comes.

Each class keeps a histogram of those **gaps** over geometric bins (1 minute doubling up to
the horizon ``H``, 64 days) and, for each bin, how many gaps **reached** its start (idle that
long, read since or not), every count decayed with a half-life (:data:`HALF_LIFE`) so the
statistics follow a changing workload. A gap that reaches the horizon unread, or ends with
its object (deleted or replaced), is "not read again". Counting the gaps that reached a bin,
not only those that ended, makes the objects not yet read evidence as they age (censored
observations): a class whose objects stay unread for weeks says so after weeks, not only
after the horizon, and a short or young trace is not read as "every object is read soon".
The counts are single-precision floats in one array (37 numbers). A class is about half a
kilobyte between passes (its counts, name and entry: a test holds 10,000 classes of
48-character names under 6 MB, measured with tracemalloc), plus up to about 2.5 KB while a
pass asks about it (its answers, and the sums of its related classes below: 30 MB at the
peak of a pass over 10,000 classes none of which had evidence enough of its own, dropped
after the pass); at most :data:`MAX_CLASSES` are kept, the least recently updated forgotten
first, so memory is bounded whatever the number of objects.

**The decision** (ski rental with the class's gap distribution instead of a fixed
threshold): for an object idle for ``a`` seconds, the distribution of the time ``R`` to its
next read is the class's Kaplan-Meier estimate from ``a`` on: in each bin, the share of the
gaps that reached it which a read ended there (gaps uniform within a bin; in the bin of
``a``, the gaps that reached ``a``); past the oldest idle the class has seen, no read is
expected. With only whole gaps (every object read again or ended) this is the histogram of
the gaps longer than ``a``. For each tier ``X`` the expected cost over the coming horizon is

    move(current -> X) + storage_X * size * E[min(R, H)] + P(R < H) * (read_X + slow_X)

(``read_X``: egress and request price of a GET from X; ``slow_X``: the ``slow_read`` weight
unless X is the first tier), where the read and the storage also count the further reads the
class shows after a read within the horizon (``q / (1 - q)`` of them, ``q`` the share of
reads followed by another, each the mean of min(gap, horizon) later), and the object goes to
the cheapest. The **evidence** is the number of the class's gaps that reached ``a``. With
less than :data:`MIN_EVIDENCE`, the nearest **related class** with enough decides, by the
same rule and prices (so the ``slow_read`` knob moves it too): the bucket's objects of the
same size band (``bucket/* 4096B+``), then all the bucket's (``bucket/*``)
(:func:`related_classes`; :meth:`Learner.evidence_class` names the one that decided). A
related class's statistics are the sum of its members', made when a pass first asks and
dropped with its answers (:meth:`Learner.forget_answers`): no memory between passes. Only
when none has enough does the caller's fallback (the fixed rules) decide, so a new bucket
starts from the defaults and improves as gaps are observed.

**Observations** need no memory per object: the engine and the simulator report the same
three events through the same methods. A round (a tiering pass, :meth:`Learner.begin_round`)
sees every object (:meth:`Learner.idle`): its gap since its last read (or write) has reached
the bins whose starts it crossed since the round before (counted once each), and the
horizon, "not read again", when it crossed that. A read (:meth:`Learner.reads`): the
object's previous read (or write) time is on its record, the gap is the time between them;
the bins it reached that no round counted (the learner keeps the round times, not anything
per object) are counted then, and the bin it ended in. An object's end (:meth:`Learner.ended`):
the bins no round counted and "not read again". An event older than a class's counts (a
worker's, handed over later) counts decayed by its age.

**Stored form** (the engine keeps it in LMDB, :mod:`stratum.tiering.learning` says where;
:meth:`Learner.snapshot` with :func:`encode_snapshot`, :meth:`Learner.load`), format 2: JSON
``{"format": 2, "bins": len(EDGES), "last_round": t | null, "previous_round": t | null,
"classes": [[name, updated, [count, ...]], ...], "deferred": [...]}``, classes least
recently updated first, each with ``2 * bins + 1`` decayed counts (the gaps ended by a read
in each bin, "not read again", the gaps that reached each bin). A record of another format
(format 1 had no reached counts) or bin count is ignored (the learner starts empty: the
fixed rules decide until evidence returns). ``deferred`` is empty but in a worker process's
record (``defer_long``; its ``classes`` then empty): ``[[name, start, count, end], ...]``,
the reads (``count`` of them ending at ``end``, the gap from ``start``) and ends (``count``
0) it served, as they came, since only the learner that runs the rounds knows which bins a
round counted; at most :data:`MAX_CLASSES` between two hand-overs (the rest are dropped
whole, a sample). :meth:`Learner.merge` adds a worker's record to the primary's.
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
FORMAT = 2
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


@functools.lru_cache(maxsize=256)  # a pass asks about few classes, many times each
def related_classes(name: str) -> tuple[str, ...]:
    """The coarser classes an object of class ``name`` also adds its gaps to, coarsest
    first: its bucket's objects of its size band (``bucket/* 4096B+``), then all its
    bucket's (``bucket/*``); () for a name :func:`class_of` did not make. No class of
    :func:`class_of` has these names: theirs end in how the object was written."""
    parts = name.rsplit(" ", 2)
    if len(parts) != 3 or "/" not in parts[0]:
        return ()
    bucket = parts[0][: parts[0].index("/")]
    return f"{bucket}/*", f"{bucket}/* {parts[1]}"


#: lower edges of the gap bins, then the horizon's
LOWS: tuple[float, ...] = (0.0, *EDGES)
REACHED = NEVER + 1  # where a class's counts of gaps that reached each bin start
SLOTS = REACHED + NEVER  # numbers a class keeps


@dataclass(slots=True)
class ClassStats:
    """The decayed gap histogram of one class (see the module docstring), in one array of
    single-precision floats (half the memory of doubles, and one array's overhead, not two):
    ``[0, NEVER)`` the gaps that ended with a read in each bin, ``NEVER`` the gaps that reached
    the horizon unread (or ended with the object), ``NEVER + 1 + k`` the gaps that reached bin
    ``k``'s start, read since or not (:data:`REACHED`)."""

    counts: array[float]
    updated: float
    # Each bin's hazard (the share of the gaps that reached it that end there with a read),
    # made on the first question after a change: a pass asks about many objects of a few
    # classes
    _hazards: array[float] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, now: float) -> ClassStats:
        return cls(array("f", bytes(4 * SLOTS)), now)

    def decay_to(self, now: float) -> float:
        """Decay the counts to ``now``; the weight of an event at ``now``: 1, or less when
        the counts are already later (a worker's reads, handed over afterwards)."""
        if now > self.updated:
            factor = 0.5 ** ((now - self.updated) / HALF_LIFE)
            self.counts = array("f", [c * factor for c in self.counts])
            self.updated = now
            self._hazards = None
            return 1.0
        return float(0.5 ** ((self.updated - now) / HALF_LIFE))

    def reach(self, after: float, upto: float, now: float, weight: float = 1.0) -> None:
        """A gap, idle for ``upto`` seconds, reached the bins that start past ``after`` (the
        idle time a round already counted) and up to ``upto``; reaching the horizon is "not
        read again"."""
        weight *= self.decay_to(now)
        first, last = bisect.bisect_right(LOWS, after), bisect.bisect_right(LOWS, upto)
        for index in range(first, min(last, NEVER)):
            self.counts[REACHED + index] += weight
        if after < HORIZON <= upto:
            self.counts[NEVER] += weight
        self._hazards = None

    def read(self, gap: float, after: float, now: float, weight: float = 1.0) -> None:
        """A gap ended by a read ``gap`` seconds after its start; a round had counted it
        idle for ``after`` (-inf: none did)."""
        self.reach(after, gap, now, weight)
        if gap < HORIZON:
            self.counts[bisect.bisect_right(EDGES, gap)] += weight * self.decay_to(now)

    def observe(self, gap: float | None, now: float, weight: float = 1.0) -> None:
        """A whole gap no round saw: a read ``gap`` after the last; None: not read again."""
        if gap is None:
            self.reach(-math.inf, math.inf, now, weight)
        else:
            self.read(gap, -math.inf, now, weight)

    def _hazard(self) -> array[float]:
        if self._hazards is None:
            counts = self.counts
            self._hazards = array(
                "d",
                [
                    min(1.0, counts[k] / counts[REACHED + k]) if counts[REACHED + k] > 0 else 0.0
                    for k in range(NEVER)
                ],
            )
        return self._hazards

    def remaining(self, age: float) -> tuple[float, float, float]:
        """(evidence, P(R < H), E[min(R, H)]) for an object idle for ``age`` seconds, ``R``
        the time to its next read: Kaplan-Meier over the bins from ``age`` (gaps within a bin
        uniform), the evidence the gaps still unread at ``age``."""
        index = bisect.bisect_right(EDGES, age)  # the first bin that ends after age
        counts = self.counts
        if index >= NEVER:
            never = float(counts[NEVER])
            return (never, 0.0, 0.0) if never > 0 else (0.0, 0.0, HORIZON)
        # the bin age falls in: the gaps that reached it less its reads before age
        low, high = LOWS[index], EDGES[index]
        start = max(low, age)
        before = counts[index] * (start - low) / (high - low)
        at_risk = counts[REACHED + index] - before
        if at_risk <= 1e-6:
            return 0.0, 0.0, HORIZON
        hazard = min(1.0, (counts[index] - before) / at_risk)
        survive, p_read = 1.0 - hazard, hazard
        expected = hazard * ((start + high) / 2 - age)
        hazards = self._hazard()
        for later in range(index + 1, NEVER):
            hazard = hazards[later]
            if hazard:
                share = survive * hazard
                p_read += share
                expected += share * ((LOWS[later] + EDGES[later]) / 2 - age)
                survive -= share
        # past the horizon from the gap's start (or past the oldest gap seen): not read
        expected += survive * max(0.0, HORIZON - age)
        return at_risk, p_read, expected

    def summary(self) -> dict[str, Any]:
        total = sum(self.counts[: NEVER + 1])
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
            "unread_now": round(max(0.0, self.counts[REACHED] - total), 2),
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
        # a learner that runs no rounds (a worker process's) keeps its reads and ends for the
        # one that does (merge()), which alone can tell which bins its rounds counted: at
        # most max_classes of them between two hand-overs, the rest dropped whole
        self.defer_long = defer_long
        self.deferred: list[tuple[str, float, int, float]] = []
        # the start of the latest round and of the one before (None: none yet): how long an
        # object was idle when a round last counted it
        self.last_round: float | None = None
        self.previous_round: float | None = None
        # remaining() by (class, whole minutes of age) until forget_answers(): a pass asks
        # about many objects of few classes
        self._answers: dict[tuple[str, int], tuple[float, float, float]] = {}
        # the related classes' statistics, each the sum of its members', made when first
        # asked and kept until forget_answers() like the answers: {relative: [member, ...]}
        # of every class, then the sums asked for
        self._members: dict[str, list[str]] | None = None
        self._relatives: dict[str, ClassStats] = {}
        tiers = prices.tiers
        self._first = tiers[0]
        self._out = {
            t: (prices.egress.get(t, 0.0), prices.get_requests.get(t, 0.0) / 1000) for t in tiers
        }

    def _stats(self, name: str, now: float) -> ClassStats:
        stats = self.classes.get(name)
        if stats is None:
            stats = self.classes[name] = ClassStats.empty(now)
            while len(self.classes) > self.max_classes:
                self.classes.popitem(last=False)
        else:
            self.classes.move_to_end(name)
        return stats

    def observe(self, name: str, gap: float | None, now: float, weight: float = 1.0) -> None:
        """A whole gap of class ``name`` no round saw (:meth:`ClassStats.observe`)."""
        self._stats(name, now).observe(gap, now, weight)

    # -- the events, as the engine and the simulator report them ------------------------

    def _counted(self, start: float) -> float:
        """How long a gap that started at ``start`` was idle at the latest round, which
        counted the bins it had reached by then (-inf: no round saw it)."""
        if self.last_round is None or self.last_round < start:
            return -math.inf
        return self.last_round - start

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
        if self.defer_long:
            if len(self.deferred) < self.max_classes:
                self.deferred.append((name, previous, count, last))
            return
        stats = self._stats(name, last)
        stats.read(last - previous, self._counted(previous), last)  # past H: "not read again"
        if count > 1:
            stats.observe(0.0, last, weight=count - 1)

    def ended(self, name: str, last: float, now: float) -> None:
        """The object (last read or written at ``last``) was deleted or replaced at ``now``:
        its gap reaches every bin a round has not counted, and the horizon."""
        if self.defer_long:
            if len(self.deferred) < self.max_classes:
                self.deferred.append((name, last, 0, now))
            return
        after = self._counted(last)
        if after < HORIZON:
            self._stats(name, now).reach(after, math.inf, now)

    def idle(self, name: str, last: float, now: float) -> None:
        """The round at ``now`` finds the object last read at ``last``, still unread: its gap
        reached the bins it crossed since the previous round (censored evidence: so a class
        learns from objects not yet read, and from the horizon, "not read again")."""
        after = -math.inf
        if self.previous_round is not None and self.previous_round >= last:
            after = self.previous_round - last
        if bisect.bisect_right(LOWS, after) < bisect.bisect_right(LOWS, now - last):
            self._stats(name, now).reach(after, now - last, now)

    # -- the decision -------------------------------------------------------------------

    def forget_answers(self) -> None:
        """Start a new pass (the statistics have changed since the answers were computed), or
        end one: the answers and each class's sums go (0.6 KB a class), the counts stay."""
        self._answers.clear()
        self._members = None
        self._relatives.clear()
        for stats in self.classes.values():
            stats._hazards = None

    def _remaining(self, name: str, minutes: int) -> tuple[float, float, float] | None:
        answer = self._answers.get((name, minutes))
        if answer is None:
            stats = self.classes.get(name) or self._relative(name)
            if stats is None:
                return None
            if len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
            answer = self._answers[(name, minutes)] = stats.remaining(minutes * 60.0)
        return answer

    def _relative(self, name: str) -> ClassStats | None:
        """The statistics of a related class (:func:`related_classes`): its members' counts
        summed, each decayed to the latest of their times; None: no class has it."""
        stats = self._relatives.get(name)
        if stats is None:
            if self._members is None:
                self._members = {}
                for member in self.classes:
                    for relative in related_classes(member):
                        self._members.setdefault(relative, []).append(member)
            names = self._members.get(name, [])
            members = [self.classes[n] for n in names if n in self.classes]
            if not members:
                return None
            latest = max(m.updated for m in members)
            sums = [0.0] * SLOTS
            for one in members:
                factor = 0.5 ** ((latest - one.updated) / HALF_LIFE)
                for index, count in enumerate(one.counts):
                    sums[index] += count * factor
            stats = self._relatives[name] = ClassStats(array("f", sums), latest)
        return stats

    def evidence_class(self, name: str, age: float) -> str | None:
        """The class whose gaps decide for an object of class ``name`` idle for ``age``: its
        own, else its nearest relative (:func:`related_classes`) with :data:`MIN_EVIDENCE`
        gaps unread at that age; None: none has (the fixed rules decide)."""
        minutes = int(age // 60)
        for candidate in (name, *reversed(related_classes(name))):
            answer = self._remaining(candidate, minutes)
            if answer is not None and answer[0] >= MIN_EVIDENCE:
                return candidate
        return None

    def expected_costs(
        self, name: str, size: int, tier: str, age: float, tiers: Iterable[str]
    ) -> dict[str, float] | None:
        """Each allowed tier's expected cost over the horizon, or None: too little evidence
        in the class and its relatives."""
        deciding = self.evidence_class(name, age)
        if deciding is None:
            return None
        answer = self._remaining(deciding, int(age // 60))
        assert answer is not None
        _evidence, p_read, held = answer
        # after that read the object stays where it is for the class's further reads
        # within the horizon: q/(1-q) of them (q: a read is followed by another), each
        # a mean re-read gap later
        base = self._remaining(deciding, 0)
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
        """A class's gap distribution for ``stratum explain``: its summary, the class whose
        gaps decide at ``age`` (its own, a relative's or None), the evidence beyond ``age``
        and the share of each gap bin (upper edge in seconds; "never")."""
        stats = self.classes.get(name)
        if stats is None:
            return {
                "class": name,
                "decided_by": self.evidence_class(name, age),
                "evidence": 0.0,
                "evidence_beyond_idle": 0.0,
            }
        total = sum(stats.counts[: NEVER + 1]) or 1.0
        pairs = zip(EDGES, stats.counts[:NEVER], strict=True)
        bins = {f"<{edge:.0f}s": round(count / total, 4) for edge, count in pairs}
        bins["never"] = round(stats.counts[NEVER] / total, 4)
        evidence, p_read, _ = stats.remaining(age)
        return {
            "class": name,
            "decided_by": self.evidence_class(name, age),
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
            "deferred": [list(event) for event in self.deferred],
        }

    def take(self) -> dict[str, Any]:
        """The snapshot, then forget it all: what a worker hands to the primary."""
        snapshot = self.snapshot()
        self.classes.clear()
        self.deferred = []
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
            self.classes[name] = ClassStats(array("f", map(float, counts)), float(updated))
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
            mine = self._stats(name, float(updated))
            theirs = ClassStats(array("f", map(float, counts)), float(updated))
            later = max(mine.updated, theirs.updated)
            mine.decay_to(later)
            theirs.decay_to(later)
            pairs = zip(mine.counts, theirs.counts, strict=True)
            mine.counts = array("f", [a + b for a, b in pairs])
            mine._hazards = None
        for name, start, count, end in data.get("deferred", []):
            if count > 0:
                self.reads(name, float(start), int(count), float(end))
            else:
                self.ended(name, float(start), float(end))
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
    data["classes"] = [c for c in data.get("classes", []) if len(c[2]) == SLOTS]
    return data


def encode_snapshot(snapshot: dict[str, Any]) -> bytes:
    """The stored record of a :meth:`Learner.snapshot` (a few MB at most: off the loop)."""
    return json.dumps(snapshot, separators=(",", ":")).encode()
