"""ACL operations: Get/PutBucketAcl, Get/PutObjectAcl, and the ACL a write or a new bucket
takes from its ``x-amz-acl`` / ``x-amz-grant-*`` headers.

Who owns a new object follows the bucket's object ownership, as S3: its writer
(``ObjectWriter``, and no ownership controls set), the bucket owner when the writer asks for
``bucket-owner-full-control`` (``BucketOwnerPreferred``), the bucket owner always
(``BucketOwnerEnforced``, where ACLs are disabled: setting one other than
``bucket-owner-full-control`` is ``AccessControlListNotSupported``). An anonymous writer's
object belongs to the bucket owner. The object service is called on the bucket owner's
authority, so an object's record names the bucket owner; another owner is the ACL's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from stratum.access import acl as acls
from stratum.access.decide import BUCKET_OWNER_ENFORCED, BUCKET_OWNER_PREFERRED, BucketAccess
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.s3 import bucket_ops, xml
from stratum.s3.authorize import load_bucket_access
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lookup import VERSION_HEADER, amend_viewed, view_object
from stratum.s3.xml_requests import parse_access_control_policy

OWNERSHIP_HEADER = "x-amz-object-ownership"
BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"


def acl_error(exc: acls.AclError) -> S3Error:
    return S3Error(exc.code, exc.message)


def not_supported() -> S3Error:
    return S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")


def bucket_settings(ctx: ReqCtx) -> BucketAccess:
    """The bucket's access settings as the request's decision read them (one record read
    per request); a bucket that vanished since is the service's NoSuchBucket."""
    access = ctx.access
    if access is not None and access.bucket is not None:
        return access.bucket
    return load_bucket_access(ctx.service.get_bucket(ctx.bucket, ctx.acting_id))


def _known_ids(ctx: ReqCtx) -> Mapping[str, str]:
    if ctx.access is None:
        return {ctx.user.canonical_id: ctx.user.display_name}
    return ctx.access.display_names()


def _requested(
    ctx: ReqCtx, owner: str, bucket_owner: str, headers: Mapping[str, str]
) -> acls.Acl | None:
    """The ACL the request's headers ask for (``None``: none asked for)."""
    canned = headers.get("x-amz-acl")
    try:
        granted = acls.from_grant_headers(headers, owner)
        if canned is not None and granted is not None:
            raise S3Error(
                "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
            )
        if canned is not None:
            return acls.canned(canned.strip(), owner, bucket_owner)
        if granted is not None:
            return acls.validated(granted, _known_ids(ctx))
    except acls.AclError as exc:
        raise acl_error(exc) from None
    return None


def _refuse_public(bucket: BucketAccess, acl: acls.Acl) -> None:
    if bucket.block.block_public_acls and acl.public:
        raise S3Error("AccessDenied", "The bucket's public access block refuses public ACLs")


def write_acl(ctx: ReqCtx, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stored ACL (and so the owner) of an object this request writes: PutObject,
    CopyObject, CreateMultipartUpload; PostObject passes its form's ACL fields as
    ``headers`` (``x-amz-acl`` for its ``acl`` field)."""
    access = ctx.access
    if access is None or access.bucket is None:
        return {}  # no such bucket: the service answers NoSuchBucket
    if headers is None:
        headers = ctx.request.headers
    bucket = access.bucket
    canned = headers.get("x-amz-acl")
    if not bucket.acls_enabled:
        grants = any(h in headers for h in acls.GRANT_HEADERS)
        if grants or (canned is not None and canned.strip() != BUCKET_OWNER_FULL_CONTROL):
            raise not_supported()
        return {}
    owner = access.principal or bucket.owner
    if bucket.ownership == BUCKET_OWNER_PREFERRED and canned == BUCKET_OWNER_FULL_CONTROL:
        owner = bucket.owner
    acl = _requested(ctx, owner, bucket.owner, headers) or acls.private(owner)
    _refuse_public(bucket, acl)
    return acl.stored(bucket.owner)


def object_owner(ctx: ReqCtx, record_owner: str, stored_acl: Mapping[str, Any]) -> xml.Owner:
    """The owner a listing or ListParts shows for a record and its stored ACL."""
    owner = acls.owner_of(stored_acl, record_owner)
    return xml.Owner(owner, _known_ids(ctx).get(owner, ""))


# --- buckets --------------------------------------------------------------------------


async def create_bucket(ctx: ReqCtx) -> web.StreamResponse:
    """CreateBucket, with the ACL and object ownership its headers ask for."""
    ownership = ctx.header(OWNERSHIP_HEADER)
    if ownership is not None and ownership not in (
        "ObjectWriter",
        BUCKET_OWNER_PREFERRED,
        BUCKET_OWNER_ENFORCED,
    ):
        raise S3Error(
            "InvalidArgument",
            "Invalid x-amz-object-ownership header",
            extra={"ArgumentName": OWNERSHIP_HEADER, "ArgumentValue": ownership},
        )
    me = ctx.user.canonical_id
    acl = _requested(ctx, me, me, ctx.request.headers)
    if ownership == BUCKET_OWNER_ENFORCED and acl is not None and acl != acls.private(me):
        raise S3Error(
            "InvalidBucketAclWithObjectOwnership",
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        )
    existing = ctx.service.find_bucket(ctx.bucket)
    wanted = (acl or acls.private(me)).stored(me)
    if existing is not None and wanted != existing.settings.get("acl", {}):
        # Asking again for a bucket with another ACL than it has: not the same request.
        raise S3Error("BucketAlreadyExists", extra={"BucketName": ctx.bucket})
    response = await bucket_ops.create_bucket(ctx)
    settings: dict[str, Any] = {}
    if acl is not None and acl.stored(me):
        settings["acl"] = acl.stored(me)
    if ownership is not None:
        settings["ownership"] = {"v": 1, "rule": ownership}
    if settings and existing is None:

        def change(record: BucketRecord) -> bool:
            record.settings = {**record.settings, **settings}
            return True

        await ctx.service.configure_bucket(ctx.bucket, me, change)
    return response


async def get_bucket_acl(ctx: ReqCtx) -> web.StreamResponse:
    bucket = bucket_settings(ctx)
    acl = bucket.acl if bucket.acls_enabled else acls.private(bucket.owner)
    return xml_response(render(acl, _known_ids(ctx)))


async def put_bucket_acl(ctx: ReqCtx) -> web.StreamResponse:
    bucket = bucket_settings(ctx)
    document = await read_document(ctx)
    if not bucket.acls_enabled:
        raise not_supported()
    acl = _from_request(ctx, document, bucket.owner, bucket.owner)
    _refuse_public(bucket, acl)
    stored = acl.stored(bucket.owner)
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, "acl", stored or None)
    return web.Response(status=200)


def _from_request(ctx: ReqCtx, document: bytes, owner: str, bucket_owner: str) -> acls.Acl:
    """PutBucketAcl/PutObjectAcl: the ACL of the headers or of the body (never both)."""
    from_headers = _requested(ctx, owner, bucket_owner, ctx.request.headers)
    if from_headers is not None:
        if document.strip():
            raise S3Error("UnexpectedContent", "This request does not support content")
        return from_headers
    if not document.strip():
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header")
    try:
        _body_owner, grants = parse_access_control_policy(document)
        return acls.validated(acls.Acl(owner, tuple(grants)), _known_ids(ctx))
    except acls.AclError as exc:
        raise acl_error(exc) from None


# --- objects --------------------------------------------------------------------------


def _object_acl(bucket: BucketAccess, record: ObjectRecord) -> acls.Acl:
    if not bucket.acls_enabled:
        return acls.private(bucket.owner)
    return acls.load(record.acl, record.owner_id)


async def get_object_acl(ctx: ReqCtx) -> web.StreamResponse:
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, "GET")
    acl = _object_acl(bucket_settings(ctx), view.record)
    response = xml_response(render(acl, _known_ids(ctx)))
    if view.versioned:
        response.headers[VERSION_HEADER] = view.record.version_id
    return response


async def put_object_acl(ctx: ReqCtx) -> web.StreamResponse:
    """PutObjectAcl, on the version asked for (the current one by default), recorded on
    disk too; Object Lock does not stop it."""
    bucket = bucket_settings(ctx)
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, "PUT")
    document = await read_document(ctx)
    if not bucket.acls_enabled:
        raise not_supported()
    current = _object_acl(bucket, view.record)
    acl = _from_request(ctx, document, current.owner, bucket.owner)
    _refuse_public(bucket, acl)
    return await amend_viewed(ctx, view, 200, acl=acl.stored(view.record.owner_id))


# --- rendering ------------------------------------------------------------------------


def render(acl: acls.Acl, names: Mapping[str, str]) -> bytes:
    """An ``AccessControlPolicy`` document, users shown with their display names, the
    groups' grants first (as S3 lists a canned ACL), the rest in the order given."""
    grants = [
        xml.GrantEntry(
            g.permission, user=xml.Owner(g.grantee.value, names.get(g.grantee.value, ""))
        )
        if g.grantee.kind == "id"
        else xml.GrantEntry(g.permission, uri=g.grantee.value)
        for g in sorted(acl.grants, key=lambda g: g.grantee.kind != "group")
    ]
    return xml.access_control_policy(xml.Owner(acl.owner, names.get(acl.owner, "")), grants)


HANDLERS: Mapping[str, Handler] = {
    "CreateBucket": create_bucket,
    "GetBucketAcl": get_bucket_acl,
    "PutBucketAcl": put_bucket_acl,
    "GetObjectAcl": get_object_acl,
    "PutObjectAcl": put_object_acl,
}
