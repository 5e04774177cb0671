"""Bucket operations: create, delete, head, location, versioning and the unset configs."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from stratum.meta.records import BucketRecord
from stratum.s3 import xml
from stratum.s3.body import open_body
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lookup import view_object
from stratum.s3.tokens import decode_token, encode_token
from stratum.s3.xml_requests import (
    parse_create_bucket_configuration,
    parse_versioning_configuration,
)

XML = "application/xml"


def xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=XML)


async def read_document(ctx: ReqCtx, limit: int = 1 << 20, *, checksums: bool = False) -> bytes:
    """A small request document (XML), bounded; bigger is MaxMessageLengthExceeded.

    Read like an object body (:func:`open_body`): aws-chunked framing removed and
    x-amz-content-sha256 verified, so a signed request cannot carry a document other than
    the one signed. ``checksums``: x-amz-checksum-* headers are the document's own
    (DeleteObjects) and are verified too.
    """
    length = ctx.request.content_length
    if length is not None and length > limit:
        raise S3Error("MaxMessageLengthExceeded")
    body = open_body(ctx, require_length=False, checksums=checksums)
    parts: list[bytes] = []
    size = 0
    async for chunk in body.chunks:  # to the end: one read() returns what has arrived
        size += len(chunk)
        if size > limit:
            raise S3Error("MaxMessageLengthExceeded")
        parts.append(chunk)
        for hasher in body.hashers:
            hasher.update(chunk)
    body.verify()
    return b"".join(parts)


MAX_BUCKETS = 10_000  # AWS's page size, the most one page may hold and its default


async def list_buckets(ctx: ReqCtx) -> web.StreamResponse:
    """ListBuckets, with the pagination AWS added in 2024 (max-buckets, continuation-token,
    prefix, bucket-region). Pages come from LMDB a page at a time, so a page holds at most
    ``MAX_BUCKETS``: without parameters a user with more buckets than that gets a
    ContinuationToken too (AWS's default quota is that many buckets per account)."""
    prefix = ctx.params.get("prefix")
    token = ctx.params.get("continuation-token")
    region = ctx.params.get("bucket-region")
    limit_raw = ctx.params.get("max-buckets")
    limit = MAX_BUCKETS
    if limit_raw is not None:
        try:
            limit = int(limit_raw)
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_BUCKETS:
            raise S3Error(
                "InvalidArgument",
                f"Argument max-buckets must be an integer between 1 and {MAX_BUCKETS}",
                extra={"ArgumentName": "max-buckets", "ArgumentValue": limit_raw},
            )
    if token is not None and len(token) > 1024:
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token", "ArgumentValue": token},
        )
    buckets, more = await ctx.service.list_buckets(
        ctx.acting_id,
        prefix=prefix or "",
        after=decode_token(token) if token else "",
        region=region or "",
        limit=limit,
    )
    paginated = any(p is not None for p in (limit_raw, token, prefix, region))
    entries = [xml.BucketEntry(b.name, b.created, b.region if paginated else None) for b in buckets]
    body = xml.list_buckets(
        ctx.owner,
        entries,
        continuation_token=encode_token(buckets[-1].name) if more and buckets else None,
        prefix=prefix if prefix else None,
    )
    return xml_response(body)


async def create_bucket(ctx: ReqCtx) -> web.StreamResponse:
    location = parse_create_bucket_configuration(await read_document(ctx))
    region = ctx.settings.region
    if location == "us-east-1" == region:
        # AWS: us-east-1 is what "no constraint" means and may not be named explicitly.
        raise S3Error(
            "InvalidLocationConstraint",
            "The specified location-constraint is not valid",
            extra={"LocationConstraint": location},
        )
    if location and location != region:
        raise S3Error(
            "IllegalLocationConstraintException",
            f"The {location} location constraint is incompatible for the region specific "
            f"endpoint this request was sent to.",
        )
    lock = (ctx.header("x-amz-bucket-object-lock-enabled") or "").strip().lower() == "true"
    await ctx.service.create_bucket(ctx.bucket, ctx.acting_id, region, object_lock=lock)
    return web.Response(status=200, headers={"Location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.service.delete_bucket(ctx.bucket, ctx.acting_id)
    return web.Response(status=204)


async def head_bucket(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    return web.Response(status=200, headers={"x-amz-bucket-region": bucket.region})


async def get_bucket_location(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    return xml_response(xml.location_constraint(bucket.region))


async def get_bucket_versioning(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    return xml_response(xml.versioning_configuration(bucket.versioning or None))


async def put_bucket_versioning(ctx: ReqCtx) -> web.StreamResponse:
    """Enabled or Suspended; once set, a bucket's versioning is never unset again (S3).

    MFA delete is refused, never ignored: without ``x-amz-mfa`` as AWS refuses it
    (AccessDenied), and with one as a feature Stratum lacks (no MFA device to check the code
    against). Asking for it ``Disabled`` is what every bucket already is."""
    config = parse_versioning_configuration(await read_document(ctx))
    ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    if config.mfa_delete == "Enabled":
        if ctx.header("x-amz-mfa") is None:
            raise S3Error("AccessDenied", "Mfa Authentication must be used for this request")
        raise S3Error("NotImplemented", "MFA delete is not supported: there is no MFA device")
    status = config.status
    if status is not None:

        def change(record: BucketRecord) -> bool:
            if record.object_lock and status != "Enabled":
                raise S3Error(
                    "InvalidBucketState",
                    "An Object Lock configuration is present on this bucket, so the "
                    "versioning state cannot be changed.",
                )
            changed = record.versioning != status
            record.versioning = status
            return changed

        await ctx.service.configure_bucket(ctx.bucket, ctx.acting_id, change)
    return web.Response(status=200)


def _object_or_version(ctx: ReqCtx) -> None:
    """The object (or the version ``versionId`` names) exists: else S3's error for it."""
    view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, ctx.request.method)


def _not_configured(code: str) -> Handler:
    """GET of a bucket configuration Stratum never holds: AWS's answer for "not set"."""

    async def handler(ctx: ReqCtx) -> web.StreamResponse:
        ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
        raise S3Error(code, extra={"BucketName": ctx.bucket})

    return handler


HANDLERS: Mapping[str, Handler] = {
    "ListBuckets": list_buckets,
    "DeleteBucket": delete_bucket,
    "HeadBucket": head_bucket,
    "GetBucketLocation": get_bucket_location,
    "GetBucketVersioning": get_bucket_versioning,
    "PutBucketVersioning": put_bucket_versioning,
    "GetBucketEncryption": _not_configured("ServerSideEncryptionConfigurationNotFoundError"),
    "GetBucketWebsite": _not_configured("NoSuchWebsiteConfiguration"),
}
