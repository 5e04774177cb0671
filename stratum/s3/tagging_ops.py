"""Tagging: object tag sets (per version) and bucket tag sets.

An object's tags are a field of each version's record (``ObjectRecord.tags``), set when the
version is written (``x-amz-tagging`` on PutObject, CreateMultipartUpload and CopyObject's
``x-amz-tagging-directive: REPLACE``) and written into its on-disk header, so recovery from
the disks keeps them; Put/DeleteObjectTagging change them later, on disk too (an amend
record, :mod:`stratum.service.amend`), whatever Object Lock the version is under. A
bucket's tags are its ``tagging`` setting: a list of ``[key, value]`` pairs
(:meth:`~stratum.service.objects.ObjectService.set_bucket_setting`).

Limits and errors as AWS's: 10 tags per object, 50 per bucket, keys of 1-128 characters,
values of at most 256, no key twice, no ``aws:`` prefix, else ``InvalidTag``
(:func:`stratum.s3.xml_requests.check_tags`). Tag sets are answered sorted by key, as AWS
answers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from stratum.s3 import xml
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lookup import VERSION_HEADER, amend_viewed, view_object
from stratum.s3.xml_requests import (
    MAX_BUCKET_TAGS,
    MAX_OBJECT_TAGS,
    MAX_TAGGING_BODY,
    check_tags,
    parse_tagging,
)

TAGGING_HEADER = "x-amz-tagging"
TAGGING_COUNT_HEADER = "x-amz-tagging-count"
TAGGING_DIRECTIVE_HEADER = "x-amz-tagging-directive"
BUCKET_SETTING = "tagging"


def tags_from_header(value: str | None) -> dict[str, str]:
    """The tag set of ``x-amz-tagging``: URL query parameters (``a=1&b``; a key without
    ``=`` has the empty value), checked against the object limits."""
    if value is None or not value.strip():
        return {}
    try:
        pairs = parse_qsl(value, keep_blank_values=True, errors="strict")
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "The header 'x-amz-tagging' shall be encoded as UTF-8 "
            "then URLEncoded URL query parameters without tag name duplicates.",
            extra={"ArgumentName": TAGGING_HEADER, "ArgumentValue": value},
        ) from None
    return dict(check_tags(pairs, max_tags=MAX_OBJECT_TAGS))


def copy_tags(ctx: ReqCtx, source_tags: Mapping[str, str]) -> dict[str, str]:
    """The tags of a CopyObject's new version: the source's (``COPY``, the default) or
    those of ``x-amz-tagging`` (``REPLACE``)."""
    directive = (ctx.header(TAGGING_DIRECTIVE_HEADER) or "COPY").upper()
    if directive == "COPY":
        return dict(source_tags)
    if directive == "REPLACE":
        return tags_from_header(ctx.header(TAGGING_HEADER))
    raise S3Error(
        "InvalidArgument",
        "Unknown tagging directive.",
        extra={"ArgumentName": TAGGING_DIRECTIVE_HEADER, "ArgumentValue": directive},
    )


def tag_count_headers(tags: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-tagging-count`` on GET and HEAD of a tagged object (absent when untagged)."""
    return {TAGGING_COUNT_HEADER: str(len(tags))} if tags else {}


def _sorted(tags: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted(tags.items())


# -- objects --------------------------------------------------------------------------------


async def get_object_tagging(ctx: ReqCtx) -> web.StreamResponse:
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, "GET")
    response = xml_response(xml.tagging(_sorted(view.record.tags)))
    if view.versioned:
        response.headers[VERSION_HEADER] = view.record.version_id
    return response


async def _set_tags(ctx: ReqCtx, tags: dict[str, str], status: int) -> web.StreamResponse:
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, ctx.request.method)
    return await amend_viewed(ctx, view, status, tags=tags)


async def put_object_tagging(ctx: ReqCtx) -> web.StreamResponse:
    tags = parse_tagging(await read_document(ctx, MAX_TAGGING_BODY), max_tags=MAX_OBJECT_TAGS)
    return await _set_tags(ctx, dict(tags), 200)


async def delete_object_tagging(ctx: ReqCtx) -> web.StreamResponse:
    return await _set_tags(ctx, {}, 204)


# -- buckets --------------------------------------------------------------------------------


async def get_bucket_tagging(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    stored = bucket.settings.get(BUCKET_SETTING)
    if stored is None:
        raise S3Error("NoSuchTagSet", extra={"BucketName": ctx.bucket})
    return xml_response(xml.tagging([(str(k), str(v)) for k, v in stored]))


async def put_bucket_tagging(ctx: ReqCtx) -> web.StreamResponse:
    tags = parse_tagging(await read_document(ctx, MAX_TAGGING_BODY), max_tags=MAX_BUCKET_TAGS)
    value = [[k, v] for k, v in sorted(tags)]
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, BUCKET_SETTING, value)
    return web.Response(status=204)


async def delete_bucket_tagging(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, BUCKET_SETTING, None)
    return web.Response(status=204)


HANDLERS: Mapping[str, Handler] = {
    "GetObjectTagging": get_object_tagging,
    "PutObjectTagging": put_object_tagging,
    "DeleteObjectTagging": delete_object_tagging,
    "GetBucketTagging": get_bucket_tagging,
    "PutBucketTagging": put_bucket_tagging,
    "DeleteBucketTagging": delete_bucket_tagging,
}
