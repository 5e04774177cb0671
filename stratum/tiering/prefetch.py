"""Group-aware promotion: a bulk or sequential read of a group of keys brings the group's next
objects to the first tier ahead of their reads, within a budget, and learns per group whether
that pays.

A restore reads many of a repository's pack files in a row, an opened photo album the
album's photos one after another, a season's episodes follow each other: the reads of
one object announce reads of its neighbours. The per-class gap statistics
(:mod:`stratum.tiering.learned`) cannot see that, as they know nothing of which objects go
together; this module does, with no memory per object beyond the promotions in flight.

- A **scope** is a bucket and the first segment of a key (``photos/library/``,
  ``backup/data/``; a key without ``/`` is its bucket's root scope).
- A read served from a tier other than the first (a **slow read**) is counted in its scope;
  ``after`` of them within ``window`` are a **pattern**. From then on, each slow read of the
  scope promotes the ``count`` objects that follow the read key in key order, first in its
  directory, then in its scope, that are not in the first tier yet
  (:func:`following_keys` says where to look; the engine reads LMDB, the simulator its own
  index), as long as the scope's ``budget`` bytes per window last.
- Each promotion is remembered until it is **used** (its object is read: the pattern goes
  on, and that read promotes further, so a sequential reader finds its next objects ready)
  or ``window`` has passed twice; then it counts as unused. A scope's counts decay with
  :data:`HALF_LIFE`. A scope whose promotions are mostly not used (fewer than
  :data:`MIN_USED_SHARE` of at least :data:`MIN_TRIED`) stops promoting until its counts have
  decayed: a workload of isolated reads pays for a few wasted promotions, then no more.
- A promoted object is **held** in the first tier for ``window`` after its promotion
  (:func:`held`), so the next tiering pass does not send it back before the read
  it was promoted for.

Memory: at most :data:`MAX_SCOPES` scopes (a few dozen numbers each, the least recently used
forgotten first) and :data:`MAX_PENDING` promotions in flight. Nothing is stored: after a
restart a scope learns again from its next reads.

The engine (:mod:`stratum.tiering.engine`) and the simulator
(:mod:`stratum.tiering.simulator`, with the learned policy) drive the same class.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

RULE = "prefetch"  # the rule a promotion is logged with
HALF_LIFE = 7 * 86400.0  # seconds: how long a scope's record of used promotions counts
MIN_TRIED = 16.0  # promotions a scope makes before its usefulness is judged
MIN_USED_SHARE = 0.25  # a judged scope promotes only while this share of them is read
MAX_SCOPES = 1000
MAX_PENDING = 10_000
MAX_SLOW_READS = 64  # slow reads remembered per scope (only ``after`` of them matter)


def held(placed: Mapping[str, Any], last_read: float, now: float, window: float) -> bool:
    """Whether a volume whose last placement was ``placed`` (its record's ``placed``) and
    last read at ``last_read`` is held in the first tier for the read it was promoted for."""
    if placed.get("rule") != RULE:
        return False
    at = float(placed.get("at", 0.0))
    return last_read < at and now - at < window


def scope_of(bucket: str, key: str) -> str:
    """``bucket/first-segment/`` (``bucket/`` for a key without ``/``)."""
    cut = key.find("/")
    return f"{bucket}/{key[: cut + 1]}" if cut >= 0 else f"{bucket}/"


def directory_of(key: str) -> str:
    """The key's directory: everything up to its last ``/`` ("" at the root)."""
    return key[: key.rfind("/") + 1]


def following_keys(key: str) -> tuple[str, str]:
    """Where to look for the objects that follow ``key``: first the keys after it with the
    prefix of its directory, then those after the directory with its scope's prefix. Returns
    (directory prefix, scope prefix)."""
    cut = key.find("/")
    return directory_of(key), key[: cut + 1] if cut >= 0 else ""


@dataclass
class _Scope:
    slow: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SLOW_READS))
    tried: float = 0.0  # promotions, decayed
    used: float = 0.0  # of them read while held, decayed
    counted_at: float = 0.0
    spent: deque[tuple[float, int]] = field(default_factory=deque)  # (when, bytes) in window

    def decay(self, now: float) -> None:
        if now > self.counted_at:
            factor = 0.5 ** ((now - self.counted_at) / HALF_LIFE)
            self.tried *= factor
            self.used *= factor
            self.counted_at = now

    @property
    def useful(self) -> bool:
        return self.tried < MIN_TRIED or self.used >= MIN_USED_SHARE * self.tried


class Prefetcher:
    """The group-aware promotion of the module docstring, on the caller's clock."""

    def __init__(self, *, after: int, window: float, count: int, budget: int) -> None:
        self.after = after
        self.window = window
        self.count = count
        self.budget = budget
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        # (bucket, key) -> (scope, promoted at), oldest first
        self._pending: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self.promoted = self.used = self.wasted = 0  # since start, for reports

    @property
    def enabled(self) -> bool:
        return self.budget > 0 and self.count > 0 and self.after > 0

    def _scope(self, name: str, now: float) -> _Scope:
        scope = self._scopes.get(name)
        if scope is None:
            scope = self._scopes[name] = _Scope(counted_at=now)
            if len(self._scopes) > MAX_SCOPES:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(name)
        scope.decay(now)
        return scope

    def _expire(self, now: float) -> None:
        while self._pending:
            ident, (_scope, at) = next(iter(self._pending.items()))
            if now - at < 2 * self.window and len(self._pending) <= MAX_PENDING:
                break
            del self._pending[ident]
            self.wasted += 1  # never read: counted in ``tried`` only

    def read(self, bucket: str, key: str, slow: bool, now: float) -> bool:
        """A read of ``bucket/key`` at ``now``, served from a tier other than the first if
        ``slow``. True: promote what follows it (:meth:`take`)."""
        if not self.enabled:
            return False
        self._expire(now)
        pending = self._pending.pop((bucket, key), None)
        if pending is not None:  # a promotion used: the pattern goes on, promote further
            scope = self._scope(pending[0], now)
            scope.used += 1
            self.used += 1
            return scope.useful
        if not slow:
            return False
        scope = self._scope(scope_of(bucket, key), now)
        scope.slow.append(now)
        recent = sum(1 for t in scope.slow if now - t <= self.window)
        return recent >= self.after and scope.useful

    def take(
        self, bucket: str, key: str, candidates: Iterable[tuple[str, int]], now: float
    ) -> list[tuple[str, int]]:
        """Of ``candidates`` (the keys that follow ``key``, in order, with their sizes, not in
        the first tier), those to promote now: at most ``count`` and within the scope's budget.
        Each is remembered as promoted."""
        scope = self._scope(scope_of(bucket, key), now)
        while scope.spent and now - scope.spent[0][0] > self.window:
            scope.spent.popleft()
        left = self.budget - sum(size for _, size in scope.spent)
        chosen: list[tuple[str, int]] = []
        for name, size in candidates:
            if len(chosen) >= self.count:
                break
            if (bucket, name) in self._pending or size > left:
                continue
            chosen.append((name, size))
            left -= size
            scope.spent.append((now, size))
            scope.tried += 1
            self._pending[(bucket, name)] = (scope_of(bucket, name), now)
            self.promoted += 1
        return chosen

    def scopes(self) -> Iterator[dict[str, Any]]:
        """Each scope's figures, most recently used first (``stratum tier classes``)."""
        for name, scope in reversed(self._scopes.items()):
            yield {
                "scope": name,
                "promoted": round(scope.tried, 2),
                "used": round(scope.used, 2),
                "promoting": scope.useful,
            }

    def summary(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "used": self.used,
            "unused": self.wasted,
            "in_flight": len(self._pending),
            "used_share": round(self.used / self.promoted, 3) if self.promoted else None,
        }
