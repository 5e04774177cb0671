"""A version's tags and Object Lock state on the target: with its first push, and after a
change made here.

A new version goes with its tags (``x-amz-tagging``) and the lock headers of a write
(``x-amz-object-lock-*``), its retention only while it is still in force (a target refuses
a retain-until date in the past). A change made later on this site (PutObjectTagging,
DeleteObjectTagging, PutObjectRetention, PutObjectLegalHold, through
:mod:`stratum.service.amend`) is queued as an *amend* entry (:mod:`stratum.replication.queue`)
and sent as PutObjectTagging, and in a bucket with Object Lock PutObjectLegalHold and
PutObjectRetention, naming the version by its id, with what the version holds when the push
reads it: only a target that keeps version ids (a Stratum granting this site replication
rights) has the version under that id, so on any other target the change is not sent. ACL
changes are not sent: the grantees are this site's users.

A retention is sent while it is in force, with the bypass header: a change this site allowed
only with the bypass (GOVERNANCE shortened, or made COMPLIANCE) is then allowed there too,
where the keys may bypass (the bucket's owner); a COMPLIANCE retention is never shortened by
it. A retention removed here stays on the target until its date. The target's own rules stay
in force: a change it refuses is logged and not retried, and its copy stays as locked as it
was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from xml.sax.saxutils import escape

from stratum.meta.records import ObjectRecord
from stratum.replication.client import TargetClient

MODE = "x-amz-object-lock-mode"
UNTIL = "x-amz-object-lock-retain-until-date"
HOLD = "x-amz-object-lock-legal-hold"
BYPASS = "x-amz-bypass-governance-retention"


def until_text(until: float) -> str:
    """A retain-until date as sent: the same text (so the same date on the target) each time."""
    return datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def locked(record: ObjectRecord) -> bool:
    """The version has lock settings (a write of it must carry a digest of its body)."""
    return bool(record.lock_mode or record.legal_hold)


def write_headers(record: ObjectRecord, now: float) -> dict[str, str]:
    """The lock headers of the version's first push."""
    headers: dict[str, str] = {}
    if record.lock_mode and record.lock_until > now:
        headers[MODE] = record.lock_mode
        headers[UNTIL] = until_text(record.lock_until)
    if record.legal_hold:
        headers[HOLD] = "ON"
    return headers


def retention_document(record: ObjectRecord) -> bytes:
    """PutObjectRetention's body: the version's retention."""
    return (
        f"<Retention><Mode>{record.lock_mode}</Mode>"
        f"<RetainUntilDate>{until_text(record.lock_until)}</RetainUntilDate></Retention>"
    ).encode()


def tagging_document(record: ObjectRecord) -> bytes:
    tags = "".join(
        f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>"
        for k, v in sorted(record.tags.items())
    )
    return f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode()


def legal_hold_document(record: ObjectRecord) -> bytes:
    status = "ON" if record.legal_hold else "OFF"
    return f"<LegalHold><Status>{status}</Status></LegalHold>".encode()


async def send_change(
    client: TargetClient, bucket: str, record: ObjectRecord, now: float, *, lockable: bool
) -> bool:
    """Give the target's copy of the version its tags, and its lock state if ``lockable``
    (the bucket has Object Lock), as they are now; False if the target has no version of
    this id (it keeps no ids, or drift repair will send it whole).

    Raises :class:`~stratum.replication.client.PushError` as the target answers."""
    if not await client.head_version(bucket, record.key, record.version_id):
        return False
    version = (bucket, record.key, record.version_id)
    await client.put_version_document(*version, "tagging", tagging_document(record), {})
    if not lockable:
        return True
    await client.put_version_document(*version, "legal-hold", legal_hold_document(record), {})
    if record.lock_mode and record.lock_until > now:
        bypass = {BYPASS: "true"}
        await client.put_version_document(*version, "retention", retention_document(record), bypass)
    return True
