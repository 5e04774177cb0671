"""Replica writes: the headers with which one Stratum site writes a version to another.

A PUT, a CompleteMultipartUpload or a DELETE (making a delete marker) that carries

    x-stratum-replica-version-id: <32 hex: the version's id, i.e. its order bytes>
    x-stratum-replica-mtime: <seconds since the epoch, decimal>

writes a replica (:mod:`stratum.service.replicas`): the version keeps its source's id, order
and time, is marked REPLICA and is not replicated again. Only requests signed with an access
key listed in ``[server] replication_keys`` may carry them (else 403 AccessDenied), since
they choose which version is current. The answer is the ordinary one, ``x-amz-version-id``
being the id sent: that is how the sender knows the target kept it (a plain S3 target
ignores these headers and answers an id of its own).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

from stratum.meta.records import ObjectRecord
from stratum.meta.versions import InvalidVersionId, parse_version_id
from stratum.s3.context import ReqCtx
from stratum.s3.errors import S3Error
from stratum.service.deletes import DeleteOutcome
from stratum.service.replicas import Replica, ReplicaExists

VERSION_ID = "x-stratum-replica-version-id"
MTIME = "x-stratum-replica-mtime"
STATUS = "x-amz-replication-status"


def replica_of(ctx: ReqCtx) -> Replica | None:
    """The replica a request writes, or None for an ordinary write."""
    version_id, mtime = ctx.header(VERSION_ID), ctx.header(MTIME)
    if version_id is None and mtime is None:
        return None
    if ctx.user.access_key not in ctx.settings.replication_keys:
        raise S3Error(
            "AccessDenied", "Only credentials granted replication rights may write replicas"
        )
    try:
        order = parse_version_id(version_id or "")
        when = float(mtime or "")
    except (InvalidVersionId, ValueError):
        order, when = None, math.nan
    if order is None or not math.isfinite(when) or when < 0:
        raise S3Error(
            "InvalidArgument",
            f"{VERSION_ID} must be 32 hex digits and {MTIME} seconds since the epoch",
            extra={"ArgumentName": VERSION_ID, "ArgumentValue": version_id or ""},
        )
    return Replica(order, when)


async def written(write: Awaitable[ObjectRecord]) -> ObjectRecord:
    """The version a write made; for a replica already here, that version."""
    try:
        return await write
    except ReplicaExists as exc:
        return exc.record


async def deleted(delete: Awaitable[DeleteOutcome]) -> DeleteOutcome:
    """What a DELETE did; for a replica marker already here, as if it had just made it."""
    try:
        return await delete
    except ReplicaExists as exc:
        return DeleteOutcome(exc.record.key, marker=exc.record)
