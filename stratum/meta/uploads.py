"""Multipart uploads and their parts in LMDB.

Databases (format 1)::

    uploads  bucket NUL upload id -> UploadRecord (stratum.meta.records)
    upkeys   bucket NUL part(key) NUL upload id -> b"" (the uploads of a bucket by key)
    parts    upload id + part number (4 bytes, big-endian) -> PartRecord

Upload ids are time-ordered (:func:`stratum.service.ids.new_volume_id`), so ``uploads`` holds
a bucket's uploads in initiation order and ``upkeys`` holds them by key, then initiation: the
order ListMultipartUploads answers in, walked a page at a time (:func:`list_uploads`).
``part(key)`` is :func:`stratum.meta.versions.key_part` (NUL-free, order-keeping, cut with a
hash past 400 bytes: keys sharing their first 400 bytes list in the hash's order, as in
ListObjectVersions). ``upkeys`` came after ``uploads``: :func:`index_uploads` fills it at
start-up when its entry count is not ``uploads``' (a store from before it, or restored from
a backup without it).

``parts`` is keyed so that one cursor walk returns an upload's parts in order.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from stratum.meta.catalog import past_prefix
from stratum.meta.records import PartRecord, UploadRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.versions import LONG_PART, key_part, stuff

SEP = b"\x00"
_PAST_KEY = b"\x01"  # after bucket NUL part(key): past every upload of that key (parts hold no NUL)


def _upload_key(bucket: str, upload_id: str) -> bytes:
    return bucket.encode() + SEP + upload_id.encode()


def _part_key(upload_id: str, part_number: int) -> bytes:
    return upload_id.encode() + struct.pack(">I", part_number)


def get_upload(tx: Tx, bucket: str, upload_id: str) -> UploadRecord | None:
    raw = tx.get("uploads", _upload_key(bucket, upload_id))
    return None if raw is None else UploadRecord.decode(raw)


def _index_key(bucket: str, key: str, upload_id: str) -> bytes:
    return _utf8(bucket) + SEP + key_part(key) + SEP + upload_id.encode()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def put_upload(tx: Tx, record: UploadRecord) -> None:
    """Store a new upload, or its record again (its key never changes)."""
    tx.put("uploads", _upload_key(record.bucket, record.upload_id), record.encode())
    tx.put("upkeys", _index_key(record.bucket, record.key, record.upload_id), b"")


def delete_upload(tx: Tx, bucket: str, upload_id: str) -> list[PartRecord]:
    """Remove the upload and its part records; return the parts (their volumes need freeing)."""
    parts = list_parts(tx, upload_id)
    for part in parts:
        tx.delete("parts", _part_key(upload_id, part.part_number))
    record = get_upload(tx, bucket, upload_id)
    if record is not None:
        tx.delete("upkeys", _index_key(bucket, record.key, upload_id))
    tx.delete("uploads", _upload_key(bucket, upload_id))
    return parts


def index_uploads(tx: Tx) -> bool:
    """Rebuild ``upkeys`` from ``uploads`` if their entry counts differ; say whether it did.
    (Uploads in progress are few: one transaction holds them.)"""
    if tx.entries("upkeys") == tx.entries("uploads"):
        return False
    tx.drop("upkeys")
    for _k, value in tx.cursor("uploads"):
        record = UploadRecord.decode(bytes(value))
        tx.put("upkeys", _index_key(record.bucket, record.key, record.upload_id), b"")
    return True


def uploads_in_bucket(tx: Tx, bucket: str) -> list[UploadRecord]:
    base = bucket.encode() + SEP
    cur = tx.cursor("uploads")
    out: list[UploadRecord] = []
    if not cur.set_range(base):
        return out
    for key, value in cur:
        if not bytes(key).startswith(base):
            break
        out.append(UploadRecord.decode(bytes(value)))
    return out


def each_upload(meta: MetaStore, page: int = 1000) -> Iterator[UploadRecord]:
    """Every upload of every bucket, read ``page`` at a time in short read transactions
    (blocking: run it off the event loop when there may be many)."""
    after = b""
    while True:
        batch = meta.read(functools.partial(_upload_page, after=after, limit=page))
        for _k, record in batch:
            yield record
        if len(batch) < page:
            return
        after = batch[-1][0]


def _upload_page(tx: Tx, after: bytes, limit: int) -> list[tuple[bytes, UploadRecord]]:
    cur = tx.cursor("uploads")
    out: list[tuple[bytes, UploadRecord]] = []
    if not cur.set_range(after + SEP if after else b""):
        return out
    for key, value in cur:
        out.append((bytes(key), UploadRecord.decode(bytes(value))))
        if len(out) >= limit:
            break
    return out


def get_part(tx: Tx, upload_id: str, part_number: int) -> PartRecord | None:
    raw = tx.get("parts", _part_key(upload_id, part_number))
    return None if raw is None else PartRecord.decode(raw)


def put_part(tx: Tx, upload_id: str, record: PartRecord) -> PartRecord | None:
    """Store a part; return the part it replaced, if any."""
    key = _part_key(upload_id, record.part_number)
    raw = tx.get("parts", key)
    tx.put("parts", key, record.encode())
    return None if raw is None else PartRecord.decode(raw)


def list_parts(
    tx: Tx, upload_id: str, after: int = 0, limit: int | None = None
) -> list[PartRecord]:
    base = upload_id.encode()
    cur = tx.cursor("parts")
    out: list[PartRecord] = []
    if not cur.set_range(_part_key(upload_id, after + 1)):
        return out
    for key, value in cur:
        key = bytes(key)
        if not key.startswith(base) or len(key) != len(base) + 4:
            break
        out.append(PartRecord.decode(bytes(value)))
        if limit is not None and len(out) >= limit:
            break
    return out


# -- listing by key ---------------------------------------------------------------------


@dataclass
class UploadsPage:
    """One page of ListMultipartUploads: uploads and common prefixes, by key then initiation."""

    uploads: list[UploadRecord] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str | None = None  # when truncated: the last key or prefix returned
    next_upload_id_marker: str | None = None  # ... and the last upload's id, if an upload


def _seek_past_prefix(base: bytes, common: bytes) -> bytes | None:
    """Where the uploads of keys past every key beginning ``common`` start in ``upkeys``;
    None when ``common`` is too long for its key parts to show it (walk over them instead)."""
    stuffed = stuff(common)
    if len(stuffed) >= LONG_PART:
        return None
    return past_prefix(base + stuffed)


def list_uploads(
    tx: Tx,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    upload_id_marker: str = "",
    limit: int = 1000,
) -> UploadsPage:
    """A page of the bucket's uploads after the markers, as S3 defines them: keys after
    ``key_marker``, and uploads of ``key_marker`` itself after ``upload_id_marker`` when one
    is given. Walks ``upkeys`` from the first possible entry and jumps over a whole common
    prefix at once, so a page costs what it returns, not the bucket's number of uploads."""
    page = UploadsPage()
    if limit <= 0:
        return page
    base = _utf8(bucket) + SEP
    pfx, delim = _utf8(prefix), _utf8(delimiter)
    within = base + stuff(pfx)[:LONG_PART]  # every entry of a key under the prefix starts so
    floor = within
    returned_prefix: bytes | None = None  # the common prefix last returned
    if key_marker:
        mark = base + key_part(key_marker)
        start = (
            mark + SEP + upload_id_marker.encode() + SEP if upload_id_marker else mark + _PAST_KEY
        )
        floor = max(within, start)
        marker = _utf8(key_marker)
        cut = marker.find(delim, len(pfx)) if delim and marker.startswith(pfx) else -1
        if cut >= 0:  # resuming at (or inside) a rolled-up prefix: that prefix was returned
            returned_prefix = marker[: cut + len(delim)]
            past = _seek_past_prefix(base, returned_prefix)
            if past is not None:
                floor = max(floor, past)
    cur = tx.cursor("upkeys")
    count = 0
    seek: bytes | None = floor
    while seek is not None:
        if not cur.set_range(seek):
            break
        seek = None
        for dbkey, _value in cur:
            dbkey = bytes(dbkey)
            if not dbkey.startswith(within):
                return page
            upload_id = dbkey.rsplit(SEP, 1)[1].decode()
            record = get_upload(tx, bucket, upload_id)
            if record is None:
                continue
            key = _utf8(record.key)
            if not key.startswith(pfx):  # a long prefix: only the full key can tell
                continue
            cut = key.find(delim, len(pfx)) if delim else -1
            if cut >= 0:
                common = key[: cut + len(delim)]
                if common == returned_prefix:
                    continue  # its keys are walked when the prefix is too long to jump
                if count >= limit:
                    return _truncated(page)
                page.common_prefixes.append(common.decode("utf-8", "surrogateescape"))
                page.next_key_marker, page.next_upload_id_marker = page.common_prefixes[-1], None
                returned_prefix = common
                count += 1
                seek = _seek_past_prefix(base, common)
                if seek is not None:
                    break
                continue
            if count >= limit:
                return _truncated(page)
            page.uploads.append(record)
            page.next_key_marker, page.next_upload_id_marker = record.key, record.upload_id
            count += 1
    page.next_key_marker = page.next_upload_id_marker = None
    return page


def _truncated(page: UploadsPage) -> UploadsPage:
    page.is_truncated = True
    return page
