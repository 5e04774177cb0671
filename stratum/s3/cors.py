"""CORS: a bucket's rules (Put/Get/DeleteBucketCors), preflight ``OPTIONS`` and the
``Access-Control-*`` headers of actual requests, as AWS answers them.

Rules
    A ``CORSConfiguration`` holds 1 to 100 ``CORSRule`` elements, each with one or more
    ``AllowedOrigin`` and ``AllowedMethod`` (GET, PUT, POST, DELETE, HEAD), any number of
    ``AllowedHeader`` and ``ExposeHeader``, an optional ``ID`` and ``MaxAgeSeconds``. An
    origin or allowed header may hold one ``*`` wildcard, which matches any run of
    characters (``*`` alone: anything). Origins match case-sensitively, header names not.

Matching
    The first rule whose origins match the request's ``Origin``, whose methods hold the
    method asked for (a preflight's ``Access-Control-Request-Method``; on an actual request
    that header if sent, else the request's own method) and, for a preflight, whose allowed
    headers cover every name in ``Access-Control-Request-Headers`` answers the request.

Preflight (``OPTIONS``, answered before any signature check: browsers send none)
    No ``Origin`` or no ``Access-Control-Request-Method``: 400. A bucket without rules, or no
    rule matching: 403 ``AccessForbidden``. A match: 200 with ``Access-Control-Allow-Origin``
    (``*`` when the rule's origin is ``*``, else the origin, with
    ``Access-Control-Allow-Credentials: true``), ``-Allow-Methods`` (the rule's methods),
    ``-Allow-Headers`` (the names asked for), ``-Expose-Headers`` and ``-Max-Age`` when the
    rule has them, and ``Vary``.

Actual requests
    A request naming a bucket and carrying ``Origin`` gets the same headers (no
    ``-Allow-Headers`` or ``-Max-Age``) on whatever it is answered, errors included, when a
    rule matches; nothing otherwise.

Stored form: ``BucketRecord.settings["cors"]`` is ``{"v": 1, "rules": [rule, ...]}``, each
rule ``{"id": str | None, "origins": [...], "methods": [...], "headers": [...],
"expose": [...], "max_age": int | None}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from stratum.meta.records import BucketRecord
from stratum.s3 import httpsem
from stratum.s3.bucket_ops import XML, read_document
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.xml import XmlWriter
from stratum.s3.xml_requests import document_root, malformed

SETTING = "cors"
FORMAT_VERSION = 1
MAX_CORS_BODY = 64 * 1024
MAX_RULES = 100
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


@dataclass(frozen=True, slots=True)
class CorsRule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age: int | None = None
    id: str | None = None

    def to_setting(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origins": list(self.origins),
            "methods": list(self.methods),
            "headers": list(self.headers),
            "expose": list(self.expose),
            "max_age": self.max_age,
        }

    @classmethod
    def from_setting(cls, value: Mapping[str, Any]) -> CorsRule:
        return cls(
            origins=tuple(value["origins"]),
            methods=tuple(value["methods"]),
            headers=tuple(value.get("headers", ())),
            expose=tuple(value.get("expose", ())),
            max_age=value.get("max_age"),
            id=value.get("id"),
        )

    def allows_origin(self, origin: str) -> str | None:
        """The pattern that lets ``origin`` in, or None."""
        return next((p for p in self.origins if wildcard_match(p, origin)), None)

    def allows_headers(self, names: Sequence[str]) -> bool:
        patterns = [p.lower() for p in self.headers]
        return all(any(wildcard_match(p, n.lower()) for p in patterns) for n in names)


def wildcard_match(pattern: str, value: str) -> bool:
    """``pattern`` with at most one ``*``, which stands for any run of characters."""
    head, star, tail = pattern.partition("*")
    if not star:
        return pattern == value
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


# --- the configuration document ------------------------------------------------------------


def parse_cors_configuration(body: bytes) -> list[CorsRule]:
    """PutBucketCors' document; ``MalformedXML`` for a shape AWS refuses, ``InvalidRequest``
    for a method S3 does not know or a pattern with two wildcards (AWS's answers)."""
    root = document_root(body, MAX_CORS_BODY, "CORSConfiguration")
    rules: list[CorsRule] = []
    for element in root:
        if element.tag != "CORSRule":
            continue
        if len(rules) == MAX_RULES:
            raise malformed(f"more than {MAX_RULES} CORS rules")
        rules.append(_parse_rule(element))
    if not rules:
        raise malformed("no CORSRule")
    return rules


def _texts(element: Any, name: str) -> list[str]:
    return [(child.text or "").strip() for child in element if child.tag == name]


def _parse_rule(element: Any) -> CorsRule:
    origins = _texts(element, "AllowedOrigin")
    methods = _texts(element, "AllowedMethod")
    if not origins or not methods:
        raise malformed("a CORSRule needs AllowedOrigin and AllowedMethod")
    for method in methods:
        if method not in METHODS:
            raise S3Error(
                "InvalidRequest",
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}",
            )
    headers = _texts(element, "AllowedHeader")
    for kind, values in (("AllowedOrigin", origins), ("AllowedHeader", headers)):
        for value in values:
            if value.count("*") > 1:
                raise S3Error(
                    "InvalidRequest", f'{kind} "{value}" can not have more than one wildcard.'
                )
    ids = _texts(element, "ID")
    ages = _texts(element, "MaxAgeSeconds")
    if len(ids) > 1 or len(ages) > 1:
        raise malformed("a CORSRule has one ID and one MaxAgeSeconds at most")
    max_age: int | None = None
    if ages:
        if not (ages[0].isascii() and ages[0].lstrip("-").isdigit()):
            raise malformed("MaxAgeSeconds must be an integer")
        max_age = int(ages[0])
    return CorsRule(
        origins=tuple(origins),
        methods=tuple(methods),
        headers=tuple(headers),
        expose=tuple(_texts(element, "ExposeHeader")),
        max_age=max_age,
        id=ids[0] if ids else None,
    )


def configuration_xml(rules: Sequence[CorsRule]) -> bytes:
    w = XmlWriter("CORSConfiguration")
    for rule in rules:
        w.start("CORSRule")
        w.optional("ID", rule.id)
        for header in rule.headers:
            w.leaf("AllowedHeader", header)
        for method in rule.methods:
            w.leaf("AllowedMethod", method)
        for origin in rule.origins:
            w.leaf("AllowedOrigin", origin)
        for header in rule.expose:
            w.leaf("ExposeHeader", header)
        w.optional("MaxAgeSeconds", rule.max_age)
        w.end()
    return w.finish()


def bucket_rules(bucket: BucketRecord) -> list[CorsRule]:
    value = bucket.settings.get(SETTING)
    if not value:
        return []
    return [CorsRule.from_setting(r) for r in value["rules"]]


# --- handlers ------------------------------------------------------------------------------


async def put_bucket_cors(ctx: ReqCtx) -> web.StreamResponse:
    document = await read_document(ctx, MAX_CORS_BODY, checksums=True)
    md5 = ctx.header("Content-MD5")
    if md5 is not None and httpsem.parse_content_md5(md5) != hashlib.md5(document).digest():
        raise S3Error("BadDigest")
    rules = parse_cors_configuration(document)
    value = {"v": FORMAT_VERSION, "rules": [r.to_setting() for r in rules]}
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, SETTING, value)
    return web.Response(status=200)


async def get_bucket_cors(ctx: ReqCtx) -> web.StreamResponse:
    rules = bucket_rules(ctx.service.get_bucket(ctx.bucket, ctx.acting_id))
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", extra={"BucketName": ctx.bucket})
    return web.Response(body=configuration_xml(rules), content_type=XML)


async def delete_bucket_cors(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.acting_id, SETTING, None)
    return web.Response(status=204)


HANDLERS: Mapping[str, Handler] = {
    "PutBucketCors": put_bucket_cors,
    "GetBucketCors": get_bucket_cors,
    "DeleteBucketCors": delete_bucket_cors,
}


# --- answering browsers --------------------------------------------------------------------


def _requested_headers(raw: str | None) -> list[str]:
    return [name.strip() for name in (raw or "").split(",") if name.strip()]


def _allow(rule: CorsRule, pattern: str, origin: str) -> dict[str, str]:
    headers = {"Access-Control-Allow-Methods": ", ".join(rule.methods), "Vary": VARY}
    if pattern == "*":
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    if rule.expose:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose)
    return headers


def _first_match(
    rules: Sequence[CorsRule], origin: str, method: str, asked: Sequence[str]
) -> tuple[CorsRule, str] | None:
    for rule in rules:
        pattern = rule.allows_origin(origin)
        if pattern is not None and method in rule.methods and rule.allows_headers(asked):
            return rule, pattern
    return None


def preflight(
    bucket: BucketRecord | None, name: str, on_object: bool, headers: Mapping[str, str]
) -> web.Response:
    """The answer to an ``OPTIONS`` request for bucket ``name`` (record ``bucket``), or for
    an object in it."""
    origin = headers.get("Origin")
    if origin is None:
        raise S3Error("InvalidRequest", "Insufficient information. Origin request header needed.")
    method = headers.get("Access-Control-Request-Method")
    if method is None:
        raise S3Error("InvalidRequest", "Invalid Access-Control-Request-Method: null")
    if bucket is None:
        raise S3Error("NoSuchBucket", extra={"BucketName": name})
    asked = _requested_headers(headers.get("Access-Control-Request-Headers"))
    rules = bucket_rules(bucket)
    found = _first_match(rules, origin, method, asked)
    if found is None:
        message = (
            "CORSResponse: This CORS request is not allowed. This is usually because the "
            "evalution of Origin, request method / Access-Control-Request-Method or "
            "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
            if rules
            else "CORSResponse: CORS is not enabled for this bucket."
        )
        resource_type = "OBJECT" if on_object else "BUCKET"
        raise S3Error(
            "AccessForbidden", message, extra={"Method": method, "ResourceType": resource_type}
        )
    rule, pattern = found
    out = _allow(rule, pattern, origin)
    if asked:
        out["Access-Control-Allow-Headers"] = ", ".join(h.lower() for h in asked)
    if rule.max_age is not None:
        out["Access-Control-Max-Age"] = str(rule.max_age)
    return web.Response(status=200, headers=out)


def actual_request_headers(
    bucket: BucketRecord | None, method: str, headers: Mapping[str, str]
) -> dict[str, str]:
    """The ``Access-Control-*`` headers an actual (not preflight) request gets: none unless
    it carries ``Origin`` and a rule of the bucket matches."""
    origin = headers.get("Origin")
    if origin is None or bucket is None:
        return {}
    rules = bucket_rules(bucket)
    if not rules:
        return {}
    asked_method = headers.get("Access-Control-Request-Method") or method
    found = _first_match(rules, origin, asked_method, ())
    return {} if found is None else _allow(found[0], found[1], origin)
