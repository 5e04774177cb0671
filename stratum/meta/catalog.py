"""Buckets, objects, volumes and users in LMDB, and listing in S3's byte order.

Object keys: ``objects`` is keyed by ``bucket NUL key`` so a bucket's keys are one
contiguous range in UTF-8 byte order, the order S3 lists in. LMDB keys are limited
to 511 bytes while S3 keys may have 1,024, so a key of :data:`LONG_KEY` bytes or more
is stored under its first :data:`LONG_KEY` bytes, in a list record (format byte 0x81,
see records.py) of every long key sharing that prefix, sorted. Keys shorter than
that are stored verbatim. Truncation keeps the order: two LMDB keys compare as their
full keys do, and within a list record the keys are sorted, so a cursor walk still
yields keys in S3 order.

Every function here takes a transaction (:class:`~stratum.meta.store.Tx`): callers
run reads with ``MetaStore.read`` and writes through ``MetaStore.write``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from stratum.meta.records import (
    BucketRecord,
    ListedObject,
    ObjectRecord,
    UserRecord,
    VolumeRecord,
    decode_listed,
    decode_objects,
    encode_object_list,
)
from stratum.meta.store import MetaStore, Tx
from stratum.util.pacing import Pacer

LONG_KEY = 440
SEP = b"\x00"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def object_db_key(bucket: str, key: str) -> bytes:
    raw = _utf8(key)
    return _utf8(bucket) + SEP + raw[:LONG_KEY]


# -- buckets ---------------------------------------------------------------------------


def get_bucket(tx: Tx, name: str) -> BucketRecord | None:
    raw = tx.get("buckets", _utf8(name))
    return None if raw is None else BucketRecord.decode(raw)


def put_bucket(tx: Tx, record: BucketRecord) -> None:
    tx.put("buckets", _utf8(record.name), record.encode())


def delete_bucket(tx: Tx, name: str) -> bool:
    return tx.delete("buckets", _utf8(name))


def list_buckets(tx: Tx) -> list[BucketRecord]:
    cur = tx.cursor("buckets")
    return [BucketRecord.decode(bytes(v)) for _k, v in cur]


def buckets_with(tx: Tx, setting: str) -> list[BucketRecord]:
    """The buckets that have ``setting`` (e.g. lifecycle rules), by name; each record is
    decoded and dropped in turn, so only those are held (blocking for many buckets)."""
    found = []
    for _name, value in tx.cursor("buckets"):
        record = BucketRecord.decode(bytes(value))
        if setting in record.settings:
            found.append(record)
    return found


def bucket_page(
    tx: Tx, owner_id: str, *, prefix: str = "", after: str = "", region: str = "", limit: int
) -> tuple[list[BucketRecord], bool]:
    """Up to ``limit`` of the owner's buckets (by name) whose names begin with ``prefix``,
    after ``after``, in ``region`` if given; and whether more follow. Walks the names from
    the first possible one, holding only the page."""
    pfx = _utf8(prefix)
    start = max(pfx, _utf8(after) + SEP) if after else pfx
    cur = tx.cursor("buckets")
    found: list[BucketRecord] = []
    if not cur.set_range(start):
        return found, False
    for name, value in cur:
        if not bytes(name).startswith(pfx):
            break
        record = BucketRecord.decode(bytes(value))
        if record.owner_id != owner_id or (region and record.region != region):
            continue
        if len(found) >= limit:
            return found, True
        found.append(record)
    return found, False


def bucket_is_empty(tx: Tx, name: str) -> bool:
    """No object and no version (noncurrent versions and delete markers count, as in S3)."""
    base = _utf8(name) + SEP
    for db in ("objects", "versions"):
        cur = tx.cursor(db)
        if cur.set_range(base) and bytes(cur.key()).startswith(base):
            return False
    return True


# -- objects ---------------------------------------------------------------------------


def get_object(tx: Tx, bucket: str, key: str) -> ObjectRecord | None:
    raw = tx.get("objects", object_db_key(bucket, key))
    if raw is None:
        return None
    for record in decode_objects(raw):
        if record.key == key:
            return record
    return None


def put_object(tx: Tx, bucket: str, record: ObjectRecord) -> ObjectRecord | None:
    """Store ``record``; return the record it replaced, if any."""
    dbkey = object_db_key(bucket, record.key)
    if len(_utf8(record.key)) < LONG_KEY:
        raw = tx.get("objects", dbkey)
        tx.put("objects", dbkey, record.encode())
        return None if raw is None else decode_objects(raw)[0]
    raw = tx.get("objects", dbkey)
    records = [] if raw is None else decode_objects(raw)
    previous = next((r for r in records if r.key == record.key), None)
    records = [r for r in records if r.key != record.key] + [record]
    records.sort(key=lambda r: _utf8(r.key))
    tx.put("objects", dbkey, encode_object_list(records))
    return previous


def set_object(tx: Tx, bucket: str, record: ObjectRecord, encoded: bytes) -> None:
    """:func:`put_object` for a caller that has the record encoded and wants no previous."""
    if len(_utf8(record.key)) < LONG_KEY:
        tx.put("objects", object_db_key(bucket, record.key), encoded)
    else:
        put_object(tx, bucket, record)


def delete_object(tx: Tx, bucket: str, key: str) -> ObjectRecord | None:
    """Remove the key; return the record removed, if any."""
    dbkey = object_db_key(bucket, key)
    raw = tx.get("objects", dbkey)
    if raw is None:
        return None
    records = decode_objects(raw)
    previous = next((r for r in records if r.key == key), None)
    if previous is None:
        return None
    rest = [r for r in records if r.key != key]
    if rest:
        tx.put("objects", dbkey, encode_object_list(rest))
    else:
        tx.delete("objects", dbkey)
    return previous


def has_uploads(tx: Tx, bucket: str) -> bool:
    """Whether multipart uploads are in progress in the bucket (``uploads`` db)."""
    base = _utf8(bucket) + SEP
    cur = tx.cursor("uploads")
    return bool(cur.set_range(base)) and bytes(cur.key()).startswith(base)


# -- volumes, garbage, users -----------------------------------------------------------


def each_volume(
    meta: MetaStore, page: int = 5000, pacer: Pacer | None = None
) -> Iterator[VolumeRecord]:
    """Every volume record (blocking), read ``page`` at a time in short read transactions,
    so that a walk over a large store never holds one open for long (the map can grow).
    With a ``pacer`` the walk pauses after each page as it says (a thread's walk: it sleeps)."""
    after = ""
    # Kept encoded (a few hundred bytes a record) and decoded one at a time: a page of decoded
    # records would be ten times the size (about 5 KiB each).
    while batch := meta.read(functools.partial(volume_page, after=after, limit=page)):
        yield from (VolumeRecord.decode(raw) for _, raw in batch)
        after = batch[-1][0]
        if pacer is not None:
            pacer.pause_blocking()


def get_volume(tx: Tx, volume_id: str) -> VolumeRecord | None:
    raw = tx.get("volumes", volume_id.encode())
    return None if raw is None else VolumeRecord.decode(raw)


def put_volume(tx: Tx, record: VolumeRecord) -> None:
    tx.put("volumes", record.volume_id.encode(), record.encode())


def volume_page(tx: Tx, after: str, limit: int, table: str = "volumes") -> list[tuple[str, bytes]]:
    """(id, encoded record) of up to ``limit`` volumes in id order, from the first id past
    ``after`` ("" = the first): one page of a walk over every volume, so that a walk never
    holds them all. The records are left to the caller to decode (``VolumeRecord.decode``),
    where and when it likes. ``table`` "gc": the garbage queue, by gc key."""
    cur = tx.cursor(table)
    out: list[tuple[str, bytes]] = []
    if not cur.set_range(after.encode() + b"\x00" if after else b""):
        return out
    for key, raw in cur:
        out.append((key.decode(), raw))
        if len(out) >= limit:
            break
    return out


def retire_volume(tx: Tx, volume_id: str) -> None:
    """Move a volume no key points at to the garbage queue (freed after commit)."""
    raw = tx.get("volumes", volume_id.encode())
    if raw is None:
        return
    tx.delete("volumes", volume_id.encode())
    tx.put("gc", volume_id.encode(), raw)


def retire_location(tx: Tx, gc_key: str, record: VolumeRecord) -> None:
    """Queue a copy of a volume's data that nothing reads any more (a tier move's source).

    ``gc_key`` must differ from every volume id (e.g. ``<volume id>.<move id>``).
    """
    tx.put("gc", gc_key.encode(), record.encode())


def pending_garbage(tx: Tx, limit: int = 256, after: str = "") -> list[tuple[str, VolumeRecord]]:
    """(gc key, record) of queued garbage in key order (oldest volume first), from the first
    key past ``after``: a page of the queue."""
    out: list[tuple[str, VolumeRecord]] = []
    cursor = tx.cursor("gc")
    if not cursor.set_range(after.encode()):
        return out
    for k, v in cursor:
        key = bytes(k).decode()
        if key == after:
            continue
        out.append((key, VolumeRecord.decode(bytes(v))))
        if len(out) >= limit:
            break
    return out


def forget_garbage(tx: Tx, gc_key: str) -> bool:
    """Forget a queue entry; False: it was not there (another pass forgot it)."""
    return tx.delete("gc", gc_key.encode())


def get_user(tx: Tx, access_key: str) -> UserRecord | None:
    raw = tx.get("users", access_key.encode())
    return None if raw is None else UserRecord.decode(raw)


def put_user(tx: Tx, record: UserRecord) -> None:
    tx.put("users", record.access_key.encode(), record.encode())


def delete_user(tx: Tx, access_key: str) -> bool:
    return tx.delete("users", access_key.encode())


def list_users(tx: Tx) -> list[UserRecord]:
    return [UserRecord.decode(bytes(v)) for _k, v in tx.cursor("users")]


# -- listing ---------------------------------------------------------------------------


class ListPage:
    """One page of a listing: objects and common prefixes, in S3 order.

    The listed keys' records are kept as read: :attr:`objects` decodes them in full when
    first asked for, :meth:`listed` reads only what a listing shows, which is most of a
    LIST request's cost otherwise (see :func:`~stratum.meta.records.decode_listed`)."""

    def __init__(self) -> None:
        self.common_prefixes: list[str] = []
        self.is_truncated = False
        self.next_marker: str | None = None  # the last key or prefix returned, when truncated
        # a short key's raw record (bytes, copied out of LMDB) or a long key's decoded one
        self.values: list[bytes | ObjectRecord] = []
        self._objects: list[ObjectRecord] | None = None

    @property
    def objects(self) -> list[ObjectRecord]:
        if self._objects is None:
            self._objects = [
                v if isinstance(v, ObjectRecord) else ObjectRecord.decode(v) for v in self.values
            ]
        return self._objects

    def listed(self) -> list[ListedObject]:
        return [
            ListedObject.of(v) if isinstance(v, ObjectRecord) else decode_listed(v)
            for v in self.values
        ]


def past_prefix(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _entries(cur: Any, base: bytes) -> Iterator[tuple[bytes, bytes | ObjectRecord]]:
    """Yield (full key, value) from the cursor position while the keys are the bucket's:
    for a short key its raw record (left to :class:`ListPage` to decode), for a long key each
    record of the list sharing the LMDB key. Keys and values are bytes already (every
    :class:`Tx` is begun with ``buffers=False``)."""
    skip = len(base)
    for dbkey, value in cur:
        if not dbkey.startswith(base):
            return
        part = dbkey[skip:]
        if len(part) < LONG_KEY:
            yield part, value
        else:
            for record in decode_objects(value):
                yield _utf8(record.key), record


def list_objects(
    tx: Tx,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str = "",
    max_keys: int = 1000,
) -> ListPage:
    """List keys strictly after ``start_after``, rolling up at ``delimiter``.

    Walks a cursor from the first possible key and jumps over a whole common prefix
    at once, so a page costs what it returns, not the size of the bucket. No record is
    decoded here (see :class:`ListPage`).
    """
    page = ListPage()
    if max_keys <= 0:
        return page
    base = _utf8(bucket) + SEP
    pfx, delim, after = _utf8(prefix), _utf8(delimiter), _utf8(start_after)
    floor = max(pfx, after)
    if delim and after.startswith(pfx):
        # Resuming inside (or at) a rolled-up prefix: that prefix was already returned.
        cut = after.find(delim, len(pfx))
        if cut >= 0:
            past = past_prefix(after[: cut + len(delim)])
            if past is None:
                return page
            floor = max(floor, past)
    values, prefixes = page.values, page.common_prefixes
    after_pfx = len(pfx)
    cur = tx.cursor("objects")
    count = 0
    last: bytes | None = None
    seek: bytes | None = floor
    while seek is not None:
        if not cur.set_range(base + seek[:LONG_KEY]):
            break
        target, seek = seek, None
        for full, value in _entries(cur, base):
            if full < target or (after and full <= after):
                continue
            if not full.startswith(pfx):
                return _finish(page, last, truncated=False)
            if delim:
                cut = full.find(delim, after_pfx)
                if cut >= 0:
                    common = full[: cut + len(delim)]
                    if count >= max_keys:
                        return _finish(page, last, truncated=True)
                    prefixes.append(common.decode("utf-8", "surrogateescape"))
                    count += 1
                    last = common
                    seek = past_prefix(common)
                    break
            if count >= max_keys:
                return _finish(page, last, truncated=True)
            values.append(value)
            count += 1
            last = full
    return _finish(page, last, truncated=False)


def _finish(page: ListPage, last: bytes | None, *, truncated: bool) -> ListPage:
    page.is_truncated = truncated
    if truncated and last is not None:
        page.next_marker = last.decode("utf-8", "surrogateescape")
    return page
