"""Put/Get/DeleteBucketLifecycleConfiguration and the ``x-amz-expiration`` header.

A configuration is checked as AWS checks it and stored in the bucket's ``lifecycle`` setting
in the form :mod:`stratum.service.lifecycle` documents; GET renders it back as it was given
(a rule's legacy top-level ``Prefix`` stays one, a missing ``ID`` is the one generated).
Errors, as AWS answers them: a document of the wrong shape, a ``Status`` other than
``Enabled``/``Disabled``, a filter with a condition beside its ``And``, or an
action with more than one of its alternatives is ``MalformedXML``; an ``ID`` over 255
characters or used twice, more than 1,000 rules, a rule without an action, ``Days`` below 1
(``Expiration``, ``NoncurrentDays``, ``DaysAfterInitiation``) or below 0 (transitions), a
``Date`` not at midnight UTC, size bounds that leave nothing, or ``NewerNoncurrentVersions``
outside 1..100 is ``InvalidArgument``; a transition to a storage class Stratum has no tier
for is ``InvalidStorageClass``. Transitions are not held to AWS's 30-day minimum for
``STANDARD_IA``: the tiers are the user's own.
"""

from __future__ import annotations

import calendar
import datetime
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.s3 import httpsem
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.xml import XmlWriter
from stratum.s3.xml_requests import parse_document
from stratum.service import lifecycle
from stratum.service.lifecycle import SETTING, TIER_OF_TRANSITION_CLASS

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

MAX_BODY = 1 << 20
MAX_RULES = 1000
MAX_ID = 255
EXPIRATION_HEADER = "x-amz-expiration"


def _malformed(detail: str) -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published "
        f"schema ({detail})",
    )


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidArgument", message)


def _only(element: ET.Element, name: str) -> ET.Element | None:
    found = [c for c in element if c.tag == name]
    if len(found) > 1:
        raise _malformed(f"{element.tag} has more than one {name}")
    return found[0] if found else None


def _text(element: ET.Element, name: str) -> str | None:
    child = _only(element, name)
    return None if child is None else (child.text or "")


def _int(element: ET.Element, name: str, *, minimum: int, what: str) -> int | None:
    raw = _text(element, name)
    if raw is None:
        return None
    value = raw.strip()
    if not (value.lstrip("-").isascii() and value.lstrip("-").isdigit()):
        raise _malformed(f"{name} must be an integer")
    number = int(value)
    if number < minimum:
        raise _invalid(f"'{name}' for {what} must be {_at_least(minimum)}")
    return number


def _at_least(minimum: int) -> str:
    return "a positive integer" if minimum == 1 else "a nonnegative integer"


def _date(element: ET.Element, name: str = "Date") -> float | None:
    raw = _text(element, name)
    if raw is None:
        return None
    text = raw.strip().replace("Z", "+00:00")
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _invalid("Invalid date: 'Date' must be in ISO 8601 format") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    when = when.astimezone(datetime.UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise _invalid("'Date' must be at midnight GMT")
    return float(calendar.timegm(when.timetuple()))


def _tag(element: ET.Element) -> dict[str, str]:
    key, value = _text(element, "Key"), _text(element, "Value")
    if key is None:
        raise _malformed("a Tag has no Key")
    return {"Key": key, "Value": value or ""}


def _size_bounds(spec: dict[str, Any], element: ET.Element) -> None:
    for name in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        value = _int(element, name, minimum=0, what="the filter")
        if value is not None:
            spec[name] = value
    gt, lt = spec.get("ObjectSizeGreaterThan"), spec.get("ObjectSizeLessThan")
    if gt is not None and lt is not None and gt >= lt:
        raise _invalid("ObjectSizeGreaterThan must be less than ObjectSizeLessThan")


_FILTER_CONDITIONS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")


def _filter(element: ET.Element) -> dict[str, Any]:
    """A Filter's conditions. AWS's schema has one condition or an ``And`` of several; a
    Filter naming several without ``And`` (as Ceph's clients send) is taken as their ``And``
    and read back as given."""
    present = [c.tag for c in element if c.tag in _FILTER_CONDITIONS]
    if "And" in present and len(present) > 1:
        raise _malformed("a Filter with And holds no other condition")
    spec: dict[str, Any] = {}
    prefix = _text(element, "Prefix")
    if prefix is not None:
        spec["Prefix"] = prefix
    tag = _only(element, "Tag")
    if tag is not None:
        spec["Tag"] = _tag(tag)
    _size_bounds(spec, element)
    both = _only(element, "And")
    if both is not None:
        inner: dict[str, Any] = {}
        prefix = _text(both, "Prefix")
        if prefix is not None:
            inner["Prefix"] = prefix
        tags = [_tag(t) for t in both if t.tag == "Tag"]
        if len({t["Key"] for t in tags}) != len(tags):
            raise _invalid("Duplicate Tag Keys are not allowed.")
        if tags:
            inner["Tags"] = tags
        _size_bounds(inner, both)
        spec["And"] = inner
    return spec


def _expiration(element: ET.Element) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    days = _int(element, "Days", minimum=1, what="Expiration action")
    date = _date(element)
    marker = _text(element, "ExpiredObjectDeleteMarker")
    if days is not None:
        spec["Days"] = days
    if date is not None:
        spec["Date"] = date
    if marker is not None:
        if marker.strip().lower() not in ("true", "false"):
            raise _malformed("ExpiredObjectDeleteMarker must be true or false")
        spec["ExpiredObjectDeleteMarker"] = marker.strip().lower() == "true"
    if len(spec) != 1:
        raise _malformed("an Expiration holds exactly one of Days, Date, ExpiredObjectDeleteMarker")
    return spec


def _transition(element: ET.Element, noncurrent: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    days_name = "NoncurrentDays" if noncurrent else "Days"
    days = _int(element, days_name, minimum=0, what="Transition action")
    date = None if noncurrent else _date(element)
    if days is not None:
        spec[days_name] = days
    if date is not None:
        spec["Date"] = date
    if len(spec) != 1:
        raise _malformed(f"a transition holds exactly one of {days_name} or Date")
    if noncurrent:
        newer = _int(element, "NewerNoncurrentVersions", minimum=1, what="the transition")
        if newer is not None:
            spec["NewerNoncurrentVersions"] = newer
    storage_class = (_text(element, "StorageClass") or "").strip()
    if storage_class not in TIER_OF_TRANSITION_CLASS:
        raise S3Error("InvalidStorageClass", extra={"StorageClassRequested": storage_class})
    spec["StorageClass"] = storage_class
    return spec


def _rule(element: ET.Element) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    rule_id = _text(element, "ID")
    if rule_id is not None:
        if len(rule_id) > MAX_ID:
            raise _invalid(f"ID length should not exceed allowed limit of {MAX_ID}")
        rule["ID"] = rule_id
    status = (_text(element, "Status") or "").strip()
    if status not in ("Enabled", "Disabled"):
        raise _malformed("Status must be Enabled or Disabled")
    rule["Status"] = status
    prefix = _text(element, "Prefix")
    found = _only(element, "Filter")
    if prefix is not None and found is not None:
        raise _malformed("a Rule has a Prefix or a Filter, not both")
    if prefix is not None:
        rule["Prefix"] = prefix
    if found is not None:
        rule["Filter"] = _filter(found)
    expiration = _only(element, "Expiration")
    if expiration is not None:
        rule["Expiration"] = _expiration(expiration)
    noncurrent = _only(element, "NoncurrentVersionExpiration")
    if noncurrent is not None:
        days = _int(noncurrent, "NoncurrentDays", minimum=1, what="NoncurrentVersionExpiration")
        if days is None:
            raise _malformed("NoncurrentVersionExpiration has no NoncurrentDays")
        spec: dict[str, Any] = {"NoncurrentDays": days}
        newer = _int(noncurrent, "NewerNoncurrentVersions", minimum=1, what="the expiration")
        if newer is not None:
            if newer > 100:
                raise _invalid("'NewerNoncurrentVersions' must be at most 100")
            spec["NewerNoncurrentVersions"] = newer
        rule["NoncurrentVersionExpiration"] = spec
    abort = _only(element, "AbortIncompleteMultipartUpload")
    if abort is not None:
        days = _int(abort, "DaysAfterInitiation", minimum=1, what="AbortIncompleteMultipartUpload")
        if days is None:
            raise _malformed("AbortIncompleteMultipartUpload has no DaysAfterInitiation")
        if _has_tags(rule):
            raise _invalid("AbortIncompleteMultipartUpload cannot be specified with Tags.")
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    transitions = [_transition(t, False) for t in element if t.tag == "Transition"]
    if transitions:
        rule["Transitions"] = transitions
    noncurrent_transitions = [
        _transition(t, True) for t in element if t.tag == "NoncurrentVersionTransition"
    ]
    if noncurrent_transitions:
        rule["NoncurrentVersionTransitions"] = noncurrent_transitions
    actions = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
    if not any(a in rule for a in (*actions, "Transitions", "NoncurrentVersionTransitions")):
        raise _invalid("At least one action needs to be specified in a rule")
    marker = rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker")
    if marker and _has_tags(rule):
        raise _invalid("ExpiredObjectDeleteMarker cannot be specified with tags.")
    return rule


def _has_tags(rule: Mapping[str, Any]) -> bool:
    spec = rule.get("Filter", {})
    return "Tag" in spec or bool(spec.get("And", {}).get("Tags"))


def parse_lifecycle(body: bytes) -> dict[str, Any]:
    """A LifecycleConfiguration document, checked, as :mod:`stratum.service.lifecycle`
    stores it."""
    root = parse_document(body, MAX_BODY)
    if root.tag != "LifecycleConfiguration":
        raise _malformed(f"expected a LifecycleConfiguration, got {root.tag}")
    elements = [r for r in root if r.tag == "Rule"]
    if not elements:
        raise _malformed("no Rule")
    if len(elements) > MAX_RULES:
        raise _invalid(f"A lifecycle configuration holds at most {MAX_RULES} rules")
    rules = [_rule(r) for r in elements]
    ids = [r["ID"] for r in rules if "ID" in r]
    if len(set(ids)) != len(ids):
        raise _invalid("Rule ID must be unique. Found same ID for more than one rule")
    taken = set(ids)
    for rule in rules:
        while "ID" not in rule:
            candidate = secrets.token_hex(16)
            if candidate not in taken:
                rule["ID"] = candidate
                taken.add(candidate)
    return {"v": lifecycle.FORMAT, "rules": rules}


# -- rendering ------------------------------------------------------------------------------

_LIST_ELEMENT = {
    "Transitions": "Transition",
    "NoncurrentVersionTransitions": "NoncurrentVersionTransition",
    "Tags": "Tag",
}


def _iso_date(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _render(w: XmlWriter, name: str, value: Any) -> None:
    if isinstance(value, dict):
        w.start(name)
        for child, inner in value.items():
            _render(w, child, inner)
        w.end()
    elif isinstance(value, list):
        for item in value:
            _render(w, _LIST_ELEMENT[name], item)
    elif name == "Date":
        w.leaf(name, _iso_date(float(value)))
    else:
        w.leaf(name, value)


def lifecycle_document(stored: Mapping[str, Any]) -> bytes:
    w = XmlWriter("LifecycleConfiguration")
    for rule in stored.get("rules", []):
        _render(w, "Rule", rule)
    return w.finish()


# -- handlers -------------------------------------------------------------------------------


async def get_bucket_lifecycle(ctx: ReqCtx) -> web.StreamResponse:
    bucket = ctx.service.get_bucket(ctx.bucket, ctx.acting_id)
    stored = bucket.settings.get(SETTING)
    if not stored:
        raise S3Error("NoSuchLifecycleConfiguration", extra={"BucketName": ctx.bucket})
    return xml_response(lifecycle_document(stored))


async def put_bucket_lifecycle(ctx: ReqCtx) -> web.StreamResponse:
    config = parse_lifecycle(await read_document(ctx, MAX_BODY))
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, SETTING, config)
    return web.Response(status=200)


async def delete_bucket_lifecycle(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, SETTING, None)
    return web.Response(status=204)


def expiration_headers(bucket: BucketRecord | None, record: ObjectRecord) -> dict[str, str]:
    """``x-amz-expiration`` for the current version ``record`` if a rule will expire it.

    In real days, whatever ``[lifecycle] day_seconds`` says: that setting shortens the
    worker's days for a test, and the header keeps telling what the rule means (as Ceph's
    with ``rgw_lc_debug_interval``, which the conformance suite expects)."""
    if bucket is None or SETTING not in bucket.settings:
        return {}
    when, rule_id = lifecycle.expiry_of(lifecycle.compile_rules(bucket.settings[SETTING]), record)
    if not rule_id:
        return {}
    value = f'expiry-date="{httpsem.http_date(when)}", rule-id="{quote(rule_id, safe="")}"'
    return {EXPIRATION_HEADER: value}


def written_expiration(ctx: ReqCtx, record: ObjectRecord) -> dict[str, str]:
    """``x-amz-expiration`` for a version a PUT, copy or completed upload just wrote."""
    return expiration_headers(ctx.service.get_bucket(ctx.bucket, ctx.acting_id), record)


HANDLERS: Mapping[str, Handler] = {
    "GetBucketLifecycleConfiguration": get_bucket_lifecycle,
    "PutBucketLifecycleConfiguration": put_bucket_lifecycle,
    "DeleteBucketLifecycle": delete_bucket_lifecycle,
}
