"""GetObjectAttributes: what HEAD tells, and a multipart object's parts, in one XML document.

The attributes asked for in ``x-amz-object-attributes`` (``ETag``, ``Checksum``,
``ObjectParts``, ``StorageClass``, ``ObjectSize``; any other name is ``InvalidArgument``)
are answered from the version's record and its volume, without reading data. ``ObjectParts``
appears for multipart objects only, paged by ``x-amz-max-parts`` (default 1000) and
``x-amz-part-number-marker``; each part has its size and, when the upload had a checksum,
its value. The ETag is given without quotes, as AWS gives it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aiohttp import web

from stratum.s3 import checksums, httpsem
from stratum.s3.bucket_ops import xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.list_ops import STORAGE_CLASS_OF_TIER
from stratum.s3.lookup import VERSION_HEADER, view_object
from stratum.s3.xml import XmlWriter, check_name
from stratum.service.objects import ObjectView

ATTRIBUTES_HEADER = "x-amz-object-attributes"
ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})
MAX_PARTS = 1000


def _wanted(ctx: ReqCtx) -> set[str]:
    raw = ",".join(ctx.request.headers.getall(ATTRIBUTES_HEADER, []))
    names = {n.strip() for n in raw.split(",") if n.strip()}
    if not names or not names <= ATTRIBUTES:
        raise S3Error(
            "InvalidArgument",
            "Invalid attribute name specified.",
            extra={"ArgumentName": ATTRIBUTES_HEADER, "ArgumentValue": raw},
        )
    return names


def _count(ctx: ReqCtx, header: str, default: int) -> int:
    raw = ctx.header(header)
    if raw is None or not raw.strip():
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()):
        raise S3Error(
            "InvalidArgument",
            f"Provided {header} not an integer or within integer range",
            extra={"ArgumentName": header, "ArgumentValue": raw},
        )
    return int(value)


def attributes_document(view: ObjectView, wanted: set[str], max_parts: int, marker: int) -> bytes:
    record, volume = view.record, view.volume
    w = XmlWriter("GetObjectAttributesResponse")
    if "ETag" in wanted:
        w.leaf("ETag", record.etag.strip('"'))
    if "Checksum" in wanted and record.checksums:
        w.start("Checksum")
        for alg, value in record.checksums.items():
            w.leaf(check_name(checksums.element_of(cast(checksums.Algorithm, alg))), value)
            w.leaf("ChecksumType", checksums.checksum_type_of(value))
        w.end()
    if "ObjectParts" in wanted and record.parts:
        sizes = volume.part_sizes
        shown = list(range(marker + 1, min(len(sizes), marker + max_parts) + 1))
        truncated = bool(shown) and shown[-1] < len(sizes)
        w.start("ObjectParts")
        w.leaf("PartsCount", record.parts)
        w.leaf("PartNumberMarker", marker)
        if truncated:
            w.leaf("NextPartNumberMarker", shown[-1])
        w.leaf("MaxParts", max_parts)
        w.leaf("IsTruncated", truncated)
        [alg] = record.checksums or {"": ""}
        for number in shown:
            w.start("Part")
            w.leaf("PartNumber", number)
            w.leaf("Size", sizes[number - 1])
            if alg and len(volume.part_checksums) >= number:
                element = checksums.element_of(cast(checksums.Algorithm, alg))
                w.leaf(check_name(element), volume.part_checksums[number - 1])
            w.end()
        w.end()
    if "StorageClass" in wanted:
        tier_class = STORAGE_CLASS_OF_TIER.get(volume.tier, "STANDARD")
        w.leaf("StorageClass", record.storage_class or tier_class)
    if "ObjectSize" in wanted:
        w.leaf("ObjectSize", record.size)
    return w.finish()


async def get_object_attributes(ctx: ReqCtx) -> web.StreamResponse:
    wanted = _wanted(ctx)
    max_parts = min(_count(ctx, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _count(ctx, "x-amz-part-number-marker", 0)
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, "GET")
    httpsem.evaluate_read_conditions(
        ctx.request.headers, view.record.etag, view.record.last_modified, ctx.clock.now()
    )
    response = xml_response(attributes_document(view, wanted, max_parts, marker))
    response.headers["Last-Modified"] = httpsem.http_date(view.record.last_modified)
    if view.versioned:
        response.headers[VERSION_HEADER] = view.record.version_id
    return response


HANDLERS: Mapping[str, Handler] = {"GetObjectAttributes": get_object_attributes}
