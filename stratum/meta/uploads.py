"""Multipart uploads and their parts in LMDB.

``uploads`` is keyed by ``bucket NUL upload id``; upload ids are time-ordered, so a
bucket's uploads come out in initiation order. Listing uploads sorts a bucket's
uploads in memory by key: in-progress uploads are few, and this keeps keys of any
length out of LMDB's 511-byte key limit.

``parts`` is keyed by ``upload id`` followed by the part number as 4 bytes big-endian,
so one cursor walk returns an upload's parts in order.
"""

from __future__ import annotations

import struct

from stratum.meta.records import PartRecord, UploadRecord
from stratum.meta.store import Tx

SEP = b"\x00"


def _upload_key(bucket: str, upload_id: str) -> bytes:
    return bucket.encode() + SEP + upload_id.encode()


def _part_key(upload_id: str, part_number: int) -> bytes:
    return upload_id.encode() + struct.pack(">I", part_number)


def get_upload(tx: Tx, bucket: str, upload_id: str) -> UploadRecord | None:
    raw = tx.get("uploads", _upload_key(bucket, upload_id))
    return None if raw is None else UploadRecord.decode(raw)


def put_upload(tx: Tx, record: UploadRecord) -> None:
    tx.put("uploads", _upload_key(record.bucket, record.upload_id), record.encode())


def delete_upload(tx: Tx, bucket: str, upload_id: str) -> list[PartRecord]:
    """Remove the upload and its part records; return the parts (their volumes need freeing)."""
    parts = list_parts(tx, upload_id)
    for part in parts:
        tx.delete("parts", _part_key(upload_id, part.part_number))
    tx.delete("uploads", _upload_key(bucket, upload_id))
    return parts


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


def all_uploads(tx: Tx) -> list[UploadRecord]:
    return [UploadRecord.decode(bytes(v)) for _k, v in tx.cursor("uploads")]


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
