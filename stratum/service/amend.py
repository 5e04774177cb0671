"""Changing a stored version after it was written: its Object Lock retention and legal
hold, its tags, its access control list (the *amendable* fields, :data:`AMENDABLE`), and,
for an object copied onto itself with new metadata, its S3 metadata (:data:`REPLACED`).

Everything else about a version is fixed when it is written and lives in the headers of its
data on disk. The amendable fields change later (PutObjectRetention, PutObjectLegalHold,
PutObjectTagging, PutObjectAcl, and CopyObject onto itself with ``REPLACE``, which changes
the metadata too), so each change is also written to the hot tier as a small segment record
of its own, an *amend record*, before the metadata commit that makes it visible; ``stratum
recover-metadata`` then brings the fields back from the disks alone
(:mod:`stratum.maintenance.recovery_versions`). The version's record says where its newest
amend record is (``ObjectRecord.amend_record``); a change frees the record it supersedes,
and a version removed for good frees its own (:func:`stratum.service.versioning.retire`).

Amend record, format 2 (a segment record: header meta and body)::

    header  {"kind": "amend", "format": 2, "bucket", "key", "owner_id",
             "created": epoch seconds of the change,
             "version_id", "order": the version's id and order (32 hex),
             "seq": changes of this version so far (tells apart two within one clock tick)}
    body    JSON {"fields": {"lock_mode", "lock_until", "legal_hold", "tags", "acl"},
                  "metadata": {"content_type", "user_meta", "headers", "storage_class",
                               "owner_id", "last_modified"}}:
            every amendable field and the version's metadata as the change left them

Format 1 (written before metadata replacements were recorded) has no ``"metadata"``: its
version keeps the metadata of its data's header.

Of a version's amend records the newest (``created``, then ``seq``) is the one in force.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stratum.meta import catalog, versions
from stratum.meta.records import ObjectRecord
from stratum.meta.store import Tx
from stratum.service import errors, versioning
from stratum.service.ids import new_volume_id
from stratum.service.versioning import AT_CREATION as AT_CREATION

if TYPE_CHECKING:
    from stratum.service.objects import ObjectService

AMEND = "amend"  # header "kind" of an amend record
FORMAT = 2
AMENDABLE = ("lock_mode", "lock_until", "legal_hold", "tags", "acl")
#: the metadata CopyObject onto itself replaces; every amend record carries it (format 2)
REPLACED = ("content_type", "user_meta", "headers", "storage_class", "owner_id", "last_modified")
ATTEMPTS = 3  # the version changed between planning and commit: plan again


_DEFAULTS = ObjectRecord(key="", volume_id="", size=0, etag="", last_modified=0.0)


class _Replan(Exception):
    """Another change of the version, or a new current version, came in between."""


def fields_of(record: ObjectRecord) -> dict[str, Any]:
    """The amendable fields of a version (as an amend record's body holds them)."""
    return {name: getattr(record, name) for name in AMENDABLE}


def metadata_of(record: ObjectRecord) -> dict[str, Any]:
    """The metadata a copy onto itself may have replaced (as an amend record's body holds it)."""
    return {name: getattr(record, name) for name in REPLACED}


def payload(record: ObjectRecord) -> bytes:
    body = {"fields": fields_of(record), "metadata": metadata_of(record)}
    return json.dumps(body, sort_keys=True).encode()


def apply_payload(record: ObjectRecord, body: bytes | None) -> bool:
    """Give ``record`` the fields (and, format 2, the metadata) an amend record's body
    holds; False if it holds none."""
    try:
        found = json.loads(body or b"")
        fields = found.get("fields")
    except (ValueError, AttributeError):
        return False
    if not apply_fields(record, fields):
        return False
    _apply(record, found.get("metadata"), REPLACED)
    return True


def apply_fields(record: ObjectRecord, found: object) -> bool:
    """Give ``record`` the amendable fields ``found`` names (an amend record's, or those a
    version's data header carries from its creation); values of the wrong type are left."""
    return _apply(record, found, AMENDABLE)


def _apply(record: ObjectRecord, found: object, names: tuple[str, ...]) -> bool:
    if not isinstance(found, dict):
        return False
    for name in names:
        if name not in found:
            continue
        value, default = found[name], getattr(_DEFAULTS, name)
        if name in _STR_MAPS and not _str_map(value):
            continue  # str to str only
        if isinstance(value, type(default)) or (isinstance(default, float) and _number(value)):
            setattr(record, name, float(value) if isinstance(default, float) else value)
    return True


_STR_MAPS = ("tags", "user_meta", "headers")


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def setting(**values: Any) -> Callable[[ObjectRecord], bool]:
    """A ``change`` for :func:`amend_version` that gives a version these amendable fields,
    each as a whole (a tag set replaces the tag set), and says whether that changed any."""
    unknown = values.keys() - set(AMENDABLE)
    if unknown:
        raise ValueError(f"not amendable: {sorted(unknown)}")

    def change(record: ObjectRecord) -> bool:
        before = fields_of(record)
        for name, value in values.items():
            setattr(record, name, copy.deepcopy(value))
        return fields_of(record) != before

    return change


def _copy(record: ObjectRecord) -> ObjectRecord:
    """A copy whose amendable fields ``change`` may edit in place."""
    return dataclasses.replace(record, tags=dict(record.tags), acl=copy.deepcopy(record.acl))


def header(bucket: str, record: ObjectRecord, now: float) -> dict[str, Any]:
    return {
        "kind": AMEND,
        "format": FORMAT,
        "bucket": bucket,
        "key": record.key,
        "owner_id": record.owner_id,
        "created": now,
        "version_id": record.version_id,
        "order": versions.order_of(record).hex(),
        "seq": int(record.amend_record.get("seq", 0)) + 1,
    }


def store_version(tx: Tx, bucket: str, record: ObjectRecord) -> None:
    """Write a changed version back where it is kept: ``versions`` if its key has versions
    there, and ``objects`` if it is the key's current object."""
    if versions.has_versions(tx, bucket, record.key):
        versions.add(tx, bucket, record)
    current = catalog.get_object(tx, bucket, record.key)
    if current is not None and current.volume_id == record.volume_id:
        catalog.put_object(tx, bucket, record)


async def amend_version(
    service: ObjectService,
    bucket: str,
    key: str,
    version_id: str | None,
    owner_id: str,
    change: Callable[[ObjectRecord], bool],
) -> ObjectRecord:
    """Change the amendable fields of a version (the current one if ``version_id`` is None)
    and return the version as changed.

    ``change`` edits the record it is given in place and says whether anything changed; it
    may raise to refuse (it is called inside the commit too, against the record then
    stored, so a decision such as Object Lock's is taken on what is committed). Raises
    NoSuchBucket, AccessDenied, NoSuchKey, NoSuchVersion or
    :class:`~stratum.service.versioning.DeleteMarkerFound` as a GET of the version would.
    """
    for _attempt in range(ATTEMPTS):
        try:
            return await _attempt_amend(service, (bucket, key, version_id, owner_id), change)
        except _Replan:
            continue
    raise errors.ObjectServiceError("the version kept changing", key=key)


async def _attempt_amend(
    service: ObjectService,
    target: tuple[str, str, str | None, str],
    change: Callable[[ObjectRecord], bool],
) -> ObjectRecord:
    bucket, key, version_id, owner_id = target

    def look(tx: Tx) -> ObjectRecord:
        record = service._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
        return versioning.lookup(tx, record, key, version_id)

    now = service.clock.now()
    stored = service.meta.read(look)
    wanted = _copy(stored)
    if not change(wanted):
        return stored
    hot = service.hot
    volume_id = new_volume_id(now)
    head = header(bucket, wanted, now)
    location = await hot.put_small(volume_id, payload(wanted), head)
    held = versioning.hold(volume_id, hot.layout.name, location, now, head["seq"])

    def commit(tx: Tx) -> ObjectRecord:
        now_stored = look(tx)
        if (
            now_stored.volume_id != stored.volume_id
            or now_stored.amend_record != stored.amend_record
            or metadata_of(now_stored) != metadata_of(stored)  # the payload would be stale
        ):
            raise _Replan
        record = _copy(now_stored)
        change(record)
        if fields_of(record) != fields_of(wanted):
            raise _Replan
        versioning.retire_held(tx, now_stored.amend_record, bucket)
        record.amend_record = held
        store_version(tx, bucket, record)
        service.note_amend(tx, bucket, record)
        return record

    return await service.commit_or_free(commit, functools.partial(hot.delete, "seg"), location)
