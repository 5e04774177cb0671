"""Versioning in the object service: what a write or a delete does to a key's versions, and
the one place that decides whether a version may be removed for good.

By the bucket's versioning state (``BucketRecord.versioning``), as S3 defines it:

- never set: a PUT replaces the key's one object (its null version), a DELETE removes it;
- ``Enabled``: a PUT adds a version with an id of its own, a DELETE adds a delete marker;
- ``Suspended``: a PUT adds a null version and a DELETE a null delete marker, each replacing
  the key's null version, wherever it is in the key's history.

A DELETE naming a version removes that version for good. Whether a version may be removed
(a DELETE naming it, the null version replaced, and later lifecycle and bucket deletion) is
decided by :func:`removal_refused` and nowhere else; Object Lock's retention and legal hold
are fields of each version's record. A version removed for good gives back its volume (the
caller queues it for the collector); a version only hidden (noncurrent) keeps it.

The version a write makes is decided before its bytes are stored, since the version id and
order go into the on-disk headers (:func:`header_fields`): the order of a new version is
above the key's newest (:meth:`~stratum.meta.versions.OrderClock.next`), so that, one write
after another, the current version is always the last one acknowledged; of two writes of
one key in flight together, the later-started one ends up current, as in S3.

Bucket configuration changes are written to the hot tier too, as small records of their own
(:func:`bucket_header`), so that ``stratum recover-metadata`` rebuilds versioning states.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.meta.versions import NULL, order_of
from stratum.service import errors
from stratum.service.ids import new_volume_id

if TYPE_CHECKING:
    from stratum.service.objects import ObjectService

ENABLED, SUSPENDED = "Enabled", "Suspended"
MARKER = "marker"  # VolumeRecord.kind and header "kind" of a delete marker's record
BUCKET = "bucket"  # header "kind" of a bucket configuration record
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
AT_CREATION = "amendable"  # data header field: the amendable fields a version was written with


class NoSuchVersion(errors.ObjectServiceError):
    pass


class DeleteMarkerFound(errors.ObjectServiceError):
    """The version asked for, or the key's current one, is a delete marker."""

    def __init__(self, marker: ObjectRecord, *, by_version: bool) -> None:
        super().__init__("delete marker", key=marker.key)
        self.marker = marker
        self.by_version = by_version


def version_id_for(versioning: str, order: bytes) -> str:
    """The id a new version gets in a bucket in this versioning state."""
    return order.hex() if versioning == ENABLED else NULL


def header_fields(version_id: str, order: str, versioning: str) -> dict[str, Any]:
    """What the on-disk header of a version's data says of its place in the key's history:
    its id, its order (hex) and the bucket's versioning state when it was written."""
    return {"version_id": version_id, "order": order, "versioning": versioning}


@dataclass(frozen=True)
class NewVersion:
    """What a write is about to make, decided before its bytes are stored (the version id
    and order go into the on-disk headers): its order, id, and the bucket's state then."""

    order: bytes
    version_id: str
    versioning: str
    # the Object Lock fields it gets at creation (stratum.service.locks.creation_fields),
    # written into its data's header too (its tags and ACL are there as fields of their own)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    def stamp(self, record: ObjectRecord) -> ObjectRecord:
        record.order, record.version_id = self.order.hex(), self.version_id
        for name, value in self.fields.items():
            setattr(record, name, value)
        return record

    def header(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version_id": self.version_id,
            "order": self.order.hex(),
            "versioning": self.versioning,
        }
        if self.fields:
            out[AT_CREATION] = self.fields
        return out


# -- the decision -----------------------------------------------------------------------------


def removal_refused(
    version: ObjectRecord, now: float, *, bypass_governance: bool = False
) -> str | None:
    """Why ``version`` may not be removed for good at ``now``, or None if it may.

    A legal hold keeps it; COMPLIANCE retention keeps it until its date whoever asks;
    GOVERNANCE retention too, unless the request bypasses governance retention."""
    if version.legal_hold:
        return "it is under a legal hold"
    locked = version.lock_mode and version.lock_until > now
    if locked and (version.lock_mode != "GOVERNANCE" or not bypass_governance):
        return f"it is under {version.lock_mode} retention"
    return None


def _guard(version: ObjectRecord, now: float, bypass: bool) -> None:
    why = removal_refused(version, now, bypass_governance=bypass)
    if why is not None:
        raise errors.AccessDenied(f"version {version.version_id} of {version.key}: {why}")


# -- in a metadata transaction ----------------------------------------------------------------


def write_version(
    tx: Tx, bucket: BucketRecord, record: ObjectRecord, now: float, *, bypass: bool = False
) -> list[ObjectRecord]:
    """Make ``record`` (an object or a delete marker, ``order`` and ``version_id`` set) a
    version of its key; return the versions removed for good, whose volumes are to be freed.

    A null version written while a newer one of the key exists (two writes in flight) is
    itself the one replaced: it is returned, and nothing else changes."""
    name, key = bucket.name, record.key
    if not bucket.versioning:
        previous = catalog.put_object(tx, name, record)
        if previous is None or previous.volume_id == record.volume_id:
            return []
        _guard(previous, now, bypass)  # refused: the transaction's changes are rolled back
        return [previous]
    old = versions.null_version(tx, name, key) if record.version_id == NULL else None
    if old is not None:
        if order_of(old) > order_of(record):
            return [record]
        _guard(old, now, bypass)
    versions.write(tx, name, record, old)
    return [] if old is None else [old]


def remove_version(
    tx: Tx, bucket: BucketRecord, key: str, version_id: str, now: float, *, bypass: bool = False
) -> ObjectRecord | None:
    """Remove a version for good (a DELETE naming it); return it, or None if there is none.

    The next newest version, if any, becomes current. ``version_id`` must be well formed
    (see :func:`stratum.meta.versions.parse_version_id`)."""
    name = bucket.name
    if not bucket.versioning:  # the key's one object is its null version
        target = catalog.get_object(tx, name, key) if version_id == NULL else None
    else:
        target = versions.find(tx, name, key, version_id)
    if target is None:
        return None
    _guard(target, now, bypass)
    if bucket.versioning and versions.has_versions(tx, name, key):
        versions.remove(tx, name, target)
        versions.settle_current(tx, name, key)
    else:
        catalog.delete_object(tx, name, key)
    return target


def lookup(tx: Tx, bucket: BucketRecord, key: str, version_id: str | None) -> ObjectRecord:
    """The object a GET or HEAD (or a copy source) names: raises NoSuchKey, NoSuchVersion or
    :class:`DeleteMarkerFound`."""
    name = bucket.name
    if version_id is None:
        record = catalog.get_object(tx, name, key)
        if record is not None:
            return record
        if bucket.versioning:
            newest = versions.newest(tx, name, key)
            if newest is not None and newest.delete_marker:
                raise DeleteMarkerFound(newest, by_version=False)
        raise errors.NoSuchKey(bucket=name, key=key)
    found = versions.find(tx, name, key, version_id)
    if found is None:
        raise NoSuchVersion(bucket=name, key=key, version_id=version_id)
    if found.delete_marker:
        raise DeleteMarkerFound(found, by_version=True)
    return found


def retire(tx: Tx, removed: list[ObjectRecord]) -> None:
    """Queue the volumes of versions removed for good (object data or a marker's record),
    and the record of their latest change, if any (:mod:`stratum.service.amend`)."""
    for record in removed:
        catalog.retire_volume(tx, record.volume_id)
        retire_held(tx, record.amend_record, "")


# -- delete markers and bucket records on disk ------------------------------------------------


def marker_record(
    key: str, volume_id: str, order: bytes, versioning: str, owner_id: str, now: float
) -> ObjectRecord:
    return ObjectRecord(
        key=key,
        volume_id=volume_id,
        size=0,
        etag="",
        last_modified=now,
        owner_id=owner_id,
        version_id=version_id_for(versioning, order),
        order=order.hex(),
        delete_marker=True,
    )


def marker_header(bucket: str, marker: ObjectRecord, versioning: str) -> dict[str, Any]:
    """The meta of a delete marker's zero-byte segment record (what recovery reads)."""
    return {
        "kind": MARKER,
        "bucket": bucket,
        "key": marker.key,
        "created": marker.last_modified,
        "owner_id": marker.owner_id,
        **header_fields(marker.version_id, marker.order, versioning),
    }


def marker_volume(
    bucket: str, marker: ObjectRecord, tier: str, location: dict[str, Any]
) -> VolumeRecord:
    return VolumeRecord(
        volume_id=marker.volume_id,
        tier=tier,
        layout="seg",
        location=location,
        size=0,
        md5=EMPTY_MD5,
        created=marker.last_modified,
        last_access=marker.last_modified,
        bucket=bucket,
        key=marker.key,
        order=marker.order,
        kind=MARKER,
    )


def bucket_header(bucket: BucketRecord, now: float) -> dict[str, Any]:
    """The meta of a bucket configuration record: the newest per bucket wins at recovery."""
    return {
        "kind": BUCKET,
        "bucket": bucket.name,
        "created": now,
        "owner_id": bucket.owner_id,
        "bucket_created": bucket.created,
        "region": bucket.region,
        "versioning": bucket.versioning,
        "object_lock": bucket.object_lock,
        "lock_default": bucket.lock_default,
        # changes made within one tick of the clock are told apart by this count
        "seq": int(bucket.config_record.get("seq", 0)) + 1,
    }


def settings_payload(bucket: BucketRecord) -> bytes:
    """The body of a bucket configuration record: its sub-resource settings as JSON (in the
    body, not the header, whose size is capped while a policy or a lifecycle configuration
    may run to hundreds of KB). A record with an empty body has no settings."""
    if not bucket.settings:
        return b""
    return json.dumps({"settings": bucket.settings}, sort_keys=True).encode()


def payload_settings(payload: bytes | None) -> dict[str, Any]:
    """The settings a bucket configuration record's body holds (see :func:`settings_payload`)."""
    if not payload:
        return {}
    try:
        settings = json.loads(payload).get("settings")
    except (ValueError, AttributeError):
        return {}
    return dict(settings) if isinstance(settings, dict) else {}


def retire_config_record(tx: Tx, bucket: BucketRecord) -> None:
    """Queue the bucket's current configuration record for the collector (superseded)."""
    retire_held(tx, bucket.config_record, bucket.name)


def retire_held(tx: Tx, held: dict[str, Any], bucket: str) -> None:
    """Queue a small record of its own on disk (a bucket's configuration, a version's change)
    for the collector: ``held`` says where it is, as :func:`hold` made it."""
    if not held:
        return
    volume = VolumeRecord(
        volume_id=str(held["volume_id"]),
        tier=str(held.get("tier", "hot")),
        layout="seg",
        location=dict(held["location"]),
        size=0,
        md5=EMPTY_MD5,
        created=float(held.get("at", 0.0)),
        bucket=bucket,
    )
    catalog.retire_location(tx, volume.volume_id, volume)


def hold(
    volume_id: str, tier: str, location: dict[str, Any], at: float, seq: int
) -> dict[str, Any]:
    """Where a small record of its own is on disk (kept in the record it describes)."""
    return {"volume_id": volume_id, "tier": tier, "location": location, "at": at, "seq": seq}


async def configure(
    service: ObjectService, name: str, owner_id: str, change: Callable[[BucketRecord], bool]
) -> BucketRecord:
    """Change a bucket's configuration (versioning; Object Lock later): ``change`` edits
    the record in place and says whether anything changed. The new configuration is
    written to the hot tier first, as a record of its own, so that recovery from the
    disks knows it (:func:`stratum.service.versioning.bucket_header`); the record it
    supersedes is queued for the collector."""
    wanted = dataclasses.replace(service.get_bucket(name, owner_id))
    if not change(wanted):
        return wanted
    held = await write_config(service, wanted)
    location = held["location"]

    def commit(tx: Tx) -> BucketRecord:
        record = service._owned(catalog.get_bucket(tx, name), name, owner_id)
        change(record)
        retire_config_record(tx, record)
        record.config_record = held
        catalog.put_bucket(tx, record)
        return record

    free = functools.partial(service.hot.delete, "seg")
    return await service.commit_or_free(commit, free, location)


async def write_config(service: ObjectService, bucket: BucketRecord) -> dict[str, Any]:
    """Write a bucket's configuration to the hot tier as a record of its own (what recovery
    reads, :func:`bucket_header`); return where it is (:func:`hold`)."""
    now = service.clock.now()
    volume_id = new_volume_id(now)
    hot = service.hot
    header = bucket_header(bucket, now)
    location = await hot.put_small(volume_id, settings_payload(bucket), header)
    return hold(volume_id, hot.layout.name, location, now, header["seq"])
