"""Object operations: PUT, GET, HEAD, DELETE, DeleteObjects and CopyObject."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping

from aiohttp import web

from stratum.meta.records import ObjectRecord
from stratum.s3 import httpsem, xml
from stratum.s3.body import open_body
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.list_ops import STORAGE_CLASS_OF_TIER
from stratum.s3.xml_requests import MAX_DELETE_OBJECTS_BODY, parse_delete_objects
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
    value = ctx.header("x-amz-storage-class")
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
    headers = ctx.request.headers
    return PutOptions(
        owner_id=ctx.user.canonical_id,
        content_type=headers.get("Content-Type") or "binary/octet-stream",
        user_meta=httpsem.extract_user_metadata(headers),
        headers=httpsem.stored_standard_headers(headers),
        storage_class=_storage_class(ctx),
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
    condition = write_condition(ctx)
    opts = PutOptions(
        owner_id=base.owner_id,
        content_type=base.content_type,
        user_meta=base.user_meta,
        headers=base.headers,
        storage_class=base.storage_class,
        size_hint=body.size,
        expected_md5=httpsem.parse_content_md5(md5) if md5 is not None else None,
        hashers=body.hashers,
        verify=body.verify,
        condition=condition,
        checksums=body.checksums,  # filled by verify() before the commit reads it
    )
    record = await ctx.service.put_object(ctx.bucket, ctx.key, body.chunks, opts)
    out = {"ETag": record.etag}
    out.update(_checksum_headers(record.checksums))
    return web.Response(status=200, headers=out)


def _checksum_headers(checksums: Mapping[str, str]) -> dict[str, str]:
    return {f"x-amz-checksum-{alg}": value for alg, value in checksums.items()}


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
    if record.parts:
        out["x-amz-mp-parts-count"] = str(record.parts)
    if ctx.header("x-amz-checksum-mode") == "ENABLED":
        out.update(_checksum_headers(record.checksums))
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
    view = ctx.service.head_object(ctx.bucket, ctx.key, ctx.user.canonical_id)
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
    await ctx.service.delete_object(ctx.bucket, ctx.key, ctx.user.canonical_id)
    return web.Response(status=204)


async def delete_objects(ctx: ReqCtx) -> web.StreamResponse:
    document = await read_document(ctx, MAX_DELETE_OBJECTS_BODY, checksums=True)
    md5 = ctx.header("Content-MD5")
    if md5 is not None and httpsem.parse_content_md5(md5) != hashlib.md5(document).digest():
        raise S3Error("BadDigest")
    quiet, targets = parse_delete_objects(document)
    deleted: list[xml.DeletedEntry] = []
    failed: list[xml.DeleteError] = []
    keys: list[str] = []
    for key, version in targets:
        if version not in (None, "null"):
            failed.append(
                xml.DeleteError(
                    key, "NoSuchVersion", "The specified version does not exist.", version
                )
            )
            continue
        keys.append(key)
    for key, error in await ctx.service.delete_objects(ctx.bucket, keys, ctx.user.canonical_id):
        if error is None:
            deleted.append(xml.DeletedEntry(key))
        else:
            failed.append(xml.DeleteError(key, "InternalError", str(error)))
    return xml_response(xml.delete_result(deleted, failed, quiet))


async def copy_object(ctx: ReqCtx) -> web.StreamResponse:
    source = ctx.endpoint.copy_source
    assert source is not None, "router sets copy_source for CopyObject"
    if source.version_id not in (None, "null"):
        raise S3Error("NoSuchVersion", extra={"VersionId": source.version_id or ""})
    view = ctx.service.head_object(source.bucket, source.key, ctx.user.canonical_id)
    src = view.record
    httpsem.evaluate_copy_source_conditions(
        ctx.request.headers, src.etag, src.last_modified, ctx.clock.now()
    )
    directive = (ctx.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    storage_class = _storage_class(ctx)
    if directive == "REPLACE":
        opts = put_options_from_request(ctx)
    else:
        opts = PutOptions(
            owner_id=ctx.user.canonical_id,
            content_type=src.content_type,
            user_meta=src.user_meta,
            headers=src.headers,
            storage_class=storage_class or src.storage_class,
        )
    same = (source.bucket, source.key) == (ctx.bucket, ctx.key)
    if same:
        if directive == "COPY" and not storage_class:
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes.",
            )
        record = await ctx.service.replace_metadata(
            ctx.bucket, ctx.key, opts, expect_volume=src.volume_id
        )
    else:
        opts = PutOptions(
            owner_id=opts.owner_id,
            content_type=opts.content_type,
            user_meta=opts.user_meta,
            headers=opts.headers,
            storage_class=opts.storage_class,
            size_hint=src.size,
            checksums=src.checksums,
            condition=write_condition(ctx),
        )
        ctx.service.record_access(view.volume.volume_id)
        chunks = ctx.service.read_volume(view.volume, 0, src.size)
        record = await ctx.service.put_object(ctx.bucket, ctx.key, chunks, opts)
    return xml_response(xml.copy_object_result(record.etag, record.last_modified))


HANDLERS: Mapping[str, Handler] = {
    "PutObject": put_object,
    "GetObject": get_object,
    "HeadObject": head_object,
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
    "CopyObject": copy_object,
}
