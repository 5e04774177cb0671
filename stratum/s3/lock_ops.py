"""Object Lock over S3: the bucket's lock configuration, a version's retention and legal
hold, the lock headers of writes, and what reads show of them.

The decisions are the object service's (:mod:`stratum.service.locks`); this module reads
and writes S3's documents and headers, with the errors AWS answers:

- ``PUT/GET ?object-lock``: ObjectLockConfiguration. Enabling it needs versioning Enabled
  (409 InvalidBucketState); a DefaultRetention needs a Mode (GOVERNANCE or COMPLIANCE,
  exactly so spelled) and Days or Years, not both (MalformedXML), a positive number
  (InvalidRetentionPeriod).
- ``PUT/GET ?retention``, ``PUT/GET ?legal-hold`` (with ``versionId``): in a bucket without
  Object Lock, InvalidRequest; a retention that may not be changed, AccessDenied.
- Writes (PUT, CopyObject, CreateMultipartUpload) take ``x-amz-object-lock-mode`` with
  ``x-amz-object-lock-retain-until-date`` (both or neither) and
  ``x-amz-object-lock-legal-hold``; a PUT or UploadPart that sets a lock, or lands in a
  bucket with a default retention, must carry Content-MD5 or an ``x-amz-checksum-*``
  value (InvalidRequest), as AWS requires.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.s3 import httpsem
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.lookup import view_object
from stratum.s3.xml import XmlWriter
from stratum.s3.xml_requests import _malformed, _one, _optional_text, _root
from stratum.service import locks

MAX_LOCK_BODY = 64 * 1024
MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
MISSING_LOCK = "Bucket is missing Object Lock Configuration"
DIGEST_NEEDED = (
    "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with "
    "Object Lock parameters"
)


def missing_lock() -> S3Error:
    return S3Error("InvalidRequest", MISSING_LOCK)


def bypass_governance(ctx: ReqCtx) -> bool:
    """The request asks to bypass GOVERNANCE retention, and may: only the bucket's owner
    may (a policy granting s3:BypassGovernanceRetention to others is not honoured)."""
    asked = (ctx.header(BYPASS_HEADER) or "").strip().lower() == "true"
    return asked and ctx.user.canonical_id == ctx.acting_id


def parse_date(value: str, what: str) -> float:
    """An ISO 8601 date-time (UTC unless it says otherwise), as epoch seconds."""
    try:
        when = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise S3Error("InvalidArgument", f"{what} must be an ISO 8601 date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


# -- the lock headers of writes ------------------------------------------------------------


def requested_lock(ctx: ReqCtx, named: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The lock fields a write's headers ask for (none: ``{}``), validated as AWS does;
    ``named``: where else to look them up by (lower-case) name, a form upload's fields."""
    get = ctx.header if named is None else named
    mode, until, hold = get(MODE_HEADER), get(UNTIL_HEADER), get(HOLD_HEADER)
    out: dict[str, Any] = {}
    if (mode is None) != (until is None):
        raise S3Error(
            "InvalidArgument",
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
        )
    if mode is not None and until is not None:
        if mode not in locks.MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.")
        when = parse_date(until, UNTIL_HEADER)
        if when <= ctx.service.clock.now():
            raise S3Error("InvalidArgument", "The retain until date must be in the future!")
        out["lock_mode"], out["lock_until"] = mode, when
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'")
        out["legal_hold"] = hold == "ON"
    if out and not ctx.service.get_bucket(ctx.bucket, ctx.acting_id).object_lock:
        raise missing_lock()
    return out


def has_digest(ctx: ReqCtx) -> bool:
    """The request carries Content-MD5 or a checksum of its body (a header or a trailer), or
    a signed SHA-256 of its payload (``x-amz-content-sha256`` as a digest, or signed chunks),
    which the body reader verifies as surely: clients that sign payloads over plain HTTP
    (restic, rclone) send no other. AWS asks for the first two only."""
    headers = ctx.request.headers
    if "Content-MD5" in headers or "x-amz-sdk-checksum-algorithm" in headers:
        return True
    payload = headers.get("x-amz-content-sha256") or ""
    if len(payload) == 64 or payload.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        return True
    if "x-amz-checksum" in (headers.get("x-amz-trailer") or "").lower():
        return True
    return any(name.lower().startswith("x-amz-checksum-") for name in headers)


def require_digest(ctx: ReqCtx, requested: Mapping[str, Any]) -> None:
    """AWS's rule for a PUT or UploadPart: with lock settings, or into a bucket with a default
    retention, a digest of the body must come with it."""
    if has_digest(ctx):
        return
    if any(requested.get(name) for name in locks.LOCK_FIELDS):
        raise S3Error("InvalidRequest", DIGEST_NEEDED)
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    if bucket.object_lock and bucket.lock_default.get("mode"):
        raise S3Error("InvalidRequest", DIGEST_NEEDED)


def lock_headers(record: ObjectRecord) -> dict[str, str]:
    """What GET and HEAD show of a version's lock (nothing when it has none)."""
    out: dict[str, str] = {}
    if record.lock_mode:
        out[MODE_HEADER] = record.lock_mode
        out[UNTIL_HEADER] = httpsem.iso8601(record.lock_until)
    if record.legal_hold:
        out[HOLD_HEADER] = "ON"
    return out


# -- the bucket's configuration -------------------------------------------------------------


def parse_lock_configuration(body: bytes) -> dict[str, Any]:
    """ObjectLockConfiguration: the default retention it names (``{}``: none)."""
    root = _root(body, MAX_LOCK_BODY, "ObjectLockConfiguration")
    enabled = _optional_text(root, "ObjectLockEnabled")
    if enabled is None or enabled.strip() != "Enabled":
        raise _malformed("ObjectLockEnabled must be Enabled")
    rule = _container(root, "Rule")
    if rule is None:
        return {}
    default = _container(rule, "DefaultRetention")
    if default is None:
        raise _malformed("Rule has no DefaultRetention")
    mode = _optional_text(default, "Mode")
    if mode is None or mode.strip() not in locks.MODES:
        raise _malformed("Mode must be GOVERNANCE or COMPLIANCE")
    days, years = _optional_text(default, "Days"), _optional_text(default, "Years")
    if (days is None) == (years is None):
        raise _malformed("DefaultRetention needs Days or Years, not both")
    unit, text = ("days", days) if days is not None else ("years", years)
    assert text is not None
    try:
        count = int(text.strip())
    except ValueError:
        raise _malformed(f"{unit} must be an integer") from None
    if count <= 0:
        raise S3Error(
            "InvalidRetentionPeriod", "Default retention period must be a positive integer value."
        )
    return {"mode": mode.strip(), unit: count}


def _container(element: Any, name: str) -> Any:
    found = [child for child in element if child.tag == name]
    if len(found) > 1:
        raise _malformed(f"{element.tag} has more than one {name}")
    return found[0] if found else None


async def put_lock_configuration(ctx: ReqCtx) -> web.StreamResponse:
    default = parse_lock_configuration(await read_document(ctx, MAX_LOCK_BODY))

    def change(record: BucketRecord) -> bool:
        if not record.object_lock and record.versioning != "Enabled":
            raise S3Error(
                "InvalidBucketState",
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
            )
        changed = not record.object_lock or record.lock_default != default
        record.object_lock, record.lock_default = True, default
        return changed

    await ctx.service.configure_bucket(ctx.bucket, ctx.acting_id, change)
    return web.Response(status=200)


async def get_lock_configuration(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    if not bucket.object_lock:
        raise S3Error("ObjectLockConfigurationNotFoundError", extra={"BucketName": ctx.bucket})
    w = XmlWriter("ObjectLockConfiguration")
    w.leaf("ObjectLockEnabled", "Enabled")
    default = bucket.lock_default
    if default.get("mode"):
        w.start("Rule")
        w.start("DefaultRetention")
        w.leaf("Mode", str(default["mode"]))
        for unit, tag in (("days", "Days"), ("years", "Years")):
            if unit in default:
                w.leaf(tag, int(default[unit]))
        w.end()
        w.end()
    return xml_response(w.finish())


# -- a version's retention and legal hold ---------------------------------------------------


def _versioned(response: web.Response, record: ObjectRecord) -> web.Response:
    response.headers["x-amz-version-id"] = record.version_id
    return response


async def put_retention(ctx: ReqCtx) -> web.StreamResponse:
    root = _root(await read_document(ctx, MAX_LOCK_BODY), MAX_LOCK_BODY, "Retention")
    mode, until_text = _optional_text(root, "Mode"), _optional_text(root, "RetainUntilDate")
    if mode is not None and mode.strip() not in locks.MODES:
        raise _malformed("Mode must be GOVERNANCE or COMPLIANCE")
    if (mode is None) != (until_text is None):
        raise _malformed("Retention needs both Mode and RetainUntilDate, or neither")
    until = 0.0
    if until_text is not None:
        until = parse_date(until_text, "RetainUntilDate")
        if until <= ctx.service.clock.now():
            raise S3Error("InvalidArgument", "The retain until date must be in the future!")
    set_it = functools.partial(
        locks.set_retention,
        mode=(mode or "").strip(),
        until=until,
        bypass_governance=bypass_governance(ctx),
    )
    return await _amend_lock(ctx, set_it)


async def _amend_lock(ctx: ReqCtx, set_it: Callable[..., Awaitable[ObjectRecord]]) -> web.Response:
    """Run a lock change on the version the request names; answer with its id."""
    try:
        record = await set_it(
            ctx.service, ctx.bucket, ctx.key, ctx.endpoint.version_id, ctx.acting_id
        )
    except locks.NotLockable:
        raise missing_lock() from None
    return _versioned(web.Response(status=200), record)


async def get_retention(ctx: ReqCtx) -> web.StreamResponse:
    record = _version(ctx)
    if not record.lock_mode:
        raise S3Error(
            "NoSuchObjectLockConfiguration",
            "The specified object does not have a ObjectLock configuration",
        )
    w = XmlWriter("Retention")
    w.leaf("Mode", record.lock_mode)
    w.leaf("RetainUntilDate", httpsem.iso8601(record.lock_until))
    return _versioned(xml_response(w.finish()), record)


async def put_legal_hold(ctx: ReqCtx) -> web.StreamResponse:
    root = _root(await read_document(ctx, MAX_LOCK_BODY), MAX_LOCK_BODY, "LegalHold")
    status = _one(root, "Status")
    value = (status.text or "").strip() if status is not None else ""
    if value not in ("ON", "OFF"):
        raise _malformed("Status must be ON or OFF")
    return await _amend_lock(ctx, functools.partial(locks.set_legal_hold, on=value == "ON"))


async def get_legal_hold(ctx: ReqCtx) -> web.StreamResponse:
    record = _version(ctx)
    w = XmlWriter("LegalHold")
    w.leaf("Status", "ON" if record.legal_hold else "OFF")
    return _versioned(xml_response(w.finish()), record)


def _version(ctx: ReqCtx) -> ObjectRecord:
    try:
        locks.lockable(ctx.service, ctx.bucket, ctx.acting_id)
    except locks.NotLockable:
        raise missing_lock() from None
    view = view_object(ctx, ctx.bucket, ctx.key, ctx.endpoint.version_id, ctx.request.method)
    return view.record


HANDLERS: Mapping[str, Handler] = {
    "PutObjectLockConfiguration": put_lock_configuration,
    "GetObjectLockConfiguration": get_lock_configuration,
    "PutObjectRetention": put_retention,
    "GetObjectRetention": get_retention,
    "PutObjectLegalHold": put_legal_hold,
    "GetObjectLegalHold": get_legal_hold,
}
