"""POST Object: browser form uploads (``multipart/form-data`` to a bucket's URL).

The form's fields come first and are read (bounded: :data:`MAX_FIELDS_BYTES` in all), then
the ``file`` field, which is streamed to the object service like a PUT body and never held
whole; fields after it are ignored, as AWS ignores them. Field names are case-insensitive.

1. The fields are authenticated (:func:`stratum.auth.post_policy.authenticate_form`: the
   policy's signature, SigV4 or SigV2, and its expiration). An anonymous form (no policy)
   writes only where the bucket's ACL or policy lets anyone write
   (:meth:`~stratum.s3.authorize.RequestAccess.grant_form` decides, once the key is known).
2. ``key`` is required; ``${filename}`` in it becomes the file's name. The policy's
   conditions are checked on the final fields, and every field must be named by one.
3. The file streams into the bucket: ``content-length-range`` is enforced as it arrives
   (``EntityTooLarge`` as soon as it is passed, ``EntityTooSmall`` before the object
   becomes visible); ``Content-Type``, ``Cache-Control``..., ``x-amz-meta-*`` and
   ``x-amz-checksum-*`` fields are what their headers are on a PUT.
4. The answer: a ``303`` to ``success_action_redirect`` (``bucket``, ``key`` and ``etag``
   added to its query), else ``success_action_status`` ``200`` (empty), ``201`` (a
   ``PostResponse`` document) or ``204`` (any other value, and the default).

``tagging`` (a ``Tagging`` document) tags the new object; ``acl`` (a canned ACL) and
``x-amz-grant-*`` fields set its ACL as their headers do on a PUT. Server-side encryption,
asked for in a field or a header, is ``NotImplemented`` as on a PUT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import BodyPartReader, MultipartReader, web

from stratum.auth import AuthResult, LookupSecret, post_policy
from stratum.auth.request import UNSIGNED_PAYLOAD
from stratum.s3 import honest, httpsem, lock_ops
from stratum.s3.acl_ops import write_acl
from stratum.s3.authorize import ANONYMOUS, RequestAccess
from stratum.s3.body import READ_CHUNK, form_body, within
from stratum.s3.context import ApiSettings, ReqCtx, send_continue
from stratum.s3.errors import S3Error
from stratum.s3.lookup import written_version
from stratum.s3.object_ops import MAX_SINGLE_PUT, storage_class_named
from stratum.s3.router import Endpoint, validate_key
from stratum.s3.xml import XmlWriter, quote_etag
from stratum.s3.xml_requests import parse_tagging
from stratum.service.objects import ObjectService, PutOptions
from stratum.service.users import User, UserDirectory
from stratum.util.clock import Clock

OPERATION = "PostObject"
MAX_FIELDS_BYTES = 1 << 20  # every field before the file, names and values
FILENAME = "${filename}"
CANNED_PRIVATE = "private"


@dataclass(frozen=True)
class PostServer:
    """What a form upload needs of the server around it."""

    service: ObjectService
    users: UserDirectory
    settings: ApiSettings
    clock: Clock
    lookup_secret: LookupSecret
    # the request's access decision, finished once the form says who signed it
    access: RequestAccess
    # the request's context once the form says who sent it
    begin: Callable[[User, AuthResult], ReqCtx]


def _argument(name: str, message: str, value: str = "") -> S3Error:
    return S3Error("InvalidArgument", message, extra={"ArgumentName": name, "ArgumentValue": value})


async def post_object(
    request: web.Request, endpoint: Endpoint, server: PostServer, continue_pending: bool
) -> web.StreamResponse:
    bucket = endpoint.bucket
    assert bucket is not None, "the router names PostObject for a bucket only"
    if continue_pending:
        await send_continue(request)
    reader = await request.multipart()
    fields, part = await _read_fields(request, reader, server.settings.body_timeout)
    signed = post_policy.authenticate_form(
        fields,
        server.lookup_secret,
        region=server.settings.region,
        now=server.clock.now(),
        allow_sigv2=server.settings.sigv2,
    )
    if signed is None:  # anonymous: as far as the bucket's ACL and policy let anyone write
        user, principal = ANONYMOUS, None
    else:
        found = server.users.lookup(signed.access_key)
        if found is None:
            raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": signed.access_key})
        user, principal = found, found.canonical_id
    if part is None:
        raise _argument("file", "POST requires exactly one file upload per request.")
    key = fields.get("key")
    if key is None:
        raise _argument("key", "Bucket POST must contain a field named 'key'.")
    key = key.replace(FILENAME, part.filename or "")
    if not key:
        raise _argument("key", "User key must have a length greater than 0.")
    validate_key(key)
    if signed is not None:
        post_policy.check_conditions(signed.policy, {**fields, "key": key}, bucket)
    server.access.grant_form(principal, key)
    access_key = "" if signed is None else signed.access_key
    ctx = server.begin(user, AuthResult(access_key, UNSIGNED_PAYLOAD))
    honest.check(ctx)  # the request's own headers, as on a PUT
    _refuse_unimplemented(fields)
    acl = write_acl(ctx, _acl_fields(fields))
    storage_class = storage_class_named(fields.get("x-amz-storage-class"))
    lock = lock_ops.requested_lock(ctx, fields.get)
    length_range = None if signed is None else signed.policy.length_range
    low, high = length_range or (0, MAX_SINGLE_PUT)
    high = min(high, MAX_SINGLE_PUT)
    stored = [0]
    body = form_body(_file_chunks(ctx, part, high, stored), fields)

    def verify() -> None:
        if stored[0] < low:
            raise S3Error(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                extra={"ProposedSize": str(stored[0]), "MinSizeAllowed": str(low)},
            )
        body.verify()

    opts = PutOptions(
        owner_id=ctx.acting_id,
        content_type=fields.get("content-type") or "binary/octet-stream",
        user_meta=httpsem.extract_user_metadata(fields),
        headers=httpsem.stored_standard_headers(fields),
        hashers=body.hashers,
        verify=verify,
        checksums=body.checksums,
        tags=_tags(fields.get("tagging")),
        acl=acl,
        storage_class=storage_class,
        amendable=lock,
    )
    record = await ctx.service.put_object(bucket, key, body.chunks, opts)
    ctx.bytes_in = request.content.total_bytes
    return _answer(request, fields, bucket, key, record.etag, written_version(record))


def _refuse_unimplemented(fields: dict[str, str]) -> None:
    """A field asking for what Stratum does not do (server-side encryption: AWS takes it in a
    form as in a header) is refused as its header is (:mod:`stratum.s3.honest`): storing the
    file unencrypted and answering success would be a lie the page cannot see."""
    for name in fields:
        if name.startswith(honest.REFUSED):
            raise S3Error(
                "NotImplemented",
                f"Stratum does not implement this feature: the form field {name} is refused "
                "rather than ignored",
                extra={"Header": name},
            )


async def _read_fields(
    request: web.Request, reader: MultipartReader, seconds: float
) -> tuple[dict[str, str], BodyPartReader | None]:
    """The fields before the file (lower-cased names; the first of a repeated name wins),
    and the file's part, or None if the form has none."""
    fields: dict[str, str] = {}
    budget = MAX_FIELDS_BYTES
    while True:
        part = await within(request, seconds, reader.next())
        if part is None:
            return fields, None
        if not isinstance(part, BodyPartReader):
            raise S3Error("MalformedPOSTRequest")
        name = (part.name or "").lower()
        if name == "file":
            return fields, part
        budget -= len(name)
        data = bytearray()
        while chunk := await within(request, seconds, part.read_chunk(READ_CHUNK)):
            data += chunk
            if len(data) > budget:
                raise S3Error("MaxPostPreDataLengthExceeded")
        budget -= len(data)
        fields.setdefault(name, data.decode("utf-8", "surrogateescape"))


async def _file_chunks(
    ctx: ReqCtx, part: BodyPartReader, high: int, stored: list[int]
) -> AsyncIterator[bytes]:
    timeout = ctx.settings.body_timeout
    while chunk := await within(ctx.request, timeout, part.read_chunk(READ_CHUNK)):
        stored[0] += len(chunk)
        if stored[0] > high:
            raise S3Error(
                "EntityTooLarge",
                extra={"ProposedSize": str(stored[0]), "MaxSizeAllowed": str(high)},
            )
        yield chunk


def _tags(document: str | None) -> dict[str, str]:
    """The ``tagging`` field: a ``Tagging`` document, as PutObjectTagging takes it."""
    if not document:
        return {}
    return dict(parse_tagging(document.encode("utf-8", "surrogateescape")))


def _acl_fields(fields: dict[str, str]) -> dict[str, str]:
    """The form's ACL fields as the headers a PUT would carry them in."""
    out = {name: value for name, value in fields.items() if name.startswith("x-amz-grant-")}
    if "acl" in fields:
        out["x-amz-acl"] = fields["acl"]
    return out


def _answer(
    request: web.Request,
    fields: dict[str, str],
    bucket: str,
    key: str,
    etag: str,
    version: dict[str, str],
) -> web.StreamResponse:
    location = f"{request.scheme}://{request.host}/{quote(bucket)}/{quote(key, safe='/')}"
    headers = {"ETag": etag, "Location": location, **version}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https"):
        query = urlencode({"bucket": bucket, "key": key, "etag": quote_etag(etag)})
        headers["Location"] = f"{redirect}{'&' if '?' in redirect else '?'}{query}"
        return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status", "")
    if status == "200":
        return web.Response(status=200, headers=headers)
    if status == "201":
        w = XmlWriter("PostResponse", namespace=None)
        w.leaf("Location", location)
        w.leaf("Bucket", bucket)
        w.leaf("Key", key)
        w.leaf("ETag", quote_etag(etag))
        return web.Response(
            status=201, body=w.finish(), content_type="application/xml", headers=headers
        )
    return web.Response(status=204, headers=headers)
