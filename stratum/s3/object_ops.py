"""Object operations: PUT, GET, HEAD, DELETE, DeleteObjects and CopyObject.

In a bucket whose versioning was ever set, responses name versions as S3 does: a write
answers ``x-amz-version-id`` (a null version: none), GET and HEAD show the version read,
and a delete marker in the way is ``x-amz-delete-marker: true`` on a 404 (the current
version) or a 405 (asked for by its id). The object service decides what a write or a
delete does to the key's versions (:mod:`stratum.service.versioning`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Mapping

from aiohttp import web

from stratum.meta.records import ObjectRecord
from stratum.meta.versions import InvalidVersionId, parse_version_id
from stratum.s3 import checksum_ops, checksums, httpsem, lock_ops, replica_ops, xml
from stratum.s3.acl_ops import write_acl
from stratum.s3.body import open_body
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lifecycle_ops import expiration_headers, written_expiration
from stratum.s3.list_ops import STORAGE_CLASS_OF_TIER
from stratum.s3.lookup import (
    MARKER_HEADER,
    VERSION_HEADER,
    copy_source_view,
    view_object,
    written_version,
)
from stratum.s3.tagging_ops import TAGGING_HEADER, copy_tags, tag_count_headers, tags_from_header
from stratum.s3.xml_requests import MAX_DELETE_OBJECTS_BODY, parse_delete_objects
from stratum.service.deletes import DeleteOutcome
from stratum.service.objects import ObjectView, PutOptions

MAX_SINGLE_PUT = 5 << 30
STORAGE_CLASSES = {
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
}
TIER_HEADER = "x-stratum-tier"


def _storage_class(ctx: ReqCtx) -> str:
    return storage_class_named(ctx.header("x-amz-storage-class"))


def storage_class_named(value: str | None) -> str:
    """A write's ``x-amz-storage-class`` (a header, or a form upload's field), validated."""
    if value is None or value == "":
        return ""
    if value not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", extra={"StorageClassRequested": value})
    return value


def write_condition(ctx: ReqCtx) -> Callable[[ObjectRecord | None], None] | None:
    headers = ctx.request.headers
    if "If-None-Match" not in headers and "If-Match" not in headers:
        return None

    def condition(current: ObjectRecord | None) -> None:
        httpsem.evaluate_write_conditions(headers, None if current is None else current.etag)

    return condition


def put_options_from_request(ctx: ReqCtx) -> PutOptions:
    """What a write's headers declare (PUT, CopyObject replacing metadata, a new upload)."""
    headers = ctx.request.headers
    return PutOptions(
        owner_id=ctx.acting_id,
        content_type=headers.get("Content-Type") or "binary/octet-stream",
        user_meta=httpsem.extract_user_metadata(headers),
        headers=httpsem.stored_standard_headers(headers),
        storage_class=_storage_class(ctx),
        tags=tags_from_header(headers.get(TAGGING_HEADER)),
        acl=write_acl(ctx),
        amendable=lock_ops.requested_lock(ctx),
    )


async def put_object(ctx: ReqCtx) -> web.StreamResponse:
    headers = ctx.request.headers
    body = open_body(ctx)
    if body.size is not None and body.size > MAX_SINGLE_PUT:
        raise S3Error(
            "EntityTooLarge",
            extra={"ProposedSize": str(body.size), "MaxSizeAllowed": str(MAX_SINGLE_PUT)},
        )
    md5 = headers.get("Content-MD5")
    base = put_options_from_request(ctx)
    lock_ops.require_digest(ctx, base.amendable)
    condition = write_condition(ctx)
    opts = dataclasses.replace(
        base,
        size_hint=body.size,
        expected_md5=httpsem.parse_content_md5(md5) if md5 is not None else None,
        hashers=body.hashers,
        verify=body.verify,
        condition=condition,
        checksums=body.checksums,  # filled by verify() before the commit reads it
        acl=base.acl,
        replica=replica_ops.replica_of(ctx),
    )
    record = await replica_ops.written(
        ctx.service.put_object(ctx.bucket, ctx.key, body.chunks, opts)
    )
    out = {"ETag": record.etag, **written_version(record)}
    out.update(checksums.response_headers(record.checksums))
    out.update(written_expiration(ctx, record))
    return web.Response(status=200, headers=out)


def _header_value(value: str) -> str:
    """Non-ASCII values go out RFC 2047-encoded, as AWS documents for metadata."""
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        encoded = base64.b64encode(value.encode("utf-8", "surrogateescape")).decode()
        return f"=?UTF-8?B?{encoded}?="
    return value


def object_headers(view: ObjectView, ctx: ReqCtx) -> dict[str, str]:
    record = view.record
    out = {
        "ETag": record.etag,
        "Last-Modified": httpsem.http_date(record.last_modified),
        "Content-Type": record.content_type,
        "Accept-Ranges": "bytes",
        TIER_HEADER: view.volume.tier,
    }
    storage_class = record.storage_class or STORAGE_CLASS_OF_TIER.get(view.volume.tier, "")
    if storage_class and storage_class != "STANDARD":
        out["x-amz-storage-class"] = storage_class
    for name, value in record.headers.items():
        out[name] = _header_value(value)
    for name, value in record.user_meta.items():
        out[f"x-amz-meta-{name}"] = _header_value(value)
    if view.versioned:
        out[VERSION_HEADER] = record.version_id
        out.update(lock_ops.lock_headers(record))
    if record.parts:
        out["x-amz-mp-parts-count"] = str(record.parts)
    out.update(tag_count_headers(record.tags))
    if ctx.endpoint.version_id is None:  # the current version
        out.update(expiration_headers(view.bucket, record))
    out.update(checksum_ops.read_headers(ctx, record, view.volume, ctx.endpoint.part_number))
    if record.replication:
        out[replica_ops.STATUS] = record.replication
    return out


def part_span(view: ObjectView, part: int) -> tuple[int, int]:
    """The byte span of part ``part``; a single-part object is its own part 1."""
    sizes = view.volume.part_sizes or [view.record.size]
    if part > len(sizes):
        raise S3Error("InvalidPartNumber")
    start = sum(sizes[: part - 1])
    return start, start + sizes[part - 1]


def _response_overrides(ctx: ReqCtx) -> dict[str, str]:
    """``response-*`` query parameters as headers; a line break in one would split the
    response, so it is refused rather than left for the HTTP layer to choke on."""
    out: dict[str, str] = {}
    for param, header in httpsem.RESPONSE_OVERRIDES.items():
        value = ctx.params.get(param)
        if value is None:
            continue
        if any(c in value for c in "\r\n\0"):
            raise S3Error(
                "InvalidArgument",
                f"{param} must not contain line breaks or NUL",
                extra={"ArgumentName": param, "ArgumentValue": value},
            )
        out[header] = _header_value(value)
    return out


async def get_object(ctx: ReqCtx) -> web.StreamResponse:
    return await _serve(ctx, send_body=True)


async def head_object(ctx: ReqCtx) -> web.StreamResponse:
    return await _serve(ctx, send_body=False)


async def _serve(ctx: ReqCtx, *, send_body: bool) -> web.StreamResponse:
    method = "GET" if send_body else "HEAD"
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, method)
    record = view.record
    httpsem.evaluate_read_conditions(
        ctx.request.headers, record.etag, record.last_modified, ctx.clock.now()
    )
    headers = object_headers(view, ctx)
    size = record.size
    part = ctx.endpoint.part_number
    if part is not None:
        span: tuple[int, int] | None = part_span(view, part)
        headers["x-amz-mp-parts-count"] = str(max(record.parts, 1))
        if span is not None and span[0] == span[1]:
            span = None  # an empty object's part 1: no "bytes 0--1/0" range, a plain 200
    else:
        span = httpsem.parse_range(ctx.header("Range"), size)
    if span is None:
        status, start, end = 200, 0, size
    else:
        status, (start, end) = 206, span
        headers["Content-Range"] = httpsem.content_range(start, end, size)
        if part is None:
            # The stored checksums cover the whole object, not this range: a client that
            # checks them (boto3 does by default) would reject every partial body. AWS
            # returns no checksum with a range either.
            for name in [h for h in headers if h.startswith("x-amz-checksum-")]:
                del headers[name]
    # HeadObject takes the response-* overrides as GetObject does (AWS API reference).
    headers.update(_response_overrides(ctx))
    response = ctx.start_response(status, headers)
    response.content_length = end - start
    await response.prepare(ctx.request)
    ctx.streaming = True
    if send_body and end > start:
        ctx.service.record_access(view.volume.volume_id)
        async for chunk in ctx.service.read_volume(view.volume, start, end):
            await response.write(chunk)
            ctx.bytes_out += len(chunk)
    await response.write_eof()
    return response


async def delete_object(ctx: ReqCtx) -> web.StreamResponse:
    version_id = ctx.endpoint.version_id
    replica = replica_ops.replica_of(ctx) if version_id is None else None
    outcome = await replica_ops.deleted(
        ctx.service.delete_object(
            ctx.bucket,
            ctx.key,
            ctx.acting_id,
            version_id,
            bypass_governance=lock_ops.bypass_governance(ctx),
            replica=replica,
        )
    )
    headers: dict[str, str] = {}
    if version_id is not None:
        headers[VERSION_HEADER] = version_id
        if outcome.removed is not None and outcome.removed.delete_marker:
            headers[MARKER_HEADER] = "true"
    elif outcome.marker is not None:
        headers[MARKER_HEADER] = "true"
        headers.update(written_version(outcome.marker))
    return web.Response(status=204, headers=headers)


async def delete_objects(ctx: ReqCtx) -> web.StreamResponse:
    document = await read_document(ctx, MAX_DELETE_OBJECTS_BODY, checksums=True)
    md5 = ctx.header("Content-MD5")
    if md5 is not None and httpsem.parse_content_md5(md5) != hashlib.md5(document).digest():
        raise S3Error("BadDigest")
    quiet, requested = parse_delete_objects(document)
    failed: list[xml.DeleteError] = []
    targets: list[tuple[str, str | None]] = []
    for key, version in requested:
        try:
            if version is not None:
                parse_version_id(version)
        except InvalidVersionId:
            failed.append(
                xml.DeleteError(
                    key, "NoSuchVersion", "The specified version does not exist.", version
                )
            )
            continue
        if ctx.access is not None and not ctx.access.allows_key(key, version):
            failed.append(xml.DeleteError(key, "AccessDenied", "Access Denied", version))
            continue
        targets.append((key, version))
    outcomes = await ctx.service.delete_objects(
        ctx.bucket,
        targets,
        ctx.acting_id,
        bypass_governance=lock_ops.bypass_governance(ctx),
    )
    deleted: list[xml.DeletedEntry] = []
    for outcome in outcomes:
        if outcome.error is None:
            deleted.append(_deleted_entry(outcome))
        else:
            failed.append(
                xml.DeleteError(outcome.key, "AccessDenied", str(outcome.error), outcome.version_id)
            )
    return xml_response(xml.delete_result(deleted, failed, quiet))


def _deleted_entry(outcome: DeleteOutcome) -> xml.DeletedEntry:
    """DeleteObjects' ``Deleted``: a delete marker made, or one removed by its id, is named."""
    if outcome.marker is not None:
        return xml.DeletedEntry(outcome.key, None, True, outcome.marker.version_id)
    removed = outcome.removed
    if removed is not None and removed.delete_marker:
        return xml.DeletedEntry(outcome.key, outcome.version_id, True, removed.version_id)
    return xml.DeletedEntry(outcome.key, outcome.version_id)


async def copy_object(ctx: ReqCtx) -> web.StreamResponse:
    source = ctx.endpoint.copy_source
    assert source is not None, "router sets copy_source for CopyObject"
    view = copy_source_view(ctx, source)
    src = view.record
    httpsem.evaluate_copy_source_conditions(
        ctx.request.headers, src.etag, src.last_modified, ctx.clock.now()
    )
    directive = (ctx.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    storage_class = _storage_class(ctx)
    tags = copy_tags(ctx, src.tags)
    if directive == "REPLACE":
        opts = put_options_from_request(ctx)
    else:
        opts = PutOptions(
            owner_id=ctx.acting_id,
            content_type=src.content_type,
            user_meta=src.user_meta,
            headers=src.headers,
            storage_class=storage_class or src.storage_class,
            acl=write_acl(ctx),
            amendable=lock_ops.requested_lock(ctx),
        )
    opts = dataclasses.replace(opts, tags=tags)
    same = (source.bucket, source.key) == (ctx.bucket, ctx.key)
    restoring = source.version_id is not None and view.versioned  # an old version copied back
    if same and directive == "COPY" and not storage_class and not restoring:
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes.",
        )
    if same and not view.versioned:  # one version only: the data stays where it is
        record = await ctx.service.replace_metadata(
            ctx.bucket, ctx.key, opts, expect_volume=src.volume_id
        )
    else:  # a version of its own, a volume of its own
        opts = dataclasses.replace(
            opts,
            size_hint=src.size,
            checksums=src.checksums,
            condition=write_condition(ctx),
            acl=opts.acl,
        )
        ctx.service.record_access(view.volume.volume_id)
        chunks = ctx.service.read_volume(view.volume, 0, src.size)
        record = await ctx.service.put_object(ctx.bucket, ctx.key, chunks, opts)
    response = xml_response(xml.copy_object_result(record.etag, record.last_modified))
    if view.versioned:
        response.headers["x-amz-copy-source-version-id"] = src.version_id
    response.headers.update(written_version(record))
    response.headers.update(written_expiration(ctx, record))
    return response


HANDLERS: Mapping[str, Handler] = {
    "PutObject": put_object,
    "GetObject": get_object,
    "HeadObject": head_object,
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
    "CopyObject": copy_object,
}
