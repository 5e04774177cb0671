"""A bucket's replication rules: those of the configuration file and those PutBucketReplication
stored, as one list (what GetBucketReplication answers and what the queue follows).

A rule replicates the bucket's keys under ``prefix`` to one ``[replication.<name>]`` target:
its ``ID`` is the target's name (the endpoint and keys come from the configuration, which S3's
XML has no place for), and its destination bucket is the one the target's ``bucket`` names.
The configuration's targets give a rule each for the buckets they list (prefix empty, ID the
target's name); a bucket's stored rules (``BucketRecord.settings["replication"]``) add to
them and can neither remove nor change those. Stored form (JSON in the bucket record)::

    {"role": "...", "rules": [{"id": "offsite", "priority": 1, "status": "Enabled",
                               "prefix": "photos/", "delete_markers": true,
                               "bucket": "arn:aws:s3:::copy-of-photos"}, ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stratum.config import ReplicationTarget
from stratum.meta.records import BucketRecord

SETTING = "replication"
ARN = "arn:aws:s3:::"


@dataclass(frozen=True)
class Rule:
    id: str  # the target's name
    priority: int
    status: str  # "Enabled" | "Disabled"
    prefix: str
    delete_markers: bool
    bucket: str  # destination, as an ARN
    from_config: bool = False  # a rule of the configuration file (not stored)

    def stored(self) -> dict[str, Any]:
        out = asdict(self)
        del out["from_config"]
        return out


def config_rules(bucket: str, targets: Sequence[ReplicationTarget]) -> list[Rule]:
    return [
        Rule(
            id=t.name,
            priority=0,
            status="Enabled",
            prefix="",
            delete_markers=t.delete_markers,
            bucket=ARN + t.target_bucket(bucket),
            from_config=True,
        )
        for t in targets
        if t.covers(bucket)
    ]


def stored_rules(record: BucketRecord) -> list[Rule]:
    stored = record.settings.get(SETTING) or {}
    out = []
    for rule in stored.get("rules", []):
        try:
            out.append(Rule(**rule))
        except TypeError:  # a rule of a newer format: not ours to follow
            continue
    return out


def role(record: BucketRecord) -> str:
    return str((record.settings.get(SETTING) or {}).get("role", ""))


def all_rules(record: BucketRecord, targets: Sequence[ReplicationTarget]) -> list[Rule]:
    return config_rules(record.name, targets) + stored_rules(record)


def queue_rules(record: BucketRecord) -> list[tuple[str, str, bool]]:
    """(target, key prefix, delete markers) of the bucket's enabled stored rules (the queue's
    ``rules``: the configuration's own targets it knows already)."""
    return [
        (rule.id, rule.prefix, rule.delete_markers)
        for rule in stored_rules(record)
        if rule.status == "Enabled"
    ]


def refusal(bucket: str, rule: Rule, targets: Sequence[ReplicationTarget]) -> str | None:
    """Why a rule cannot be stored (an S3 InvalidRequest message), or None."""
    names = {t.name: t for t in targets}
    target = names.get(rule.id)
    if target is None:
        known = ", ".join(sorted(names)) or "none is configured"
        return f"Rule ID {rule.id!r} must name a [replication.<name>] target ({known})"
    wanted = ARN + target.target_bucket(bucket)
    if rule.bucket not in (wanted, wanted[len(ARN) :]):
        return f"Rule {rule.id!r}: the destination bucket of this target is {wanted}"
    if rule.status not in ("Enabled", "Disabled"):
        return f"Rule {rule.id!r}: Status must be Enabled or Disabled"
    return None
