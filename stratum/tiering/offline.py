"""The offline-optimal bound: the cheapest placement of a trace for one who knows its future.

The simulator (:mod:`stratum.tiering.simulator`) reports each policy beside this bound. It
reads the whole trace first, so it is no policy a server could run; it says how much room a
placement policy has left at the given prices.

Each object's life (from its PUT, or its first request when it existed before the trace,
to its DELETE, its replacement or the end) is cut at its GETs into idle gaps. In each gap
the object lies in one tier; the GET that ends a gap is served from that tier. For every
object a dynamic programme over its gaps and the tiers chooses the sequence of tiers with
the lowest sum of

- storage: the tier's price per GB-month times the object's GB times the gap's length;
- the read that ends the gap: the tier's egress per GB and its GET request price, and the
  ``slow_read`` weight (per 1,000) when the tier is not the first;
- each change of tier between gaps: reading out of the old tier (egress and GET request
  price), the PUT request price of the new one and the ``move`` price per GB.

The object starts in the first tier (its PUT's). The bound ignores the rules that keep
small objects out of cold, pins and the simulator's hourly rounds; :class:`OfflineOptimalPolicy`
replays the chosen tiers through the simulator, which prices them like every other policy
(moves happen at the first round after the read that opens a gap), so the bound's cost and
hot-hit ratio are measured the same way as the policies'.

Memory: every GET's time until the object's life ends, then one entry per gap not in the
first tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stratum.tiering.pricing import GB, MONTH, Prices
from stratum.tiering.simulator import SimObject
from stratum.tiering.traces import TraceRow

__all__ = ["OfflineOptimalPolicy", "cheapest_tiers"]


def cheapest_tiers(
    prices: Prices, size: int, opened: Sequence[float], end: float
) -> tuple[list[str], float]:
    """The cheapest tier for each gap of one object's life and that life's cost.

    ``opened`` are the times the gaps open: the object's arrival, then each GET's time; gap
    ``i`` ends at ``opened[i + 1]`` with a GET, the last at ``end`` without one.
    """
    tiers = prices.tiers
    gb = size / GB
    out_cost = {
        t: gb * prices.egress.get(t, 0.0) + prices.get_requests.get(t, 0.0) / 1000 for t in tiers
    }
    slow = prices.slow_read / 1000
    read_cost = {t: out_cost[t] + (slow if t != tiers[0] else 0.0) for t in tiers}
    move_cost = {
        (a, b): out_cost[a] + prices.put_requests.get(b, 0.0) / 1000 + gb * prices.move
        for a in tiers
        for b in tiers
        if a != b
    }
    per_second = {t: gb * prices.storage[t] / MONTH for t in tiers}
    # cost[t]: the cheapest cost of the gaps so far with the latest in t; back[i][t]: the
    # tier of gap i - 1 on that path.
    cost = {t: 0.0 if t == tiers[0] else move_cost[(tiers[0], t)] for t in tiers}
    back: list[dict[str, str]] = []
    count = len(opened)
    for i in range(count):
        closes = opened[i + 1] if i + 1 < count else end
        length = max(0.0, closes - opened[i])
        for t in tiers:
            cost[t] += per_second[t] * length + (read_cost[t] if i + 1 < count else 0.0)
        if i + 1 < count:
            step: dict[str, str] = {}
            nxt: dict[str, float] = {}
            for t in tiers:
                best, best_cost = t, cost[t]
                for a in tiers:
                    if a != t and cost[a] + move_cost[(a, t)] < best_cost:
                        best, best_cost = a, cost[a] + move_cost[(a, t)]
                step[t] = best
                nxt[t] = best_cost
            back.append(step)
            cost = nxt
    last = min(tiers, key=lambda t: cost[t])
    path = [last]
    for step in reversed(back):
        path.append(step[path[-1]])
    path.reverse()
    return path, cost[last]


@dataclass
class _Life:
    size: int
    tag: float  # the object's ``created`` as the simulator gives it
    opened: list[float] = field(default_factory=list)


class OfflineOptimalPolicy:
    """Places each object in its gap's tier from :func:`cheapest_tiers`, computed over the
    whole trace in :meth:`from_trace` (the rows the simulator will replay, same start/end)."""

    name = "offline-optimal"

    def __init__(self, first: str, plan: dict[tuple[str, str, float], dict[float, str]]) -> None:
        self._first = first
        self._plan = plan
        # the programme's own sum, slow-read weight included, before the simulator's rounds
        self.bound_cost = 0.0

    @classmethod
    def from_trace(
        cls, rows: Iterable[TraceRow], prices: Prices, start: float, end: float
    ) -> OfflineOptimalPolicy:
        """Read ``rows`` (in time order) as the simulator does and plan every object's life;
        ``end`` is the simulation's end."""
        first = prices.tiers[0]
        policy = cls(first, {})
        lives: dict[tuple[str, str], _Life] = {}
        deleted: set[tuple[str, str]] = set()

        def close(name: tuple[str, str], when: float) -> None:
            life = lives.pop(name)
            path, cost = cheapest_tiers(prices, life.size, life.opened, when)
            policy.bound_cost += cost
            gaps = {
                # the first gap opens when the object appears, as SimObject.last_access says
                (life.tag if i == 0 else life.opened[i]): tier
                for i, tier in enumerate(path)
                if tier != first
            }
            if gaps:
                policy._plan[(*name, life.tag)] = gaps

        for row in rows:
            name = (row.bucket, row.key)
            if row.op == "PUT":
                if name in lives:
                    close(name, row.time)
                deleted.discard(name)
                lives[name] = _Life(row.size, row.time, [row.time])
                continue
            if name not in lives and name not in deleted and row.op != "DELETE":
                lives[name] = _Life(row.size, start, [row.time])  # from before the trace
            if name not in lives:
                continue
            if row.op == "GET":
                lives[name].opened.append(row.time)
            elif row.op == "DELETE":
                close(name, row.time)
                deleted.add(name)
        for name in list(lives):
            close(name, end)
        return policy

    def place(self, obj: SimObject, now: float) -> str:
        gaps = self._plan.get((obj.bucket, obj.key, obj.created))
        if gaps is None:
            return self._first
        return gaps.get(obj.last_access, self._first)
