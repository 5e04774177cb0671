"""Version chains, delete markers and bucket configurations rebuilt from the disks.

What the disks say (see :mod:`stratum.service.versioning`): the header of every version's
data (shard files, segment records, a multipart object's manifest, a tier move's copy) holds
its version id, its order and the bucket's versioning state when it was written; a delete
marker is a zero-byte segment record of kind ``marker`` with the same fields; a bucket's
configuration (versioning state, Object Lock) is a segment record of kind ``bucket``, the
newest per bucket being the one in force; a change of a version's lock fields, legal hold,
tags or ACL after it was written is a segment record of kind ``amend``
(:mod:`stratum.service.amend`), the newest per version being the one in force. Data written
before versioning carries none of it: it is a null version, ordered by its write time.

The rules (:func:`keep`):

- a version the backup lists is kept; one the backup had queued for the collector, or older
  than the backup's newest version of its key and not listed by it, was removed for good
  before the backup; a small one older than the backup that it does not know likewise
  (deleted small records linger in their segments);
- of a key's null versions only the newest is kept: each replaced the one before;
- a key of a bucket that was never versioned keeps its one newest version, as before
  versioning (stratum.maintenance.recovery, step 2);
- the current version of a key is its greatest order; it is the key's object unless it is
  a delete marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratum.maintenance.backups import BackupView
from stratum.maintenance.recovery_scan import AMEND, BUCKET, MARKER, FoundVolume, volume_time
from stratum.meta import versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.versions import NULL, order_of
from stratum.service import amend
from stratum.service.versioning import hold, payload_settings

SMALL_PUT_MARGIN = 600.0  # seconds a small PUT may take from its volume id to its commit


@dataclass
class Candidate:
    """One logical volume of a key: a version found on the disks."""

    logical_id: str
    copies: list[FoundVolume]
    version_id: str
    order: bytes
    marker: bool

    @property
    def rank(self) -> tuple[bytes, str]:
        return self.order, self.logical_id


def identify(
    logical_id: str, copies: Sequence[FoundVolume], manifest: ObjectRecord | None
) -> Candidate:
    """The version a logical volume is: from its headers (any copy's: a tier move's copy made
    before versioning lacks them), its manifest's record, else a null version of its time."""
    marker = any(c.kind == MARKER for c in copies)
    for copy in sorted(copies, key=lambda c: c.volume_id != logical_id):
        found = copy.version
        if found is not None:
            return Candidate(logical_id, list(copies), found[0], found[1], marker)
    if manifest is not None and manifest.order:
        return Candidate(
            logical_id, list(copies), manifest.version_id, bytes.fromhex(manifest.order), marker
        )
    created = next((c.created for c in copies if c.volume_id == logical_id), None)
    when = created if created is not None else volume_time(logical_id)
    return Candidate(logical_id, list(copies), NULL, versions.legacy_order(when), marker)


@dataclass
class BackupKey:
    """What the backup knows of a key: its versions (newest first) and volumes by id."""

    history: list[ObjectRecord] = field(default_factory=list)

    @property
    def by_volume(self) -> dict[str, ObjectRecord]:
        return {r.volume_id: r for r in self.history}

    @property
    def newest(self) -> tuple[bytes, str] | None:
        if not self.history:
            return None
        return order_of(self.history[0]), self.history[0].volume_id


def backup_key(backup: BackupView | None, bucket: str, key: str) -> BackupKey:
    if backup is None:
        return BackupKey()
    tx = backup.tx
    if "versions" in tx.dbs:
        return BackupKey(list(versions.history(tx, bucket, key)))
    record = backup.object(bucket, key)
    return BackupKey([record] if record is not None else [])


def keep(
    candidates: Iterable[Candidate], known: BackupKey, backup: BackupView | None, versioned: bool
) -> list[Candidate]:
    """The versions of a key to restore, oldest first (see the module docstring)."""
    by_volume = known.by_volume
    newest = known.newest
    kept = []
    for cand in candidates:
        if backup is not None and cand.logical_id not in by_volume:
            if backup.in_gc(cand.logical_id):
                continue
            if newest is not None and cand.rank < newest:
                continue
            lingering = all(c.layout == "seg" for c in cand.copies)
            if lingering and volume_time(cand.logical_id) < backup.created - SMALL_PUT_MARGIN:
                continue
        kept.append(cand)
    kept.sort(key=lambda c: c.rank)
    nulls = [c for c in kept if c.version_id == NULL]
    kept = [c for c in kept if c.version_id != NULL or c is nulls[-1]]
    return kept if versioned else kept[-1:]


def marker_version(bucket: str, key: str, cand: Candidate) -> tuple[ObjectRecord, VolumeRecord]:
    """A delete marker's record and volume, from its copy on the disks."""
    copy = next(c for c in cand.copies if c.location is not None)
    record = ObjectRecord(
        key=key,
        volume_id=cand.logical_id,
        size=0,
        etag="",
        last_modified=copy.created,
        owner_id=str(copy.meta.get("owner_id") or ""),
        version_id=cand.version_id,
        order=cand.order.hex(),
        delete_marker=True,
    )
    volume = copy.volume_record()
    volume.volume_id, volume.order, volume.kind = cand.logical_id, cand.order.hex(), MARKER
    return record, volume


# -- bucket configurations ---------------------------------------------------------------------


def _config_order(volume: FoundVolume) -> tuple[float, int, str]:
    seq = volume.meta.get("seq")
    return volume.created, seq if isinstance(seq, int) else 0, volume.volume_id


def newest_configs(found: Mapping[str, FoundVolume]) -> dict[str, list[FoundVolume]]:
    """Each bucket's configuration records that can be read, newest first."""
    out: dict[str, list[FoundVolume]] = {}
    for volume in found.values():
        if volume.kind == BUCKET and volume.bucket and volume.location is not None:
            out.setdefault(volume.bucket, []).append(volume)
    for records in out.values():
        records.sort(key=_config_order, reverse=True)
    return out


def apply_config(bucket: BucketRecord, records: Sequence[FoundVolume], rebuilt: bool) -> str:
    """Give ``bucket`` the configuration of its newest record (of this bucket: not one left by
    a deleted bucket of the same name, told apart by the creation time it names; a bucket
    rebuilt without a backup takes the newest). Returns the record's volume id, or ""."""
    for record in records:
        meta: dict[str, Any] = record.meta
        created = meta.get("bucket_created")
        if not rebuilt and created != bucket.created:
            continue
        if rebuilt:
            if isinstance(created, int | float):
                bucket.created = float(created)
            bucket.owner_id = str(meta.get("owner_id") or bucket.owner_id)
        versioning = meta.get("versioning")
        bucket.versioning = versioning if versioning in ("Enabled", "Suspended") else ""
        bucket.object_lock = bool(meta.get("object_lock"))
        lock_default = meta.get("lock_default")
        bucket.lock_default = dict(lock_default) if isinstance(lock_default, dict) else {}
        bucket.settings = payload_settings(record.payload)
        bucket.config_record = _held(record)
        return record.volume_id
    return ""


# -- changes of versions after they were written -------------------------------------------------


AmendKey = tuple[str, str, str]  # bucket, key, order (hex) of the version changed


def newest_amends(found: Mapping[str, FoundVolume]) -> dict[AmendKey, FoundVolume]:
    """Each version's newest amend record that can be read."""
    out: dict[AmendKey, FoundVolume] = {}
    for volume in found.values():
        if volume.kind != AMEND or volume.location is None or not volume.bucket:
            continue
        slot = (volume.bucket, volume.key, str(volume.meta.get("order") or ""))
        other = out.get(slot)
        if other is None or _config_order(volume) > _config_order(other):
            out[slot] = volume
    return out


def apply_amend(
    bucket: str, record: ObjectRecord, amends: Mapping[AmendKey, FoundVolume]
) -> str | None:
    """Give a restored version the fields of its newest amend record, unless the record it
    came from (a backup's) already names that one or a newer one. Returns the amend
    record's volume id when applied (it is then in use), else None."""
    found = amends.get((bucket, record.key, order_of(record).hex()))
    if found is None or found.location is None:
        return None
    if str(record.amend_record.get("volume_id", "")) > found.volume_id:
        return None
    if not amend.apply_payload(record, found.payload):
        return None
    record.amend_record = _held(found)
    return found.volume_id


def _held(record: FoundVolume) -> dict[str, Any]:
    """Where a record of its own (a configuration, a change) is, as the store keeps it."""
    assert record.location is not None
    seq = record.meta.get("seq")
    return hold(
        record.volume_id,
        record.tier,
        record.location,
        record.created,
        seq if isinstance(seq, int) else 0,
    )
