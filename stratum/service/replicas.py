"""Replicas: versions another site made, written here with the order and time it gave them.

A replica keeps its source's order bytes (and so its version id, the hex of the order) and
its modification time, so that both sites hold the same versions and agree on the current
one, the version of the greatest order (:mod:`stratum.meta.versions`): an older replica
lands as a noncurrent version, never replacing what was written here later. A replica is
marked ``REPLICA`` (``ObjectRecord.replication``) and never queued for replication again,
so nothing loops between two sites that replicate to each other.

Only a bucket whose versioning is Enabled takes replicas (a null version has no order of its
own to keep). Writing a replica that is already here (a retry whose first answer was lost)
changes nothing: :class:`ReplicaExists` carries the version found, which the S3 layer
answers with as if just written.
"""

from __future__ import annotations

from dataclasses import dataclass

from stratum.meta import versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.meta.store import Tx
from stratum.service import errors

ENABLED = "Enabled"
PENDING, COMPLETED, FAILED, REPLICA = "PENDING", "COMPLETED", "FAILED", "REPLICA"


class ReplicaRefused(errors.ObjectServiceError):
    """The bucket cannot take a replica (its versioning is not Enabled)."""


class ReplicaExists(errors.ObjectServiceError):
    """The version a replica write carries is already here."""

    def __init__(self, record: ObjectRecord) -> None:
        super().__init__("replica already written", key=record.key)
        self.record = record


@dataclass(frozen=True)
class Replica:
    """What a replica write brings from its source: the version's order and time."""

    order: bytes
    mtime: float

    @property
    def version_id(self) -> str:
        return self.order.hex()

    def stamp(self, record: ObjectRecord) -> ObjectRecord:
        record.order, record.version_id = self.order.hex(), self.version_id
        record.last_modified = self.mtime
        record.replication = REPLICA
        return record


def check_bucket(bucket: BucketRecord) -> None:
    if bucket.versioning != ENABLED:
        raise ReplicaRefused(
            f"bucket {bucket.name} takes replicas only with versioning Enabled", bucket=bucket.name
        )


def check_new(tx: Tx, bucket: BucketRecord, key: str, replica: Replica) -> None:
    """In the commit: refuse a bucket without versioning, and a replica already written."""
    check_bucket(bucket)
    existing = versions.get(tx, bucket.name, key, replica.order)
    if existing is not None:
        raise ReplicaExists(existing)
