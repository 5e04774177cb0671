"""Object Lock: a bucket's lock configuration, and retention and legal holds of versions.

A bucket gets Object Lock when it is created with it (or, as AWS allows, later while its
versioning is Enabled); it keeps it, and its versioning stays Enabled, for good. Its
configuration may name a *default retention* (``BucketRecord.lock_default``: a mode and a
number of days or years) that every new version gets unless its write names its own.

Each version has a retention mode (``GOVERNANCE`` or ``COMPLIANCE``) with a retain-until
date, and a legal hold, fixed at its creation (:func:`creation_fields`, also written into
its data's on-disk header) and changed later only through
:func:`stratum.service.amend.amend_version` (so that the disks know the change too).

Whether a version may be removed for good is decided by
:func:`stratum.service.versioning.removal_refused` alone; whether a retention may be
changed, by :func:`retention_change_refused` alone. Both judge on the service's injected
clock. COMPLIANCE is never shortened, weakened or lifted before its date, whoever asks: no
request header, no user, and no ``stratum`` command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.service import errors

if TYPE_CHECKING:
    from stratum.service.objects import ObjectService

GOVERNANCE, COMPLIANCE = "GOVERNANCE", "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
DAY = 86400.0
YEAR_DAYS = 365  # a default retention in years counts 365 days a year
LOCK_FIELDS = ("lock_mode", "lock_until", "legal_hold")


class NotLockable(errors.ObjectServiceError):
    """The bucket has no Object Lock (a lock setting was asked for in it)."""


def default_until(lock_default: Mapping[str, Any], now: float) -> float:
    """The retain-until date a bucket's default retention gives a version written at ``now``."""
    days = lock_default.get("days")
    years = lock_default.get("years")
    if isinstance(days, int) and days > 0:
        return now + days * DAY
    if isinstance(years, int) and years > 0:
        return now + years * YEAR_DAYS * DAY
    return 0.0


def creation_fields(
    requested: Mapping[str, Any], bucket: BucketRecord, now: float
) -> dict[str, Any]:
    """The Object Lock fields a new version gets: those its write asked for (lock mode and
    retain-until, legal hold), else for retention the bucket's default. (Its tags and ACL
    come with the write as fields of their own: ``PutOptions.tags`` and ``.acl``.)

    Raises :class:`NotLockable` when lock settings are asked for in a bucket without
    Object Lock."""
    fields = dict(requested)
    if any(fields.get(name) for name in LOCK_FIELDS) and not bucket.object_lock:
        raise NotLockable("the bucket has no Object Lock configuration", bucket=bucket.name)
    mode = bucket.lock_default.get("mode")
    if bucket.object_lock and not fields.get("lock_mode") and mode in MODES:
        fields["lock_mode"] = mode
        fields["lock_until"] = default_until(bucket.lock_default, now)
    return {k: v for k, v in fields.items() if v}


def retention_change_refused(
    version: ObjectRecord, mode: str, until: float, now: float, *, bypass_governance: bool
) -> str | None:
    """Why the retention of ``version`` may not become ``mode`` until ``until`` (``""`` and 0
    to remove it) at ``now``, or None if it may.

    A retention in force may always be extended in the same mode, and GOVERNANCE made
    COMPLIANCE only with the governance bypass. COMPLIANCE in force is never shortened,
    weakened to GOVERNANCE or removed; GOVERNANCE only with the bypass."""
    if not version.lock_mode or version.lock_until <= now:
        return None  # nothing in force: any retention may be set
    if mode == version.lock_mode and until >= version.lock_until:
        return None
    if version.lock_mode == COMPLIANCE:
        return f"it is under COMPLIANCE retention until {version.lock_until:.0f}"
    if bypass_governance:
        return None
    return "it is under GOVERNANCE retention: changing it needs the governance bypass"


async def set_retention(
    service: ObjectService,
    bucket: str,
    key: str,
    version_id: str | None,
    owner_id: str,
    *,
    mode: str,
    until: float,
    bypass_governance: bool = False,
) -> ObjectRecord:
    """PutObjectRetention: give a version a retention (``""``/0: none), if the one in force
    allows it. Raises :class:`NotLockable` outside Object Lock buckets, AccessDenied when
    refused."""
    lockable(service, bucket, owner_id)

    def change(record: ObjectRecord) -> bool:
        why = retention_change_refused(
            record, mode, until, service.clock.now(), bypass_governance=bypass_governance
        )
        if why is not None:
            raise errors.AccessDenied(f"version {record.version_id} of {key}: {why}")
        changed = (record.lock_mode, record.lock_until) != (mode, until)
        record.lock_mode, record.lock_until = mode, until
        return changed

    return await service.amend_version(bucket, key, version_id, owner_id, change)


async def set_legal_hold(
    service: ObjectService,
    bucket: str,
    key: str,
    version_id: str | None,
    owner_id: str,
    *,
    on: bool,
) -> ObjectRecord:
    """PutObjectLegalHold: a legal hold may be placed and lifted at any time."""
    lockable(service, bucket, owner_id)

    def change(record: ObjectRecord) -> bool:
        changed = record.legal_hold != on
        record.legal_hold = on
        return changed

    return await service.amend_version(bucket, key, version_id, owner_id, change)


def lockable(service: ObjectService, bucket: str, owner_id: str) -> BucketRecord:
    """The owner's bucket, if it has Object Lock; raises :class:`NotLockable` if not."""
    record = service.get_bucket(bucket, owner_id)
    if not record.object_lock:
        raise NotLockable("the bucket has no Object Lock configuration", bucket=bucket)
    return record
