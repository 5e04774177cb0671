"""Bucket policy, policy status, public access block and ownership controls operations.

Each is one of the bucket's settings (``BucketRecord.settings``: ``"policy"``, the policy's
text exactly as sent, since GetBucketPolicy answers it unchanged, packed as
:func:`stratum.access.policy.stored` says; ``"public_access_block"``;
``"ownership"``), written with :meth:`ObjectService.set_bucket_setting` and so kept on disk
with the bucket's configuration record. A policy is checked before it is stored
(``MalformedPolicy`` with AWS's reason) and refused (``AccessDenied``) when it is public and
the bucket's public access block says ``BlockPublicPolicy``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from stratum.access import acl as acls
from stratum.access import policy as policies
from stratum.access.decide import BUCKET_OWNER_ENFORCED, PublicAccessBlock
from stratum.access.errors import PolicyError
from stratum.s3 import xml
from stratum.s3.acl_ops import bucket_settings
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.xml_requests import (
    PUBLIC_ACCESS_BLOCK_FIELDS,
    parse_ownership_controls,
    parse_public_access_block,
)

POLICY = "policy"
PUBLIC_ACCESS_BLOCK = "public_access_block"
OWNERSHIP = "ownership"


def _setting(ctx: ReqCtx, name: str) -> object:
    record = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    return record.settings.get(name)


async def _set(ctx: ReqCtx, name: str, value: object) -> None:
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, name, value)


# --- policy ---------------------------------------------------------------------------


async def put_bucket_policy(ctx: ReqCtx) -> web.StreamResponse:
    document = await read_document(ctx, policies.MAX_POLICY_BYTES + 1)
    bucket = bucket_settings(ctx)
    try:
        text = document.decode("utf-8")
        policy = policies.parse(text, ctx.bucket)
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be valid UTF-8 JSON") from None
    except PolicyError as exc:
        raise S3Error("MalformedPolicy", exc.message) from None
    if bucket.block.block_public_policy and policy.public:
        raise S3Error("AccessDenied", "The bucket's public access block refuses public policies")
    await _set(ctx, POLICY, policies.stored(text))
    return web.Response(status=204)


async def get_bucket_policy(ctx: ReqCtx) -> web.StreamResponse:
    value = _setting(ctx, POLICY)
    if value is None:
        raise S3Error("NoSuchBucketPolicy", extra={"BucketName": ctx.bucket})
    return web.Response(status=200, text=policies.text_of(value), content_type="application/json")


async def delete_bucket_policy(ctx: ReqCtx) -> web.StreamResponse:
    await _set(ctx, POLICY, None)
    return web.Response(status=204)


async def get_bucket_policy_status(ctx: ReqCtx) -> web.StreamResponse:
    bucket = bucket_settings(ctx)
    w = xml.XmlWriter("PolicyStatus")
    w.leaf("IsPublic", bucket.public)
    return xml_response(w.finish())


# --- public access block --------------------------------------------------------------


async def put_public_access_block(ctx: ReqCtx) -> web.StreamResponse:
    flags = parse_public_access_block(await read_document(ctx))
    bucket_settings(ctx)
    block = PublicAccessBlock(*(flags[name] for name in PUBLIC_ACCESS_BLOCK_FIELDS))
    await _set(ctx, PUBLIC_ACCESS_BLOCK, block.stored())
    return web.Response(status=200)


async def get_public_access_block(ctx: ReqCtx) -> web.StreamResponse:
    stored = _setting(ctx, PUBLIC_ACCESS_BLOCK)
    if not isinstance(stored, dict):
        raise S3Error("NoSuchPublicAccessBlockConfiguration", extra={"BucketName": ctx.bucket})
    block = PublicAccessBlock.load(stored)
    w = xml.XmlWriter("PublicAccessBlockConfiguration")
    w.leaf("BlockPublicAcls", block.block_public_acls)
    w.leaf("IgnorePublicAcls", block.ignore_public_acls)
    w.leaf("BlockPublicPolicy", block.block_public_policy)
    w.leaf("RestrictPublicBuckets", block.restrict_public_buckets)
    return xml_response(w.finish())


async def delete_public_access_block(ctx: ReqCtx) -> web.StreamResponse:
    await _set(ctx, PUBLIC_ACCESS_BLOCK, None)
    return web.Response(status=204)


# --- ownership controls ---------------------------------------------------------------


async def put_bucket_ownership_controls(ctx: ReqCtx) -> web.StreamResponse:
    rule = parse_ownership_controls(await read_document(ctx))
    bucket = bucket_settings(ctx)
    if rule == BUCKET_OWNER_ENFORCED and bucket.acl != acls.private(bucket.owner):
        raise S3Error("InvalidBucketAclWithObjectOwnership")
    await _set(ctx, OWNERSHIP, {"v": 1, "rule": rule})
    return web.Response(status=200)


async def get_bucket_ownership_controls(ctx: ReqCtx) -> web.StreamResponse:
    stored = _setting(ctx, OWNERSHIP)
    if not isinstance(stored, dict):
        raise S3Error("OwnershipControlsNotFoundError", extra={"BucketName": ctx.bucket})
    w = xml.XmlWriter("OwnershipControls")
    w.start("Rule")
    w.leaf("ObjectOwnership", str(stored.get("rule", "")))
    return xml_response(w.finish())


async def delete_bucket_ownership_controls(ctx: ReqCtx) -> web.StreamResponse:
    await _set(ctx, OWNERSHIP, None)
    return web.Response(status=204)


HANDLERS: Mapping[str, Handler] = {
    "PutBucketPolicy": put_bucket_policy,
    "GetBucketPolicy": get_bucket_policy,
    "DeleteBucketPolicy": delete_bucket_policy,
    "GetBucketPolicyStatus": get_bucket_policy_status,
    "PutPublicAccessBlock": put_public_access_block,
    "GetPublicAccessBlock": get_public_access_block,
    "DeletePublicAccessBlock": delete_public_access_block,
    "PutBucketOwnershipControls": put_bucket_ownership_controls,
    "GetBucketOwnershipControls": get_bucket_ownership_controls,
    "DeleteBucketOwnershipControls": delete_bucket_ownership_controls,
}
