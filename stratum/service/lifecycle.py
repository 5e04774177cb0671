"""Lifecycle rules: what a bucket's lifecycle configuration does to a version, and when.

A bucket's configuration is its ``lifecycle`` setting (``BucketRecord.settings``), stored as
the S3 layer parsed it: format 1 is ``{"v": 1, "rules": [rule, ...]}``, each rule a dict with
the element names of AWS's XML (``ID``, ``Status``, ``Prefix`` or ``Filter``, ``Expiration``,
``NoncurrentVersionExpiration``, ``AbortIncompleteMultipartUpload``, ``Transitions``,
``NoncurrentVersionTransitions``), numbers as ints and dates as epoch seconds, so that a GET
answers the configuration as it was given. :func:`compile_rules` turns it into
:class:`Rule` objects, which this module evaluates; nothing here reads or writes storage.

Time is counted in lifecycle days of ``day`` seconds (``[lifecycle] day_seconds``, 86400
unless shortened for tests). As AWS: an action due ``n`` days after a time is due at that
time plus ``n`` days, rounded up to the next day boundary (midnight UTC for real days); a
noncurrent version's days count from when the next version was written; a ``Date`` action is
due from that date on.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stratum.meta.records import ObjectRecord

FORMAT = 1
SETTING = "lifecycle"
DAY = 86400.0
# Storage classes a transition may name, and the tier each one means.
TIER_OF_TRANSITION_CLASS: Mapping[str, str] = {
    "STANDARD_IA": "warm",
    "ONEZONE_IA": "warm",
    "INTELLIGENT_TIERING": "warm",
    "GLACIER_IR": "cold",
    "GLACIER": "cold",
    "DEEP_ARCHIVE": "cold",
}


@dataclass(frozen=True)
class Filter:
    """Which versions a rule applies to: all of prefix, tags and size bounds must hold."""

    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None
    size_lt: int | None = None

    def matches(self, key: str, tags: Mapping[str, str], size: int) -> bool:
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(k) != v for k, v in self.tags):
            return False
        if self.size_gt is not None and not size > self.size_gt:
            return False
        return self.size_lt is None or size < self.size_lt

    def matches_version(self, record: ObjectRecord) -> bool:
        return self.matches(record.key, record.tags, record.size)


@dataclass(frozen=True)
class Transition:
    tier: str
    storage_class: str
    days: int | None = None
    date: float | None = None
    newer: int | None = None  # noncurrent transitions: NewerNoncurrentVersions


@dataclass(frozen=True)
class Rule:
    id: str
    filter: Filter
    expire_days: int | None = None
    expire_date: float | None = None
    expired_marker: bool = False  # ExpiredObjectDeleteMarker
    noncurrent_days: int | None = None
    newer_noncurrent: int | None = None
    abort_days: int | None = None
    transitions: tuple[Transition, ...] = ()
    noncurrent_transitions: tuple[Transition, ...] = ()


def due_after(start: float, days: int, day: float = DAY) -> float:
    """``days`` lifecycle days after ``start``, rounded up to the next day boundary."""
    return math.ceil((start + days * day) / day) * day


_last: list[tuple[Mapping[str, Any], tuple[Rule, ...]]] = []


def compile_rules(stored: Mapping[str, Any] | None) -> tuple[Rule, ...]:
    """The enabled rules of a stored configuration (see the module docstring).

    The tier engine asks once per version of a bucket, with the one settings dict it read:
    the last answer is kept for that very dict, so the configuration is not encoded again
    for every version (other callers go through the cache keyed by its encoding)."""
    if not stored:
        return ()
    if _last and _last[0][0] is stored:
        return _last[0][1]
    rules = _compiled(json.dumps(stored, sort_keys=True))
    _last[:] = [(stored, rules)]
    return rules


@functools.lru_cache(maxsize=256)
def _compiled(encoded: str) -> tuple[Rule, ...]:
    stored = json.loads(encoded)
    return tuple(_rule(r) for r in stored.get("rules", []) if r.get("Status") == "Enabled")


def _filter(rule: Mapping[str, Any]) -> Filter:
    if "Filter" not in rule:
        return Filter(prefix=str(rule.get("Prefix", "")))
    spec = rule["Filter"]
    spec = spec.get("And", spec)  # else its conditions, one or (leniently) several, all hold
    tags = [spec["Tag"]] if "Tag" in spec else list(spec.get("Tags", []))
    return Filter(
        prefix=str(spec.get("Prefix", "")),
        tags=tuple((str(t["Key"]), str(t["Value"])) for t in tags),
        size_gt=spec.get("ObjectSizeGreaterThan"),
        size_lt=spec.get("ObjectSizeLessThan"),
    )


def _transition(spec: Mapping[str, Any], noncurrent: bool) -> Transition:
    storage_class = str(spec["StorageClass"])
    return Transition(
        tier=TIER_OF_TRANSITION_CLASS[storage_class],
        storage_class=storage_class,
        days=spec.get("NoncurrentDays" if noncurrent else "Days"),
        date=spec.get("Date"),
        newer=spec.get("NewerNoncurrentVersions"),
    )


def _rule(rule: Mapping[str, Any]) -> Rule:
    expiration = rule.get("Expiration", {})
    noncurrent = rule.get("NoncurrentVersionExpiration", {})
    return Rule(
        id=str(rule["ID"]),
        filter=_filter(rule),
        expire_days=expiration.get("Days"),
        expire_date=expiration.get("Date"),
        expired_marker=bool(expiration.get("ExpiredObjectDeleteMarker", False)),
        noncurrent_days=noncurrent.get("NoncurrentDays"),
        newer_noncurrent=noncurrent.get("NewerNoncurrentVersions"),
        abort_days=rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
        transitions=tuple(_transition(t, False) for t in rule.get("Transitions", [])),
        noncurrent_transitions=tuple(
            _transition(t, True) for t in rule.get("NoncurrentVersionTransitions", [])
        ),
    )


# -- decisions ------------------------------------------------------------------------------


def expiry_of(rules: Sequence[Rule], record: ObjectRecord, day: float = DAY) -> tuple[float, str]:
    """When the current version ``record`` expires and by which rule: the earliest of the
    rules that apply, ``(math.inf, "")`` if none does (``x-amz-expiration``, the worker)."""
    best = (math.inf, "")
    for rule in rules:
        if not rule.filter.matches_version(record):
            continue
        if rule.expire_days is not None:
            best = min(best, (due_after(record.last_modified, rule.expire_days, day), rule.id))
        if rule.expire_date is not None:
            best = min(best, (rule.expire_date, rule.id))
    return best


def marker_expiry(rules: Sequence[Rule], marker: ObjectRecord, day: float = DAY) -> float:
    """When a delete marker that is its key's only version goes: at once with
    ``ExpiredObjectDeleteMarker``, else when an ``Expiration`` would expire an object
    written with it (``math.inf``: never)."""
    when = math.inf
    for rule in rules:
        if not rule.filter.matches(marker.key, {}, 0):
            continue
        if rule.expired_marker:
            return marker.last_modified
        if rule.expire_days is not None:
            when = min(when, due_after(marker.last_modified, rule.expire_days, day))
        if rule.expire_date is not None:
            when = min(when, rule.expire_date)
    return when


def noncurrent_expires(
    rules: Sequence[Rule],
    version: ObjectRecord,
    since: float,
    newer_noncurrent: int,
    now: float,
    day: float = DAY,
) -> str | None:
    """The rule that expires noncurrent ``version`` at ``now`` (None: none does). ``since``
    is when it became noncurrent; ``newer_noncurrent`` how many noncurrent versions of its
    key are newer than it (``NewerNoncurrentVersions`` keeps that many)."""
    for rule in rules:
        if rule.noncurrent_days is None or not rule.filter.matches_version(version):
            continue
        if rule.newer_noncurrent is not None and newer_noncurrent < rule.newer_noncurrent:
            continue
        if due_after(since, rule.noncurrent_days, day) <= now:
            return rule.id
    return None


def abort_due(rules: Sequence[Rule], key: str, initiated: float, day: float = DAY) -> float:
    """When an incomplete multipart upload of ``key`` is aborted (``math.inf``: never)."""
    when = math.inf
    for rule in rules:
        if rule.abort_days is not None and key.startswith(rule.filter.prefix):
            when = min(when, due_after(initiated, rule.abort_days, day))
    return when


def transition_of(
    rules: Sequence[Rule],
    version: ObjectRecord,
    now: float,
    *,
    noncurrent_since: float | None = None,
    newer_noncurrent: int = 0,
    day: float = DAY,
) -> tuple[str, str] | None:
    """``(tier, rule id)`` of the coldest transition due for ``version`` at ``now`` (None:
    none). ``noncurrent_since``: when it became noncurrent, if it is; ``newer_noncurrent``:
    how many noncurrent versions of its key are newer (``NewerNoncurrentVersions`` leaves
    that many where they are)."""
    best: tuple[int, str, str] | None = None
    rank = {"warm": 1, "cold": 2}
    for rule in rules:
        if not rule.filter.matches_version(version):
            continue
        if noncurrent_since is None:
            candidates = [
                t
                for t in rule.transitions
                if (t.days is not None and due_after(version.last_modified, t.days, day) <= now)
                or (t.date is not None and t.date <= now)
            ]
        else:
            candidates = [
                t
                for t in rule.noncurrent_transitions
                if t.days is not None
                and due_after(noncurrent_since, t.days, day) <= now
                and (t.newer is None or newer_noncurrent >= t.newer)
            ]
        for t in candidates:
            option = (rank[t.tier], t.tier, rule.id)
            if best is None or option > best:
                best = option
    return None if best is None else (best[1], best[2])
