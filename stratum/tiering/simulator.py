"""The tier simulator: replay a request trace through a placement policy and price the result.

``stratum tier simulate --trace FILE`` answers "what would tiering do with my workload, and
what would it cost?" before any byte moves. The simulator keeps no data, only per-object
signals, and is pure: it reads a trace (:func:`~stratum.tiering.traces.read_trace`) and returns a
:class:`~stratum.tiering.simulation_report.Report`.

The trace format is :mod:`stratum.tiering.traces`'s.

Simulation rules:

- A PUT creates the object in the first tier of the price list ("hot"), replacing any previous
  object of that key, with ``last_access`` = creation time (as the object service does).
- A GET is served from the tier the object is in at that moment; it counts as an access:
  ``last_access``, ``access_count`` and ``access_rate`` change. HEAD never touches data and
  is not an access. DELETE removes the object. Requests for deleted keys are counted as
  missing and otherwise ignored.
- Once every ``interval`` (an hour) of simulated time the policy is asked, for every object,
  where it should be (:class:`Policy`); an answer other than its tier moves it at once.
- ``access_rate`` is in reads per day and decays exponentially with a half-life of 7 days:
  each read adds ``ln 2 / 7``, so a steady r reads per day converges to r. The simulator keeps
  it current: when the policy is asked it holds the rate at that instant.

Costs (:class:`~stratum.tiering.pricing.Prices`, GB = 10^9 bytes, a month = 30 days):
storage is the exact integral of the bytes in each tier over time times the tier's price per
GB-month; reading from a tier (client GETs, and moves out of it) costs its egress price per
GB and its GET request price; moving into a tier costs its PUT request price (one request
per object), and every move costs the ``move`` price per GB. Local tiers cost their disks'
amortisation and electricity; see ``[prices]`` in the configuration reference for the figures.
GETs not served from the first tier are counted; the report weighs them with the
``slow_read`` price beside the cost (:attr:`Report.slow_read_cost`), not in it.

With a :class:`~stratum.tiering.placements.PlacementLog` every PUT, move and DELETE is
written to it; the report's ``move_log`` keeps the first ``max_logged_moves`` moves (all by
default).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from stratum.tiering.placements import PlacementLog
from stratum.tiering.prefetch import Prefetcher, following_keys
from stratum.tiering.pricing import DEFAULT_PRICES, GB, MONTH, Prices
from stratum.tiering.simulation_report import DaySample, MonthCost, Move, Report
from stratum.tiering.traces import DAY, HOUR, OPS, TraceError, TraceRow

__all__ = [
    "ACCESS_HALF_LIFE",
    "AwsIntelligentTieringPolicy",
    "Policy",
    "SimObject",
    "StaticPolicy",
    "decayed_rate",
    "simulate",
    "simulation_end",
]

ACCESS_HALF_LIFE = 7 * DAY
RATE_PER_READ = math.log(2) / (ACCESS_HALF_LIFE / DAY)  # reads/day a single read adds
_DECAY = math.log(2) / ACCESS_HALF_LIFE  # per second


# --- objects and policies -------------------------------------------------------------------


def decayed_rate(rate: float, elapsed: float) -> float:
    """``rate`` (reads per day) after ``elapsed`` seconds of decay with a 7-day half-life."""
    return rate * math.exp(-_DECAY * elapsed)


class _Now:
    """The simulator's current time, shared by its objects (their rates decay lazily)."""

    __slots__ = ("time",)

    def __init__(self, time: float) -> None:
        self.time = time


class SimObject:
    """One simulated object: what a policy sees (the signals of a VolumeRecord).

    ``last_access`` is the creation time until the first GET; ``access_count`` counts GETs;
    ``access_rate`` is in reads per day, decaying with a 7-day half-life, as of the
    simulator's current time (when a policy is asked: ``now``).
    """

    __slots__ = (
        "_clock",
        "_rate",
        "_rated_at",
        "access_count",
        "bucket",
        "created",
        "key",
        "last_access",
        "promoted_at",
        "size",
        "tier",
    )

    def __init__(
        self,
        bucket: str,
        key: str,
        size: int,
        created: float,
        tier: str,
        last_access: float | None = None,
        access_count: int = 0,
        access_rate: float = 0.0,
        clock: _Now | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.size = size
        self.created = created
        self.tier = tier
        self.last_access = created if last_access is None else last_access
        self.access_count = access_count
        self._clock = clock or _Now(created)
        self._rate = access_rate
        self._rated_at = self._clock.time
        self.promoted_at: float | None = None  # brought to the first tier ahead of a read

    @property
    def access_rate(self) -> float:
        return decayed_rate(self._rate, self._clock.time - self._rated_at)

    def read(self, now: float) -> None:
        """Count a GET at ``now``."""
        self._rate = decayed_rate(self._rate, now - self._rated_at) + RATE_PER_READ
        self._rated_at = now
        self.last_access = now
        self.access_count += 1

    def __repr__(self) -> str:
        return (
            f"SimObject({self.bucket}/{self.key}, size={self.size}, tier={self.tier},"
            f" created={self.created}, last_access={self.last_access},"
            f" access_count={self.access_count}, access_rate={self.access_rate:.4g})"
        )


class Policy(Protocol):
    """Where an object should be now: a tier name of the price list. Answering the object's
    current tier means "leave it". Called once per simulated interval for every object.

    A policy that needs the whole picture (fill levels for watermarks, the least recently used
    objects) may also define ``begin_round(now, tier_bytes, objects)``: it is called before
    each round of ``place`` calls with the bytes in each tier and every object (read only).
    A policy that learns from events may define ``on_read(obj, now)`` (called before a GET
    is counted) and ``on_end(obj, now)`` (the object is deleted or replaced by a PUT).
    """

    def place(self, obj: SimObject, now: float) -> str: ...


@dataclass(frozen=True)
class StaticPolicy:
    """Everything stays in one tier: the baseline ("all on SSD", "all on HDD")."""

    tier: str = "hot"

    @property
    def name(self) -> str:
        return f"all-{self.tier}"

    def place(self, obj: SimObject, now: float) -> str:
        return self.tier


@dataclass(frozen=True)
class AwsIntelligentTieringPolicy:
    """AWS S3 Intelligent-Tiering's automatic access tiers, mapped onto Stratum's tiers.

    Frequent Access (``frequent``) -> Infrequent Access (``infrequent``) after 30 days without
    access -> Archive Instant Access (``archive``) after 90 days; any access moves the object
    back to Frequent; objects smaller than 128 KiB are never monitored and stay Frequent.
    "Without access" counts from the last GET, or from the upload.
    """

    frequent: str = "hot"
    infrequent: str = "warm"
    archive: str = "cold"
    infrequent_after: float = 30 * DAY
    archive_after: float = 90 * DAY
    min_size: int = 128 * 1024
    name: str = "aws-intelligent-tiering"

    def place(self, obj: SimObject, now: float) -> str:
        if obj.size < self.min_size:
            return self.frequent
        idle = now - max(obj.created, obj.last_access)
        if idle >= self.archive_after:
            return self.archive
        if idle >= self.infrequent_after:
            return self.infrequent
        return self.frequent


# --- the simulation -------------------------------------------------------------------------


def simulate(
    trace: Iterable[TraceRow],
    policy: Policy,
    prices: Prices = DEFAULT_PRICES,
    *,
    start: float = 0.0,
    end: float | None = None,
    interval: float = HOUR,
    max_logged_moves: int | None = None,
    placements: PlacementLog | None = None,
) -> Report:
    """Replay ``trace`` (rows in time order) through ``policy``; see the module docstring.

    The simulation runs from ``start`` to ``end``, by default the end of the day of the last
    request (whole days, so the last daily sample is taken).
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    if placements is not None:
        placements.policy = str(getattr(policy, "name", type(policy).__name__))
    sim = _Simulation(policy, prices, start, interval, max_logged_moves, placements)
    last = start
    for row in trace:
        if row.time < last:
            raise TraceError(f"trace goes back in time at {row.time} (after {last})")
        last = row.time
        sim.advance(row.time)
        sim.apply(row)
    if end is None:
        end = _whole_days(start, last)
    if end < last:
        raise ValueError(f"end {end} is before the last request ({last})")
    sim.advance(end)
    return sim.report(policy, end)


def _whole_days(start: float, last: float) -> float:
    return start + math.ceil((last - start) / DAY) * DAY


def simulation_end(trace: Iterable[TraceRow], start: float = 0.0) -> float:
    """Where :func:`simulate` ends by default: the end of the day of the last request."""
    last = start
    for row in trace:
        last = row.time
    return _whole_days(start, last)


class _Simulation:
    def __init__(
        self,
        policy: Policy,
        prices: Prices,
        start: float,
        interval: float,
        max_logged: int | None,
        placements: PlacementLog | None,
    ) -> None:
        self.placements = placements
        self.policy = policy
        self._on_read = getattr(policy, "on_read", None)
        self._on_end = getattr(policy, "on_end", None)
        self.prices = prices
        self.tiers = prices.tiers
        self.first = self.tiers[0]
        self.start = start
        self.interval = interval
        self.max_logged = max_logged
        self.objects: dict[tuple[str, str], SimObject] = {}
        self.deleted: set[tuple[str, str]] = set()
        self.tier_bytes = dict.fromkeys(self.tiers, 0)
        self.tier_objects = dict.fromkeys(self.tiers, 0)
        self.now = start
        self.clock = _Now(start)
        self.ticks = self.days = self.month_index = 0
        self.next_tick = start + interval
        self.next_day = start + DAY
        self.next_month = start + MONTH
        self.requests = dict.fromkeys(OPS, 0)
        self.missing = 0
        self.gets_by_tier = dict.fromkeys(self.tiers, 0)
        self.get_bytes_by_tier = dict.fromkeys(self.tiers, 0)
        self.moves = self.bytes_moved = 0
        self.moves_by_path: dict[str, dict[str, int]] = {}
        self.move_log: list[Move] = []
        # group-aware promotion (a policy with a ``prefetcher``): promotions land once their
        # bytes have moved at the policy's ``move_rate``, one after another
        prefetcher: Prefetcher | None = getattr(policy, "prefetcher", None)
        self.prefetcher = prefetcher if prefetcher is not None and prefetcher.enabled else None
        self._prefetch_rate = float(getattr(policy, "move_rate", 0) or 0)
        self._keys: dict[str, list[str]] = {}  # each bucket's keys, sorted (with a prefetcher)
        self._landing: list[tuple[float, str, str]] = []  # (lands at, bucket, key), a heap
        self._in_flight: set[tuple[str, str]] = set()
        self._mover_free = start
        self.samples: list[DaySample] = []
        self.months: list[MonthCost] = []
        self._open_month(start)

    # -- time ----------------------------------------------------------------------------

    def _open_month(self, when: float) -> None:
        self.month_start = when
        self.byte_seconds = dict.fromkeys(self.tiers, 0.0)
        self.egress_cost = 0.0
        self.egress_bytes = 0
        self.move_cost = 0.0
        self.get_count = dict.fromkeys(self.tiers, 0)
        self.put_count = dict.fromkeys(self.tiers, 0)

    def _close_month(self, when: float) -> None:
        prices = self.prices
        seconds = when - self.month_start
        storage = {
            tier: self.byte_seconds[tier] / GB / MONTH * prices.storage[tier] for tier in self.tiers
        }
        request_cost = sum(
            self.get_count[t] / 1000 * prices.get_requests.get(t, 0.0)
            + self.put_count[t] / 1000 * prices.put_requests.get(t, 0.0)
            for t in self.tiers
        )
        total = sum(storage.values()) + self.egress_cost + request_cost + self.move_cost
        self.month_index += 1
        self.months.append(
            MonthCost(
                month=self.month_index,
                days=round(seconds / DAY, 6),
                average_gb={
                    t: (self.byte_seconds[t] / seconds / GB if seconds else 0.0) for t in self.tiers
                },
                storage=storage,
                egress_gb=self.egress_bytes / GB,
                egress=self.egress_cost,
                get_requests=sum(self.get_count[t] for t in prices.get_requests),
                put_requests=sum(self.put_count[t] for t in prices.put_requests),
                requests=request_cost,
                moves=self.move_cost,
                total=total,
            )
        )
        self._open_month(when)

    def _integrate(self, when: float) -> None:
        elapsed = when - self.now
        if elapsed > 0:
            for tier, size in self.tier_bytes.items():
                self.byte_seconds[tier] += size * elapsed
            self.now = self.clock.time = when

    def advance(self, when: float) -> None:
        """Run the ticks, samples and month ends up to ``when`` (those at ``when`` too)."""
        while True:
            lands = self._landing[0][0] if self._landing else math.inf
            step = min(self.next_tick, self.next_day, self.next_month, lands)
            if step > when:
                break
            self._integrate(step)
            if step == lands:
                self._land(step)
            # a round at a month's end belongs to that month: at the simulation's end no
            # month follows to take its moves
            if step == self.next_tick:
                self._tick(step)
                self.ticks += 1
                self.next_tick = self.start + (self.ticks + 1) * self.interval
            if step == self.next_month:
                self._close_month(step)
                self.next_month = self.start + (self.month_index + 1) * MONTH
            if step == self.next_day:
                self.days += 1
                self.samples.append(
                    DaySample(self.days, dict(self.tier_bytes), dict(self.tier_objects))
                )
                self.next_day = self.start + (self.days + 1) * DAY
        self._integrate(when)

    def _tick(self, now: float) -> None:
        begin = getattr(self.policy, "begin_round", None)
        if begin is not None:
            begin(now, MappingProxyType(self.tier_bytes), self.objects.values())
        place = self.policy.place
        for obj in self.objects.values():
            target = place(obj, now)
            if target != obj.tier:
                self._move(obj, target, now)

    # -- events --------------------------------------------------------------------------

    def _move(self, obj: SimObject, target: str, now: float) -> None:
        if target not in self.tier_bytes:
            raise ValueError(f"policy placed {obj.bucket}/{obj.key} in unknown tier {target!r}")
        source = obj.tier
        self._read_cost(source, obj.size)
        self.put_count[target] += 1
        self.tier_bytes[source] -= obj.size
        self.tier_objects[source] -= 1
        self.tier_bytes[target] += obj.size
        self.tier_objects[target] += 1
        obj.tier = target
        self.moves += 1
        self.bytes_moved += obj.size
        self.move_cost += obj.size / GB * self.prices.move
        path = self.moves_by_path.setdefault(f"{source}->{target}", {"count": 0, "bytes": 0})
        path["count"] += 1
        path["bytes"] += obj.size
        if self.max_logged is None or len(self.move_log) < self.max_logged:
            self.move_log.append(Move(now, obj.bucket, obj.key, obj.size, source, target))
        if self.placements is not None:
            self.placements.event(now, "MOVE", obj.bucket, obj.key, obj.size, source, target)

    # -- group-aware promotion -----------------------------------------------------------

    def _prefetch(self, obj: SimObject, now: float) -> None:
        """A GET of ``obj`` at ``now``: promote what follows it if the prefetcher says so."""
        assert self.prefetcher is not None
        if not self.prefetcher.read(obj.bucket, obj.key, obj.tier != self.first, now):
            return
        for name, size in self.prefetcher.take(
            obj.bucket, obj.key, self._following(obj.bucket, obj.key), now
        ):
            start = max(now, self._mover_free)
            self._mover_free = start + (size / self._prefetch_rate if self._prefetch_rate else 0)
            heapq.heappush(self._landing, (self._mover_free, obj.bucket, name))
            self._in_flight.add((obj.bucket, name))

    def _following(self, bucket: str, key: str) -> Iterator[tuple[str, int]]:
        """The keys after ``key`` in its scope, not in the first tier nor on their way."""
        assert self.prefetcher is not None
        keys = self._keys.get(bucket, [])
        scope = following_keys(key)[1]
        start = bisect.bisect_right(keys, key)
        for name in keys[start : start + 4 * self.prefetcher.count]:
            if not name.startswith(scope):
                return
            obj = self.objects.get((bucket, name))
            if obj is not None and obj.tier != self.first and (bucket, name) not in self._in_flight:
                yield name, obj.size

    def _land(self, now: float) -> None:
        while self._landing and self._landing[0][0] <= now:
            _, bucket, key = heapq.heappop(self._landing)
            self._in_flight.discard((bucket, key))
            obj = self.objects.get((bucket, key))
            if obj is not None and obj.tier != self.first:  # not deleted or read up meanwhile
                self._move(obj, self.first, now)
                obj.promoted_at = now

    def _read_cost(self, tier: str, size: int) -> None:
        self.get_count[tier] += 1
        egress = self.prices.egress.get(tier, 0.0)
        if egress:
            self.egress_bytes += size
            self.egress_cost += size / GB * egress

    def _create(self, row: TraceRow, created: float) -> SimObject:
        obj = SimObject(row.bucket, row.key, row.size, created, self.first, clock=self.clock)
        self.objects[(row.bucket, row.key)] = obj
        self.tier_bytes[self.first] += obj.size
        self.tier_objects[self.first] += 1
        if self.prefetcher is not None:
            bisect.insort(self._keys.setdefault(row.bucket, []), row.key)
        return obj

    def _remove(self, obj: SimObject) -> None:
        del self.objects[(obj.bucket, obj.key)]
        self.tier_bytes[obj.tier] -= obj.size
        self.tier_objects[obj.tier] -= 1
        if self.prefetcher is not None:
            keys = self._keys[obj.bucket]
            del keys[bisect.bisect_left(keys, obj.key)]

    def apply(self, row: TraceRow) -> None:
        self.requests[row.op] += 1
        name = (row.bucket, row.key)
        obj = self.objects.get(name)
        if row.op == "PUT":
            if obj is not None:
                if self._on_end is not None:
                    self._on_end(obj, row.time)
                self._remove(obj)
            self.deleted.discard(name)
            self._create(row, row.time)
            self.put_count[self.first] += 1
            if self.placements is not None:
                self.placements.event(row.time, "PUT", *name, row.size, "", self.first)
            return
        if obj is None and name not in self.deleted and row.op != "DELETE":
            # An object from before the trace; it has been in the first tier since the start.
            # Its bytes count from now on: the trace did not say how long it was there.
            obj = self._create(row, self.start)
        if obj is None:
            self.missing += 1
            return
        if row.op == "GET":
            if self.prefetcher is not None:
                self._prefetch(obj, row.time)
            self.gets_by_tier[obj.tier] += 1
            self.get_bytes_by_tier[obj.tier] += obj.size
            self._read_cost(obj.tier, obj.size)
            if self._on_read is not None:
                self._on_read(obj, row.time)
            obj.read(row.time)
        elif row.op == "DELETE":
            if self._on_end is not None:
                self._on_end(obj, row.time)
            self._remove(obj)
            self.deleted.add(name)
            if self.placements is not None:
                self.placements.event(row.time, "DELETE", *name, obj.size, obj.tier, "")

    def report(self, policy: Policy, end: float) -> Report:
        if end > self.month_start or not self.months:
            self._close_month(end)
        return Report(
            policy=str(getattr(policy, "name", type(policy).__name__)),
            prices=self.prices,
            start=self.start,
            end=end,
            tiers=self.tiers,
            requests=self.requests,
            missing=self.missing,
            gets_by_tier=self.gets_by_tier,
            get_bytes_by_tier=self.get_bytes_by_tier,
            moves=self.moves,
            bytes_moved=self.bytes_moved,
            moves_by_path=self.moves_by_path,
            samples=self.samples,
            months=self.months,
            move_log=self.move_log,
        )
