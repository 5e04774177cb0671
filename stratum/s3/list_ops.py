"""Listing: ListObjects (v1), ListObjectsV2 and ListObjectVersions.

The metadata layer walks its cursor in S3 byte order and returns a page; this module
only reads parameters, maps continuation tokens and renders the XML.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from stratum.meta.catalog import ListPage
from stratum.s3 import xml
from stratum.s3.bucket_ops import xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.router import check_version_id
from stratum.s3.tokens import decode_token, encode_token

MAX_KEYS = 1000
STORAGE_CLASS_OF_TIER = {"hot": "STANDARD", "warm": "STANDARD_IA", "cold": "GLACIER_IR"}


def max_keys(ctx: ReqCtx, name: str = "max-keys") -> int:
    raw = ctx.params.get(name)
    if raw is None or raw == "":
        return MAX_KEYS
    try:
        value = int(raw)
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        ) from None
    if value < 0:
        raise S3Error(
            "InvalidArgument",
            "Argument maxKeys must be an integer between 0 and 2147483647",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return min(value, MAX_KEYS)


def encoding_type(ctx: ReqCtx) -> str | None:
    value = ctx.params.get("encoding-type")
    if value is None:
        return None
    if value.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": value},
        )
    return "url"


def _page(ctx: ReqCtx, start_after: str, limit: int) -> ListPage:
    return ctx.service.list_objects(
        ctx.bucket,
        ctx.acting_id,
        prefix=ctx.params.get("prefix", ""),
        delimiter=ctx.params.get("delimiter", ""),
        start_after=start_after,
        max_keys=limit,
    )


async def list_objects_v1(ctx: ReqCtx) -> web.StreamResponse:
    enc = encoding_type(ctx)
    limit = max_keys(ctx)
    marker = ctx.params.get("marker", "")
    delimiter = ctx.params.get("delimiter") or None
    page = _page(ctx, marker, limit)
    result = xml.ListObjectsV1Result(
        bucket=ctx.bucket,
        prefix=ctx.params.get("prefix", ""),
        marker=marker,
        max_keys=limit,
        is_truncated=page.is_truncated,
        contents=page.listed(),  # only the fields shown, read from the records
        owner=ctx.owner,
        common_prefixes=page.common_prefixes,
        delimiter=delimiter,
        # AWS returns NextMarker only with a delimiter; without one clients use the last key.
        next_marker=page.next_marker if (delimiter and page.is_truncated) else None,
        encoding_type=enc,
    )
    return xml_response(xml.list_objects_v1(result))


async def list_objects_v2(ctx: ReqCtx) -> web.StreamResponse:
    enc = encoding_type(ctx)
    limit = max_keys(ctx)
    token = ctx.params.get("continuation-token")
    start_after = ctx.params.get("start-after")
    # An empty token is no token: AWS echoes it and lists from the start (or start-after).
    begin = decode_token(token) if token else start_after or ""
    page = _page(ctx, begin, limit)
    fetch_owner = ctx.params.get("fetch-owner", "").lower() == "true"
    result = xml.ListObjectsV2Result(
        bucket=ctx.bucket,
        prefix=ctx.params.get("prefix", ""),
        max_keys=limit,
        is_truncated=page.is_truncated,
        contents=page.listed(),
        common_prefixes=page.common_prefixes,
        delimiter=ctx.params.get("delimiter") or None,
        start_after=start_after,
        continuation_token=token,
        next_continuation_token=(
            encode_token(page.next_marker) if page.is_truncated and page.next_marker else None
        ),
        encoding_type=enc,
        owner=ctx.owner if fetch_owner else None,
    )
    return xml_response(xml.list_objects_v2(result))


async def list_object_versions(ctx: ReqCtx) -> web.StreamResponse:
    """Every version of every key, newest first per key, delete markers among them; a key
    never written since its bucket's versioning was set shows its object as version null."""
    enc = encoding_type(ctx)
    limit = max_keys(ctx)
    key_marker = ctx.params.get("key-marker", "")
    version_marker = ctx.params.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise S3Error(
            "InvalidArgument",
            "A version-id marker cannot be specified without a key marker.",
            extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_marker},
        )
    if version_marker:
        check_version_id("version-id-marker", version_marker)
    page = ctx.service.list_versions(
        ctx.bucket,
        ctx.acting_id,
        prefix=ctx.params.get("prefix", ""),
        delimiter=ctx.params.get("delimiter", ""),
        key_marker=key_marker,
        version_marker=version_marker,
        max_keys=limit,
    )
    entries = [
        xml.VersionEntry(
            key=r.key,
            version_id=r.version_id,
            is_latest=latest,
            last_modified=r.last_modified,
            etag=r.etag,
            size=r.size,
            storage_class=r.storage_class or "STANDARD",
            delete_marker=r.delete_marker,
        )
        for r, latest in page.entries
    ]
    result = xml.ListObjectVersionsResult(
        bucket=ctx.bucket,
        prefix=ctx.params.get("prefix", ""),
        key_marker=key_marker,
        version_id_marker=version_marker,
        max_keys=limit,
        is_truncated=page.is_truncated,
        versions=entries,
        owner=ctx.owner,
        common_prefixes=page.common_prefixes,
        delimiter=ctx.params.get("delimiter") or None,
        next_key_marker=page.next_key_marker,
        next_version_id_marker=page.next_version_id_marker,
        encoding_type=enc,
    )
    return xml_response(xml.list_object_versions(result))


HANDLERS: Mapping[str, Handler] = {
    "ListObjects": list_objects_v1,
    "ListObjectsV2": list_objects_v2,
    "ListObjectVersions": list_object_versions,
}
