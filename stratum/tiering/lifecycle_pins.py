"""Lifecycle transitions as pins: a ``Transition`` (or ``NoncurrentVersionTransition``) rule
that is due for a version puts it in the rule's tier, as an explicit pin would, whatever its
access pattern. The pin's source names the rule (``lifecycle:<rule id>``), so the engine's
decision (``pin:lifecycle:<rule id>``) and ``stratum explain`` say which rule moved it.

A due transition wins over the version's storage class and the bucket's pin: a lifecycle
rule is the later, more specific instruction (AWS transitions objects whatever class they
were written with). Noncurrent transitions count from when the version stopped being
current (:func:`stratum.meta.versions.superseded_at`), and leave the rule's
``NewerNoncurrentVersions`` newest noncurrent versions of a key where they are.
"""

from __future__ import annotations

from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.meta.store import Tx
from stratum.service import lifecycle


def lifecycle_pin(
    tx: Tx, record: ObjectRecord, bucket: BucketRecord | None, now: float, day: float
) -> tuple[str, str]:
    """``(tier, "lifecycle:<rule id>")`` of a transition due for ``record``, else ``("", "")``."""
    if bucket is None or lifecycle.SETTING not in bucket.settings:
        return "", ""
    rules = lifecycle.compile_rules(bucket.settings[lifecycle.SETTING])
    if not any(r.transitions or r.noncurrent_transitions for r in rules):
        return "", ""
    since: float | None = None
    current = catalog.get_object(tx, bucket.name, record.key)
    if current is None or current.volume_id != record.volume_id:
        since = versions.superseded_at(tx, bucket.name, record.key, versions.order_of(record))
        if since is None:
            since = record.last_modified
    newer = 0
    if since is not None:
        keep = max((t.newer or 0 for r in rules for t in r.noncurrent_transitions), default=0)
        newer = _noncurrent_newer(tx, bucket.name, record, keep) if keep else 0
    due = lifecycle.transition_of(
        rules, record, now, noncurrent_since=since, newer_noncurrent=newer, day=day
    )
    return ("", "") if due is None else (due[0], f"lifecycle:{due[1]}")


def _noncurrent_newer(tx: Tx, bucket: str, record: ObjectRecord, enough: int) -> int:
    """How many noncurrent versions of ``record``'s key are newer than it, counted up to
    ``enough`` (rules keep at most 100: the walk stays short whatever the key's history)."""
    order = versions.order_of(record)
    newer = -1  # the newest version is the current one, not a noncurrent one
    for version in versions.history(tx, bucket, record.key):
        if versions.order_of(version) == order or newer >= enough:
            break
        newer += 1
    return max(newer, 0)
