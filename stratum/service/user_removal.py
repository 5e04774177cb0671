"""Removing a user, and what becomes of its buckets (``stratum user remove``).

A user who owns buckets is not removed silently: that would leave buckets nobody can reach.
The caller chooses:

- ``to``: the buckets (and the uploads in progress in them) go to another user, root
  included, in the transaction that removes the user; then the object records, every version
  and delete marker included, page by page, take the new owner's id, in their owner field and
  in their ACL (its owner and its grants to the old id). An interruption there leaves the
  rest naming the old id: the heir reaches them as the bucket's owner, except where the
  bucket's ACLs are on and an object's own ACL decides.
- ``delete_buckets``: the buckets' objects, every version and delete marker of them, are
  deleted page by page (:data:`PAGE` versions a transaction, so the server's requests are
  never held up long, whatever the bucket's size), their volumes (and the records of later
  changes to them) queued for the garbage collector, which frees the data on its next pass.
  The last transaction removes the buckets (their configuration records queued likewise),
  their unfinished uploads and the user at once, and only when every bucket is empty: a user
  still writing gets another round, and after :data:`ROUNDS` an error. A version under Object
  Lock (a legal hold or a retention in force) is never deleted: a user whose buckets hold one
  is not removed this way (:class:`LockedVersions`, before anything is deleted). An
  interruption leaves the user and its (fewer) objects: run the command again.

Runs beside a running server (each transaction is LMDB's; the server reads metadata per
request). Blocking.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from stratum.meta import catalog, uploads, versions
from stratum.meta.records import BucketRecord, ObjectRecord, UserRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import every_version
from stratum.service import errors, versioning
from stratum.service.users import UserDirectory
from stratum.util.clock import Clock, SystemClock

PAGE = 1000
ROUNDS = 3


class NoSuchUser(LookupError):
    def __init__(self, access_key: str) -> None:
        super().__init__(f"no user {access_key}")
        self.access_key = access_key


class UserOwnsBuckets(Exception):
    def __init__(self, access_key: str, buckets: list[str]) -> None:
        shown = ", ".join(buckets[:10]) + (f" and {len(buckets) - 10} more" if buckets[10:] else "")
        super().__init__(
            f"user {access_key} owns {len(buckets)} bucket(s): {shown}. Give them to another "
            "user with --to ACCESS_KEY, or delete them and their objects with --delete-buckets"
        )
        self.buckets = buckets


class StillWriting(RuntimeError):
    """The user's buckets filled again as fast as they were emptied: nothing was removed but
    objects; the caller may try again."""


class LockedVersions(ValueError):
    """A bucket to delete holds versions that Object Lock keeps (a ValueError: the command
    line and the admin API refuse it as a request that cannot be done)."""

    def __init__(self, bucket: str, key: str, why: str) -> None:
        super().__init__(
            f"bucket {bucket} holds versions under Object Lock (version of {key}: {why}): they "
            "cannot be deleted before their retention ends; give the buckets to another user "
            "with --to ACCESS_KEY instead"
        )
        self.bucket = bucket


@dataclass
class Removal:
    access_key: str
    buckets: list[str] = field(default_factory=list)  # handed over or deleted
    heir: str = ""  # the access key the buckets went to
    # object records that took the heir's id, or versions (delete markers too) deleted
    objects: int = 0


def remove_user(
    users: UserDirectory,
    access_key: str,
    *,
    to: str = "",
    delete_buckets: bool = False,
    page: int = PAGE,
    clock: Clock | None = None,
) -> Removal:
    """Remove the user with ``access_key`` (see the module's docstring); ``clock`` judges
    Object Lock retention.

    Raises :class:`NoSuchUser`, :class:`UserOwnsBuckets` (neither ``to`` nor
    ``delete_buckets`` given), :class:`LockedVersions`, ``ValueError`` for a request that
    makes no sense.
    """
    if to and delete_buckets:
        raise ValueError("either hand the buckets over (--to) or delete them, not both")
    if access_key == users.root.access_key:
        raise ValueError("the root user cannot be removed")
    user = users.meta.read(lambda tx: catalog.get_user(tx, access_key))
    if user is None:
        raise NoSuchUser(access_key)
    if to:
        return _hand_over(users, user, to, page)
    if delete_buckets:
        return _delete_buckets(users.meta, user, page, clock or SystemClock())

    def remove(tx: Tx) -> None:
        _still(tx, user)
        owned = _owned(tx, user.canonical_id)
        if owned:
            raise UserOwnsBuckets(access_key, [b.name for b in owned])
        catalog.delete_user(tx, access_key)

    users.meta.write_sync(remove)
    return Removal(access_key)


def _owned(tx: Tx, owner_id: str) -> list[BucketRecord]:
    return [b for b in catalog.list_buckets(tx) if b.owner_id == owner_id]


def _still(tx: Tx, user: UserRecord) -> None:
    """The user is still there, and still the same user (not removed and added again)."""
    current = catalog.get_user(tx, user.access_key)
    if current is None or current.canonical_id != user.canonical_id:
        raise NoSuchUser(user.access_key)


def _hand_over(users: UserDirectory, user: UserRecord, to: str, page: int) -> Removal:
    if to == user.access_key:
        raise ValueError("a user cannot hand its buckets to itself")
    root = users.root
    heir_record = None
    if to != root.access_key:
        heir_record = users.meta.read(lambda tx: catalog.get_user(tx, to))
        if heir_record is None:
            raise NoSuchUser(to)
    heir_id = root.canonical_id if heir_record is None else heir_record.canonical_id
    old_id = user.canonical_id

    def hand(tx: Tx) -> list[str]:
        _still(tx, user)
        if heir_record is not None:
            _still(tx, heir_record)
        owned = _owned(tx, old_id)
        for bucket in owned:
            catalog.put_bucket(tx, replace(bucket, owner_id=heir_id))
            for upload in uploads.uploads_in_bucket(tx, bucket.name):
                if upload.owner_id == old_id:
                    uploads.put_upload(tx, replace(upload, owner_id=heir_id))
        catalog.delete_user(tx, user.access_key)
        return [b.name for b in owned]

    names = users.meta.write_sync(hand)

    def reown(bucket: str, after: str, tx: Tx) -> tuple[int, str | None]:
        listed = catalog.list_objects(tx, bucket, start_after=after, max_keys=page)
        changed = 0
        for record in listed.objects:
            if _reowned(record, old_id, heir_id):
                catalog.put_object(tx, bucket, record)
                changed += 1
        return changed, listed.next_marker

    def reown_versions(bucket: str, after: str, tx: Tx) -> tuple[int, str | None]:
        """A page of the bucket's ``versions`` entries (noncurrent ones and delete markers
        included), from the raw key after ``after`` (hex)."""
        base = versions.bucket_base(bucket)
        cursor = tx.cursor("versions")
        if not cursor.set_range(bytes.fromhex(after) + b"\x00" if after else base):
            return 0, None
        changed = 0
        for seen, (dbkey, raw) in enumerate(cursor, start=1):
            if not bytes(dbkey).startswith(base):
                return changed, None
            record = ObjectRecord.decode(bytes(raw))
            if _reowned(record, old_id, heir_id):
                tx.put("versions", bytes(dbkey), record.encode())
                changed += 1
            if seen >= page:
                return changed, bytes(dbkey).hex()
        return changed, None

    objects = sum(_pages(users.meta, name, reown) for name in names)
    objects += sum(_pages(users.meta, name, reown_versions) for name in names)
    return Removal(user.access_key, names, heir=to, objects=objects)


def _reowned(record: ObjectRecord, old_id: str, heir_id: str) -> bool:
    """Give the removed user's place in a version to the heir: its owner, and its ACL's owner
    and grants (else the heir, not the owner of the old versions, could not read them where
    the object ACL decides). Whether anything changed."""
    changed = False
    if record.owner_id == old_id:
        record.owner_id, changed = heir_id, True
    acl = record.acl
    if acl and (acl.get("owner") == old_id or any(g[1] == old_id for g in acl.get("grants", []))):
        record.acl = {
            **acl,
            "owner": heir_id if acl.get("owner") == old_id else acl.get("owner"),
            "grants": [
                [kind, heir_id if kind == "id" and value == old_id else value, permission]
                for kind, value, permission in acl.get("grants", [])
            ],
        }
        changed = True
    return changed


def _pages(
    meta: MetaStore, bucket: str, act: Callable[[str, str, Tx], tuple[int, str | None]]
) -> int:
    """Run ``act`` on one page after another (a transaction each) until it names no next
    key; the sum of its counts."""
    total, after = 0, ""
    while True:
        count, marker = meta.write_sync(functools.partial(act, bucket, after))
        total += count
        if marker is None:
            return total
        after = marker


def _refuse_locked(tx: Tx, buckets: list[str], now: float) -> None:
    """Raise :class:`LockedVersions` if a version in ``buckets`` may not be removed at
    ``now`` (read before anything is deleted; each removal checks again)."""
    for name in buckets:
        for version in every_version(tx, name):
            why = versioning.removal_refused(version, now)
            if why is not None:
                raise LockedVersions(name, version.key, why)


def _delete_buckets(meta: MetaStore, user: UserRecord, page: int, clock: Clock) -> Removal:
    def delete_page(bucket: str, _after: str, tx: Tx) -> tuple[int, str | None]:
        record = catalog.get_bucket(tx, bucket)
        if record is None:
            return 0, None
        removed: list[ObjectRecord] = []
        for version in list(itertools.islice(every_version(tx, bucket), page)):
            try:
                gone = versioning.remove_version(
                    tx, record, version.key, version.version_id, clock.now()
                )
            except errors.AccessDenied as refused:  # locked since the check
                raise LockedVersions(bucket, version.key, str(refused)) from None
            removed.extend([gone] if gone is not None else [])
        versioning.retire(tx, removed)
        # from the start again, until a page removes nothing (then ``finish`` judges)
        return len(removed), "" if removed else None

    def finish(tx: Tx) -> list[str] | None:
        _still(tx, user)
        owned = _owned(tx, user.canonical_id)
        if not all(catalog.bucket_is_empty(tx, b.name) for b in owned):
            return None  # written to meanwhile: another round
        for bucket in owned:
            for upload in uploads.uploads_in_bucket(tx, bucket.name):
                for part in uploads.delete_upload(tx, bucket.name, upload.upload_id):
                    catalog.retire_volume(tx, part.volume_id)
            versioning.retire_config_record(tx, bucket)
            catalog.delete_bucket(tx, bucket.name)
        catalog.delete_user(tx, user.access_key)
        return [b.name for b in owned]

    def owned_unlocked(tx: Tx) -> list[str]:
        names = [b.name for b in _owned(tx, user.canonical_id)]
        _refuse_locked(tx, names, clock.now())
        return names

    deleted = 0
    for _round in range(ROUNDS):
        names = meta.read(owned_unlocked)
        deleted += sum(_pages(meta, name, delete_page) for name in names)
        done = meta.write_sync(finish)
        if done is not None:
            return Removal(user.access_key, done, objects=deleted)
    raise StillWriting(
        f"user {user.access_key} kept writing to its buckets while they were emptied "
        f"({deleted} objects deleted so far): try again"
    )
