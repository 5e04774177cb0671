"""Versions of keys: every version of a key, newest first, and where its null version is.

Order
    Each version has 16 *order* bytes: 8 bytes of hybrid logical time (microseconds since
    the epoch, big-endian; :class:`OrderClock` gives ``max(previous + 1, now)`` per process,
    and above the newest version of the key when asked), 4 bytes of site id (0 until
    replication gives sites ids) and 4 random bytes. The version with the greatest order is
    the key's current one. A version id is the 32 lowercase hex digits of its order, so a
    GET by version id is one LMDB lookup; the null version keeps the order of its write in
    its record (``ObjectRecord.order``) and answers to the id ``null``. Records written
    before versioning have no order: theirs is their ``last_modified`` in microseconds
    followed by 8 zero bytes (:func:`order_of`).

Key part
    The key's UTF-8 bytes with ``00`` written ``01 01`` and ``01`` written ``01 02``, so
    that no key part holds a NUL and byte order is kept (a key part followed by NUL sorts
    before every longer key part it begins). A key part of :data:`LONG_PART` bytes or more
    is cut to its first :data:`LONG_PART` bytes followed by the 16-byte BLAKE2b of the whole
    key, keeping the LMDB key under its 511 bytes (bucket names have at most 63). Among long
    keys that share their first :data:`LONG_PART` key-part bytes, order then follows the hash,
    not the key: the one place where ListObjectVersions departs from S3's byte order.

Databases (format 1)::

    versions  bucket NUL part(key) NUL ~order (16 bytes, each bit inverted: newest first)
              -> ObjectRecord (0x01 + JSON, stratum.meta.records), delete markers included
    nullver   bucket NUL part(key) -> 0x01 + order (16 bytes) of the key's null version

A key of a bucket whose versioning was never set has no entries here: its one object, in
``objects``, is its null version. A key of a bucket whose versioning was ever set enters
``versions`` with its first write or delete since (:func:`write`): its pre-versioning object
is copied in first. From then on, ``versions`` holds every version of the key, the current
one included, and (:func:`settle_current`) ``objects`` holds the newest version when it is
an object and nothing when it is a delete marker; ``nullver`` holds the null version's order
while there is one. ``tests/unit/test_versions.py`` checks these against a model.

Every function takes a transaction (:class:`~stratum.meta.store.Tx`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from stratum.meta import catalog
from stratum.meta.records import RECORD_VERSION, ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.util.prng import process_random

ORDER_BYTES = 16
NULL = "null"
LONG_PART = 400
SEP = b"\x00"
_NEXT_PART = b"\x01"  # seek target just past every entry of a key part + SEP
_INVERT = (1 << (8 * ORDER_BYTES)) - 1
_HEX = frozenset("0123456789abcdef")


class InvalidVersionId(ValueError):
    """A version id that no version of this store can have (S3: InvalidArgument)."""


# -- orders and version ids ----------------------------------------------------------------


def legacy_order(last_modified: float) -> bytes:
    return int(last_modified * 1_000_000).to_bytes(8, "big") + bytes(8)


def order_of(record: ObjectRecord) -> bytes:
    return bytes.fromhex(record.order) if record.order else legacy_order(record.last_modified)


def parse_version_id(version_id: str) -> bytes | None:
    """The order a version id names; None for ``null``. Raises :class:`InvalidVersionId`."""
    if version_id == NULL:
        return None
    if len(version_id) != 2 * ORDER_BYTES or not _HEX.issuperset(version_id):
        raise InvalidVersionId(version_id)
    return bytes.fromhex(version_id)


def order_time(order: bytes) -> float:
    """The write time an order encodes (seconds since the epoch)."""
    return int.from_bytes(order[:8], "big") / 1_000_000


class OrderClock:
    """Orders for new versions: hybrid logical time, strictly increasing in this process."""

    def __init__(self, site: int = 0) -> None:
        self._site = site.to_bytes(4, "big")
        self._last = 0
        self._lock = threading.Lock()
        self._random = process_random()

    def next(self, now: float, above: bytes | None = None) -> bytes:
        """An order after every earlier one of this process and, if given, after ``above``
        (the newest version of the key: a clock set back never writes under it)."""
        floor = int.from_bytes(above[:8], "big") + 1 if above else 0
        with self._lock:
            self._last = max(self._last + 1, int(now * 1_000_000), floor)
            micros = self._last
        return micros.to_bytes(8, "big") + self._site + self._random.getrandbits(32).to_bytes(4)


# -- keys -----------------------------------------------------------------------------------


def stuff(raw: bytes) -> bytes:
    """``raw`` with NUL and 01 escaped (see Key part above): a prefix of a key stays a prefix
    of its key part, as long as both are shorter than :data:`LONG_PART`."""
    if b"\x00" in raw or b"\x01" in raw:
        return raw.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return raw


def key_part(key: str) -> bytes:
    raw = key.encode("utf-8", "surrogateescape")
    part = stuff(raw)
    if len(part) >= LONG_PART:
        part = part[:LONG_PART] + hashlib.blake2b(raw, digest_size=16).digest()
    return part


def unstuff(part: bytes) -> bytes | None:
    """The key bytes of a short key part; None for a long one (only its record knows)."""
    if len(part) >= LONG_PART:
        return None
    if b"\x01" in part:
        return part.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")
    return part


def bucket_base(bucket: str) -> bytes:
    return bucket.encode("utf-8", "surrogateescape") + SEP


def group(bucket: str, key: str) -> bytes:
    """The LMDB key prefix every version of ``key`` shares."""
    return bucket_base(bucket) + key_part(key) + SEP


def invert(order: bytes) -> bytes:
    return (int.from_bytes(order, "big") ^ _INVERT).to_bytes(ORDER_BYTES, "big")


def version_key(bucket: str, key: str, order: bytes) -> bytes:
    return group(bucket, key) + invert(order)


def _null_key(bucket: str, key: str) -> bytes:
    return bucket_base(bucket) + key_part(key)


# -- reading --------------------------------------------------------------------------------


def get(tx: Tx, bucket: str, key: str, order: bytes) -> ObjectRecord | None:
    raw = tx.get("versions", version_key(bucket, key, order))
    if raw is None:
        return None
    record = ObjectRecord.decode(raw)
    return record if record.key == key else None  # a long key's hash collision: not ours


def newest_raw(tx: Tx, bucket: str, key: str) -> tuple[bytes, bytes] | None:
    """(order, raw record) of the key's newest version in ``versions``, or None."""
    prefix = group(bucket, key)
    cur = tx.cursor("versions")
    if not cur.set_range(prefix):
        return None
    dbkey = cur.key()
    if not dbkey.startswith(prefix):
        return None
    return invert(dbkey[len(prefix) :]), cur.value()


def has_versions(tx: Tx, bucket: str, key: str) -> bool:
    return newest_raw(tx, bucket, key) is not None


def newest(tx: Tx, bucket: str, key: str) -> ObjectRecord | None:
    entry = newest_raw(tx, bucket, key)
    return None if entry is None else ObjectRecord.decode(entry[1])


def newest_order(tx: Tx, bucket: str, key: str) -> bytes | None:
    """The order of the key's newest version, wherever it is kept; None if it has none."""
    entry = newest_raw(tx, bucket, key)
    if entry is not None:
        return entry[0]
    current = catalog.get_object(tx, bucket, key)
    return None if current is None else order_of(current)


def null_order(tx: Tx, bucket: str, key: str) -> bytes | None:
    raw = tx.get("nullver", _null_key(bucket, key))
    if raw is None or raw[:1] != bytes([RECORD_VERSION]):
        return None
    return raw[1 : 1 + ORDER_BYTES]


def null_version(tx: Tx, bucket: str, key: str) -> ObjectRecord | None:
    """The key's null version, current or not, object or delete marker."""
    order = null_order(tx, bucket, key)
    if order is not None:
        return get(tx, bucket, key, order)
    if has_versions(tx, bucket, key):
        return None
    current = catalog.get_object(tx, bucket, key)
    return current if current is not None and current.version_id == NULL else None


def find(tx: Tx, bucket: str, key: str, version_id: str) -> ObjectRecord | None:
    """The version ``version_id`` (or ``null``) of ``key``; raises :class:`InvalidVersionId`."""
    order = parse_version_id(version_id)
    if order is None:
        return null_version(tx, bucket, key)
    return get(tx, bucket, key, order)


def history(tx: Tx, bucket: str, key: str) -> Iterator[ObjectRecord]:
    """Every version of ``key``, newest first (the pre-versioning object if it has none)."""
    prefix = group(bucket, key)
    cur = tx.cursor("versions")
    found = False
    if cur.set_range(prefix):
        for dbkey, raw in cur:
            if not dbkey.startswith(prefix):
                break
            record = ObjectRecord.decode(raw)
            if record.key == key:
                found = True
                yield record
    if not found:
        current = catalog.get_object(tx, bucket, key)
        if current is not None:
            yield current


# -- writing --------------------------------------------------------------------------------


def add(tx: Tx, bucket: str, record: ObjectRecord) -> None:
    """Store a version (one without an order gets its legacy one); a null one becomes the
    null version."""
    order = order_of(record)
    record.order = order.hex()
    tx.put("versions", version_key(bucket, record.key, order), record.encode())
    if record.version_id == NULL:
        tx.put("nullver", _null_key(bucket, record.key), bytes([RECORD_VERSION]) + order)


def remove(tx: Tx, bucket: str, record: ObjectRecord) -> bool:
    """Forget a version (the caller settles the current one and its volume)."""
    gone = tx.delete("versions", version_key(bucket, record.key, order_of(record)))
    if gone and record.version_id == NULL:
        tx.delete("nullver", _null_key(bucket, record.key))
    return gone


def _enter(tx: Tx, bucket: str, current: ObjectRecord) -> None:
    """Before the first versioned write or delete of a key: its pre-versioning object (the
    null version, in ``objects`` only) becomes its first entry in ``versions``."""
    current.order = order_of(current).hex()
    current.version_id = NULL
    add(tx, bucket, current)


def write(tx: Tx, bucket: str, record: ObjectRecord, replaces: ObjectRecord | None) -> None:
    """Add a new version (an object or a delete marker, its ``order`` set), first removing
    ``replaces`` (the null version a null one replaces, older than it), and make it current
    if it is the newest: what every versioned PUT and DELETE does, with one lookup of the
    key's newest version and one encoding of the record for both databases."""
    key = record.key
    prefix = group(bucket, key)
    cur = tx.cursor("versions")
    newest: bytes | None = None
    if cur.set_range(prefix) and cur.key().startswith(prefix):
        newest = invert(cur.key()[len(prefix) :])
    else:  # the key's first versioned write: its pre-versioning object comes in first
        current = catalog.get_object(tx, bucket, key)
        if current is not None:
            _enter(tx, bucket, current)
            newest = order_of(current)
    if replaces is not None:
        remove(tx, bucket, replaces)
    order = bytes.fromhex(record.order)
    encoded = record.encode()
    tx.put("versions", prefix + invert(order), encoded)
    if record.version_id == NULL:
        tx.put("nullver", prefix[:-1], bytes([RECORD_VERSION]) + order)
    # Nothing older than the newest can change which version is current: a replaced null
    # version is older than the one replacing it.
    if newest is None or order > newest:
        if record.delete_marker:
            catalog.delete_object(tx, bucket, key)
        else:
            catalog.set_object(tx, bucket, record, encoded)


def settle_current(tx: Tx, bucket: str, key: str, written: ObjectRecord | None = None) -> None:
    """Make ``objects`` hold the key's newest version if it is an object, else nothing.

    ``written``: a version just added, whose record need not be decoded again if newest."""
    entry = newest_raw(tx, bucket, key)
    if entry is None:
        catalog.delete_object(tx, bucket, key)
        return
    order, raw = entry
    if written is not None and written.order == order.hex():
        record = written
    else:
        record = ObjectRecord.decode(raw)
    if record.delete_marker:
        catalog.delete_object(tx, bucket, key)
    else:
        catalog.put_object(tx, bucket, record)


def bucket_has_versions(tx: Tx, bucket: str) -> bool:
    base = bucket_base(bucket)
    cur = tx.cursor("versions")
    return bool(cur.set_range(base)) and cur.key().startswith(base)


def version_of_volume(tx: Tx, volume: VolumeRecord) -> ObjectRecord | None:
    """The object version whose bytes ``volume`` holds, current or not; None for a part of
    an upload, a delete marker's record, or a volume no version points at (yet)."""
    if not volume.key:
        return None
    if volume.order:
        record = get(tx, volume.bucket, volume.key, bytes.fromhex(volume.order))
        if record is not None and record.volume_id == volume.volume_id:
            return None if record.delete_marker else record
    current = catalog.get_object(tx, volume.bucket, volume.key)
    return current if current is not None and current.volume_id == volume.volume_id else None


def superseded_at(tx: Tx, bucket: str, key: str, order: bytes) -> float | None:
    """When the version of ``order`` stopped being current (the write time of the version
    right after it), or None while it is the key's newest."""
    prefix = group(bucket, key)
    cur = tx.cursor("versions")
    if not cur.set_range(prefix + invert(order)) or not cur.prev():
        return None
    dbkey = cur.key()
    if not dbkey.startswith(prefix):
        return None
    return order_time(invert(dbkey[len(prefix) :]))
