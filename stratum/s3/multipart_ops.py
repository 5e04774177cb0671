"""Multipart uploads: create, upload part (and part copy), complete, abort, list.

The object model does the work (:mod:`stratum.service.multipart`); this module reads
the request, computes the checksums AWS defines for multipart objects and renders
the XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aiohttp import web

from stratum.s3 import checksums, httpsem, lock_ops, replica_ops, xml
from stratum.s3.acl_ops import object_owner
from stratum.s3.body import open_body
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.checksum_ops import completion_checksums
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lifecycle_ops import written_expiration
from stratum.s3.list_ops import encoding_type
from stratum.s3.lookup import copy_source_view, written_version
from stratum.s3.object_ops import put_options_from_request, write_condition
from stratum.s3.xml_requests import MAX_COMPLETE_MULTIPART_BODY, parse_complete_multipart
from stratum.service.multipart import CompletedPart
from stratum.service.objects import PutOptions

MAX_PART_SIZE = 5 << 30
ELEMENT_OF = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha1": "ChecksumSHA1",
    "sha256": "ChecksumSHA256",
}


def _int_param(ctx: ReqCtx, name: str, default: int, upper: int) -> int:
    raw = ctx.params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        ) from None
    if value < 0:
        raise S3Error(
            "InvalidArgument",
            f"Argument {name} must be an integer between 0 and 2147483647",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return min(value, upper)


def _upload_id(ctx: ReqCtx) -> str:
    upload_id = ctx.endpoint.upload_id
    if not upload_id:
        raise S3Error("NoSuchUpload", extra={"UploadId": upload_id or ""})
    return upload_id


async def create_multipart_upload(ctx: ReqCtx) -> web.StreamResponse:
    opts = put_options_from_request(ctx)
    alg_header = ctx.header("x-amz-checksum-algorithm")
    algorithm: checksums.Algorithm | None = None
    checksum_type = ""
    if alg_header:
        algorithm = checksums.parse_algorithm(alg_header)
        if algorithm is None:
            raise S3Error("InvalidRequest", "Checksum algorithm provided is unsupported.")
        checksum_type = checksums.multipart_checksum_type(
            algorithm, ctx.header("x-amz-checksum-type")
        )
    upload = await ctx.multipart.create(
        ctx.bucket,
        ctx.key,
        opts,
        checksum=algorithm or "",
        checksum_type=checksum_type,
    )
    response = xml_response(xml.initiate_multipart_upload(ctx.bucket, ctx.key, upload.upload_id))
    if algorithm:
        response.headers["x-amz-checksum-algorithm"] = algorithm.upper()
        response.headers["x-amz-checksum-type"] = checksum_type
    return response


async def upload_part(ctx: ReqCtx) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    part_number = ctx.endpoint.part_number
    assert part_number is not None, "router validates partNumber for UploadPart"
    body = open_body(ctx)
    if body.size is not None and body.size > MAX_PART_SIZE:
        raise S3Error("EntityTooLarge")
    md5 = ctx.header("Content-MD5")
    if not lock_ops.has_digest(ctx):  # AWS's rule for parts of a locked object's upload
        upload = ctx.multipart.get(ctx.bucket, ctx.key, upload_id, ctx.acting_id)
        lock_ops.require_digest(ctx, upload.amendable)
    opts = PutOptions(
        owner_id=ctx.acting_id,
        size_hint=body.size,
        expected_md5=httpsem.parse_content_md5(md5) if md5 is not None else None,
        hashers=body.hashers,
        verify=body.verify,
        checksums=body.checksums,
    )
    part = await ctx.multipart.upload_part(
        ctx.bucket, ctx.key, upload_id, part_number, body.chunks, opts
    )
    headers = {"ETag": part.etag}
    headers.update({f"x-amz-checksum-{a}": v for a, v in part.checksums.items()})
    return web.Response(status=200, headers=headers)


def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    if header is None:
        return 0, size
    value = header.strip()
    if not value.startswith("bytes="):
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form "
            "bytes=first-last where first and last are the zero-based offsets of the "
            "first and last bytes to copy",
        )
    first, _, last = value[6:].partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value is not valid") from None
    if start > end or end >= size:
        raise S3Error(
            "InvalidRange",
            extra={"RangeRequested": value, "ActualObjectSize": str(size)},
        )
    return start, end + 1


async def upload_part_copy(ctx: ReqCtx) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    part_number = ctx.endpoint.part_number
    source = ctx.endpoint.copy_source
    assert part_number is not None and source is not None
    view = copy_source_view(ctx, source)
    httpsem.evaluate_copy_source_conditions(
        ctx.request.headers, view.record.etag, view.record.last_modified, ctx.clock.now()
    )
    start, end = _copy_range(ctx.header("x-amz-copy-source-range"), view.record.size)
    ctx.multipart.get(ctx.bucket, ctx.key, upload_id, ctx.acting_id)
    opts = PutOptions(owner_id=ctx.acting_id, size_hint=end - start)
    ctx.service.record_access(view.volume.volume_id)
    chunks = ctx.service.read_volume(view.volume, start, end)
    part = await ctx.multipart.upload_part(
        ctx.bucket, ctx.key, upload_id, part_number, chunks, opts
    )
    response = xml_response(xml.copy_part_result(part.etag, part.last_modified))
    if view.versioned:
        response.headers["x-amz-copy-source-version-id"] = view.record.version_id
    return response


async def complete_multipart_upload(ctx: ReqCtx) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    document = await read_document(ctx, MAX_COMPLETE_MULTIPART_BODY)
    requested = parse_complete_multipart(document)
    wanted = [CompletedPart(p.part_number, p.etag, dict(p.checksums)) for p in requested]
    complete = ctx.multipart.complete(
        ctx.bucket,
        ctx.key,
        upload_id,
        wanted,
        ctx.acting_id,
        checksum_of=completion_checksums(ctx, requested),
        condition=write_condition(ctx),
        replica=replica_ops.replica_of(ctx),
    )
    record = await replica_ops.written(complete)
    location = f"/{ctx.bucket}/{ctx.key}"
    elements = {
        checksums.element_of(cast(checksums.Algorithm, alg)): value
        for alg, value in record.checksums.items()
    }
    for value in record.checksums.values():
        elements["ChecksumType"] = checksums.checksum_type_of(value)
    response = xml_response(
        xml.complete_multipart_upload(location, ctx.bucket, ctx.key, record.etag, elements)
    )
    response.headers.update(written_version(record))
    response.headers.update(written_expiration(ctx, record))
    return response


async def abort_multipart_upload(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.multipart.abort(ctx.bucket, ctx.key, _upload_id(ctx), ctx.acting_id)
    return web.Response(status=204)


async def list_parts(ctx: ReqCtx) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    limit = _int_param(ctx, "max-parts", 1000, 1000)
    marker = _int_param(ctx, "part-number-marker", 0, 10_000)
    page = ctx.multipart.list_parts(
        ctx.bucket, ctx.key, upload_id, ctx.acting_id, after=marker, limit=limit
    )
    entries = [
        xml.PartEntry(
            part_number=p.part_number,
            last_modified=p.last_modified,
            etag=p.etag,
            size=p.size,
            checksums={ELEMENT_OF[a]: v for a, v in p.checksums.items() if a in ELEMENT_OF},
        )
        for p in page.parts
    ]
    result = xml.ListPartsResult(
        bucket=ctx.bucket,
        key=ctx.key,
        upload_id=upload_id,
        owner=object_owner(ctx, page.upload.owner_id, page.upload.acl),
        part_number_marker=marker,
        max_parts=limit,
        is_truncated=page.is_truncated,
        parts=entries,
        next_part_number_marker=page.next_marker,
        storage_class=page.upload.storage_class or "STANDARD",
    )
    return xml_response(xml.list_parts(result))


async def list_multipart_uploads(ctx: ReqCtx) -> web.StreamResponse:
    enc = encoding_type(ctx)
    limit = _int_param(ctx, "max-uploads", 1000, 1000)
    prefix = ctx.params.get("prefix", "")
    delimiter = ctx.params.get("delimiter", "")
    key_marker = ctx.params.get("key-marker", "")
    id_marker = ctx.params.get("upload-id-marker", "")
    page = await ctx.multipart.list_uploads(
        ctx.bucket,
        ctx.acting_id,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=id_marker,
        limit=limit,
    )
    entries = [
        xml.UploadEntry(
            key=upload.key,
            upload_id=upload.upload_id,
            initiated=upload.initiated,
            # who started it (its object's owner-to-be), not the requester
            owner=object_owner(ctx, upload.owner_id, upload.acl),
            storage_class=upload.storage_class or "STANDARD",
        )
        for upload in page.uploads
    ]
    result = xml.ListMultipartUploadsResult(
        bucket=ctx.bucket,
        key_marker=key_marker,
        upload_id_marker=id_marker,
        max_uploads=limit,
        is_truncated=page.is_truncated,
        uploads=entries,
        common_prefixes=page.common_prefixes,
        prefix=prefix,
        delimiter=delimiter or None,
        next_key_marker=page.next_key_marker,
        next_upload_id_marker=page.next_upload_id_marker,
        encoding_type=enc,
    )
    return xml_response(xml.list_multipart_uploads(result))


HANDLERS: Mapping[str, Handler] = {
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
