"""Finding the object (or version) a request names, with S3's answers about delete markers.

GET, HEAD, the object ACL and tagging reads, and the sources of CopyObject and UploadPartCopy
all name an object by key and optional version id; this module turns what the object service
says about it into what S3 answers (``x-amz-delete-marker``, 404, 405 or 400). The tagging and
ACL writes change the version so found (:func:`amend_viewed`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stratum.meta.records import ObjectRecord
from stratum.meta.versions import NULL
from stratum.s3 import httpsem
from stratum.s3.authorize import source_access
from stratum.s3.context import ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.router import CopySource
from stratum.service import amend, errors
from stratum.service.objects import ObjectView
from stratum.service.versioning import DeleteMarkerFound, NoSuchVersion

VERSION_HEADER = "x-amz-version-id"
MARKER_HEADER = "x-amz-delete-marker"


def written_version(record: ObjectRecord) -> dict[str, str]:
    """A write's answer names the version it made, unless that is a null version."""
    return {} if record.version_id == NULL else {VERSION_HEADER: record.version_id}


def view_object(
    ctx: ReqCtx, bucket: str, key: str, version_id: str | None, method: str
) -> ObjectView:
    """The object (or version) a GET or HEAD and what reads like them names, with the answers
    S3 gives about delete markers and missing keys. An access decision that waits for the
    object is finished here (:meth:`~stratum.s3.authorize.RequestAccess.check_object`)."""
    access = ctx.access
    try:
        view = ctx.service.head_object(bucket, key, ctx.acting_id, version_id)
    except DeleteMarkerFound as found:
        if access is not None:
            access.check_object(key, version_id, None)
        marker = found.marker
        headers = {MARKER_HEADER: "true", VERSION_HEADER: marker.version_id}
        if not found.by_version:
            raise S3Error("NoSuchKey", extra={"Key": key}, headers=headers) from None
        headers["Last-Modified"] = httpsem.http_date(marker.last_modified)
        headers["Allow"] = "DELETE"
        extra = {"Method": method, "ResourceType": "DeleteMarker"}
        raise S3Error("MethodNotAllowed", extra=extra, headers=headers) from None
    except errors.NoSuchKey:
        if access is not None:
            access.check_object(key, version_id, None)
        raise S3Error("NoSuchKey", extra={"Key": key}, headers={MARKER_HEADER: "false"}) from None
    except NoSuchVersion:
        if access is not None:
            access.check_object(key, version_id, None)
        raise
    if access is not None:
        access.check_object(key, version_id, view.record)
    return view


async def amend_viewed(ctx: ReqCtx, view: ObjectView, status: int, **fields: Any) -> web.Response:
    """Give the version a request found (:func:`view_object`) new amendable fields (tags,
    ACL), recorded on disk too (:func:`stratum.service.amend.amend_version`); answer
    ``status``, naming the version in a bucket that has versioning. The version is named
    by its id, so the change goes to the version whose access was checked even if another
    became current meanwhile. Object Lock does not stop it, as on AWS."""
    record = await ctx.service.amend_version(
        ctx.bucket, ctx.key, view.record.version_id, ctx.acting_id, amend.setting(**fields)
    )
    response = web.Response(status=status)
    if view.versioned:
        response.headers[VERSION_HEADER] = record.version_id
    return response


def copy_source_view(ctx: ReqCtx, source: CopySource) -> ObjectView:
    """The object a copy reads: a delete marker is no source (404 if current, else 400)."""
    acting_id = ctx.acting_id
    if ctx.access is not None:  # the source is read on its own bucket owner's authority
        acting_id = source_access(
            ctx.service, ctx.access.facts, source.bucket, source.key, source.version_id
        )
    try:
        return ctx.service.head_object(source.bucket, source.key, acting_id, source.version_id)
    except DeleteMarkerFound as found:
        if not found.by_version:
            raise errors.NoSuchKey(bucket=source.bucket, key=source.key) from None
        raise S3Error(
            "InvalidRequest",
            "The source of a copy request may not specifically refer to a delete marker "
            "by version id.",
        ) from None
