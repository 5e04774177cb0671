"""Request routing: an HTTP request is parsed once into a typed :class:`Endpoint`.

:func:`route` is pure (no aiohttp): the server hands it the method, the Host header,
the percent-encoded path as it came on the wire, the decoded query pairs and the headers,
and gets back the AWS operation name plus everything a handler needs to identify its
target (bucket, key, upload id, part number, version id, copy source).

Addressing
    Virtual-hosted style when the host (port stripped, lower-cased, trailing dot removed)
    ends with ``"." + domain`` and ``domain`` is non-empty: the labels before the domain are
    the bucket and the whole path is the key. Otherwise path style: ``/bucket/key...``.
    The path is split on ``/`` *before* percent-decoding, so ``%2F`` in a key is a plain
    slash inside the key and ``%2F`` in the bucket segment makes the bucket name invalid.
    Keys are taken verbatim: ``+`` stays ``+``, ``../`` is not resolved, a trailing slash is
    part of the key. A malformed escape or invalid UTF-8 is ``InvalidURI``.

Dispatch
    :data:`RULES` is the dispatch table, one row per (method, target kind, required
    features) -> operation and how it consumes the request body (:class:`BodyKind`).
    A request's *features* are its query keys (``acl``, ``uploadId``...) plus a few
    derived tokens: ``H:x-amz-copy-source`` when that header is present, ``FORM`` for a
    multipart/form-data body, ``FORMURL`` for an x-www-form-urlencoded body. Precedence,
    independent of row order:

    1. a row matches when all its required features are present;
    2. the matching row with the most required *query keys* wins, then the one with the
       most other features (so a subresource beats a header: ``PUT ?acl`` with a copy
       source is PutObjectAcl; ``?partNumber&uploadId`` + copy source is UploadPartCopy);
    3. a tie between different operations (``GET ?acl&tagging``) is ``Unsupported``;
    4. a known S3 subresource left over after the choice (``GET /b?inventory``, an
       unimplemented one, or ``?partNumber`` on a PutObject) is ``Unsupported`` unless the
       row tolerates it (GetObject/HeadObject tolerate ``partNumber``; Preflight anything).

    No matching row (unknown method, ``PUT /b?website``, ``POST /b/k``) is ``Unsupported``.

Validation done here, so no handler can forget it: bucket names (:func:`validate_bucket_name`,
for every operation, path- or host-addressed, and for copy sources), key length
(:func:`validate_key`), ``partNumber`` (1..10000), ``versionId`` (``null`` or the shape of the
ids this store gives, :func:`check_version_id`), ``list-type`` (only ``2``), and the
copy-source header syntax.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from stratum.meta.versions import InvalidVersionId, parse_version_id
from stratum.s3.errors import S3Error

MAX_KEY_BYTES = 1024
MAX_PART_NUMBER = 10_000
COPY_SOURCE_HEADER = "x-amz-copy-source"


class Target(enum.Enum):
    """What the request addresses."""

    SERVICE = "service"
    BUCKET = "bucket"
    OBJECT = "object"


class BodyKind(enum.Enum):
    """How the server should treat the request body before calling the handler."""

    NONE = "none"  # no body expected; the server need not read it
    DOCUMENT = "document"  # a small XML/JSON document: read fully, under a size limit
    STREAM = "stream"  # object data (or a form upload): stream it to the object service


@dataclass(frozen=True, slots=True)
class CopySource:
    """The decoded ``x-amz-copy-source`` header: ``/bucket/key[?versionId=...]``."""

    bucket: str
    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One parsed request: the AWS operation and its identifying arguments.

    ``name`` is the AWS operation name ("PutObject"), or one of :data:`UNSUPPORTED`,
    :data:`UNSUPPORTED_SERVICE_ACTION`, :data:`PREFLIGHT`. ``detail`` says why an
    ``Unsupported`` endpoint was chosen (for the error message and logs).
    """

    name: str
    target: Target
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    upload_id: str | None = None
    part_number: int | None = None
    list_type: int | None = None
    copy_source: CopySource | None = None
    detail: str | None = None

    @property
    def body(self) -> BodyKind:
        """Whether and how the handler consumes the request body."""
        return _BODY_BY_NAME.get(self.name, BodyKind.NONE)

    @property
    def needs_body(self) -> bool:
        return self.body is not BodyKind.NONE

    @property
    def resource(self) -> str:
        """The ``Resource`` of an error response: ``/``, ``/bucket`` or ``/bucket/key``."""
        if self.bucket is None:
            return "/"
        if self.key is None:
            return f"/{self.bucket}"
        return f"/{self.bucket}/{self.key}"


UNSUPPORTED = "Unsupported"
UNSUPPORTED_SERVICE_ACTION = "UnsupportedServiceAction"
PREFLIGHT = "Preflight"

# Derived (non-query) feature tokens.
_COPY = "H:" + COPY_SOURCE_HEADER
_FORM = "FORM"  # multipart/form-data body: a browser POST upload
_FORMURL = "FORMURL"  # x-www-form-urlencoded body: an IAM/STS-style action call
_ANY = "*"  # in a row's `tolerates`: any leftover subresource is fine

_S, _B, _O = Target.SERVICE, Target.BUCKET, Target.OBJECT
_NONE, _DOC, _STREAMED = BodyKind.NONE, BodyKind.DOCUMENT, BodyKind.STREAM

# (method, target, required features (space-separated), operation, request body, tolerated
# extras). Query keys are written bare; derived tokens are upper case or start with "H:".
_TABLE: tuple[tuple[str, Target, str, str, BodyKind, str], ...] = (
    ("GET", _S, "", "ListBuckets", _NONE, ""),
    ("GET", _S, "Action", UNSUPPORTED_SERVICE_ACTION, _NONE, _ANY),
    ("POST", _S, "Action", UNSUPPORTED_SERVICE_ACTION, _NONE, _ANY),
    ("POST", _S, _FORMURL, UNSUPPORTED_SERVICE_ACTION, _NONE, _ANY),
    ("POST", _S, _FORM, UNSUPPORTED_SERVICE_ACTION, _NONE, _ANY),
    ("OPTIONS", _S, "", PREFLIGHT, _NONE, _ANY),
    # Buckets
    ("PUT", _B, "", "CreateBucket", _DOC, ""),
    ("DELETE", _B, "", "DeleteBucket", _NONE, ""),
    ("HEAD", _B, "", "HeadBucket", _NONE, ""),
    ("GET", _B, "", "ListObjects", _NONE, ""),
    ("GET", _B, "list-type", "ListObjectsV2", _NONE, ""),
    ("GET", _B, "versions", "ListObjectVersions", _NONE, ""),
    ("GET", _B, "uploads", "ListMultipartUploads", _NONE, ""),
    ("GET", _B, "location", "GetBucketLocation", _NONE, ""),
    ("GET", _B, "versioning", "GetBucketVersioning", _NONE, ""),
    ("PUT", _B, "versioning", "PutBucketVersioning", _DOC, ""),
    ("GET", _B, "acl", "GetBucketAcl", _NONE, ""),
    ("PUT", _B, "acl", "PutBucketAcl", _DOC, ""),
    ("GET", _B, "cors", "GetBucketCors", _NONE, ""),
    ("PUT", _B, "cors", "PutBucketCors", _DOC, ""),
    ("DELETE", _B, "cors", "DeleteBucketCors", _NONE, ""),
    ("GET", _B, "policy", "GetBucketPolicy", _NONE, ""),
    ("PUT", _B, "policy", "PutBucketPolicy", _DOC, ""),
    ("DELETE", _B, "policy", "DeleteBucketPolicy", _NONE, ""),
    ("GET", _B, "tagging", "GetBucketTagging", _NONE, ""),
    ("PUT", _B, "tagging", "PutBucketTagging", _DOC, ""),
    ("DELETE", _B, "tagging", "DeleteBucketTagging", _NONE, ""),
    ("GET", _B, "lifecycle", "GetBucketLifecycleConfiguration", _NONE, ""),
    ("PUT", _B, "lifecycle", "PutBucketLifecycleConfiguration", _DOC, ""),
    ("DELETE", _B, "lifecycle", "DeleteBucketLifecycle", _NONE, ""),
    ("GET", _B, "replication", "GetBucketReplication", _NONE, ""),
    ("PUT", _B, "replication", "PutBucketReplication", _DOC, ""),
    ("DELETE", _B, "replication", "DeleteBucketReplication", _NONE, ""),
    ("GET", _B, "encryption", "GetBucketEncryption", _NONE, ""),
    ("GET", _B, "object-lock", "GetObjectLockConfiguration", _NONE, ""),
    ("PUT", _B, "object-lock", "PutObjectLockConfiguration", _DOC, ""),
    ("GET", _B, "ownershipControls", "GetBucketOwnershipControls", _NONE, ""),
    ("PUT", _B, "ownershipControls", "PutBucketOwnershipControls", _DOC, ""),
    ("DELETE", _B, "ownershipControls", "DeleteBucketOwnershipControls", _NONE, ""),
    ("GET", _B, "publicAccessBlock", "GetPublicAccessBlock", _NONE, ""),
    ("PUT", _B, "publicAccessBlock", "PutPublicAccessBlock", _DOC, ""),
    ("DELETE", _B, "publicAccessBlock", "DeletePublicAccessBlock", _NONE, ""),
    ("GET", _B, "policyStatus", "GetBucketPolicyStatus", _NONE, ""),
    ("GET", _B, "website", "GetBucketWebsite", _NONE, ""),
    ("GET", _B, "logging", "GetBucketLogging", _NONE, ""),
    ("GET", _B, "notification", "GetBucketNotificationConfiguration", _NONE, ""),
    ("GET", _B, "requestPayment", "GetBucketRequestPayment", _NONE, ""),
    ("GET", _B, "accelerate", "GetBucketAccelerateConfiguration", _NONE, ""),
    ("POST", _B, "delete", "DeleteObjects", _DOC, ""),
    ("POST", _B, _FORM, "PostObject", _STREAMED, ""),
    ("OPTIONS", _B, "", PREFLIGHT, _NONE, _ANY),
    # Objects
    ("PUT", _O, "", "PutObject", _STREAMED, ""),
    ("PUT", _O, _COPY, "CopyObject", _NONE, ""),
    ("GET", _O, "", "GetObject", _NONE, "partNumber"),
    ("HEAD", _O, "", "HeadObject", _NONE, "partNumber"),
    ("DELETE", _O, "", "DeleteObject", _NONE, ""),
    ("GET", _O, "acl", "GetObjectAcl", _NONE, ""),
    ("PUT", _O, "acl", "PutObjectAcl", _DOC, ""),
    ("GET", _O, "tagging", "GetObjectTagging", _NONE, ""),
    ("PUT", _O, "tagging", "PutObjectTagging", _DOC, ""),
    ("DELETE", _O, "tagging", "DeleteObjectTagging", _NONE, ""),
    ("GET", _O, "attributes", "GetObjectAttributes", _NONE, ""),
    ("GET", _O, "retention", "GetObjectRetention", _NONE, ""),
    ("PUT", _O, "retention", "PutObjectRetention", _DOC, ""),
    ("GET", _O, "legal-hold", "GetObjectLegalHold", _NONE, ""),
    ("PUT", _O, "legal-hold", "PutObjectLegalHold", _DOC, ""),
    ("POST", _O, "uploads", "CreateMultipartUpload", _NONE, ""),
    ("PUT", _O, "partNumber uploadId", "UploadPart", _STREAMED, ""),
    ("PUT", _O, f"partNumber uploadId {_COPY}", "UploadPartCopy", _NONE, ""),
    ("POST", _O, "uploadId", "CompleteMultipartUpload", _DOC, ""),
    ("DELETE", _O, "uploadId", "AbortMultipartUpload", _NONE, ""),
    ("GET", _O, "uploadId", "ListParts", _NONE, ""),
    ("POST", _O, "restore", "RestoreObject", _DOC, ""),
    ("POST", _O, "select", "SelectObjectContent", _DOC, ""),
    ("OPTIONS", _O, "", PREFLIGHT, _NONE, _ANY),
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the dispatch table, parsed."""

    method: str
    target: Target
    requires: frozenset[str]
    name: str
    body: BodyKind
    tolerates: frozenset[str]

    @property
    def rank(self) -> tuple[int, int]:
        queries = sum(1 for f in self.requires if _is_query_feature(f))
        return queries, len(self.requires) - queries


def _is_query_feature(feature: str) -> bool:
    return not (feature in (_FORM, _FORMURL) or feature.startswith("H:"))


RULES: tuple[Rule, ...] = tuple(
    Rule(method, target, frozenset(req.split()), name, body, frozenset(tol.split()))
    for method, target, req, name, body, tol in _TABLE
)

# S3 subresources and routing parameters AWS knows. When one is present but not consumed
# by the chosen rule, the request asks for something we do not do: Unsupported rather than
# silently serving a different operation (e.g. a plain listing for `GET /b?inventory`).
KNOWN_SUBRESOURCES: frozenset[str] = frozenset(
    f for rule in RULES for f in rule.requires if _is_query_feature(f)
) | frozenset(
    {
        "analytics",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "metadataTable",
        "metrics",
        "renameObject",
        "retention",
        "session",
        "torrent",
    }
)

_BODY_BY_NAME: dict[str, BodyKind] = {rule.name: rule.body for rule in RULES}

_BY_METHOD_TARGET: dict[tuple[str, Target], tuple[Rule, ...]] = {
    (method, target): tuple(r for r in RULES if (r.method, r.target) == (method, target))
    for method, target in {(r.method, r.target) for r in RULES}
}


def _check_table() -> None:
    """Two rows with the same requirements would make dispatch order-dependent; an
    operation must have one body kind."""
    seen: dict[tuple[str, Target, frozenset[str]], str] = {}
    for rule in RULES:
        slot = (rule.method, rule.target, rule.requires)
        if slot in seen:
            raise AssertionError(f"dispatch rows {seen[slot]} and {rule.name} collide")
        seen[slot] = rule.name
        if _BODY_BY_NAME[rule.name] is not rule.body:
            raise AssertionError(f"{rule.name} has two body kinds")


_check_table()

_PART_NUMBER_OPS = frozenset({"UploadPart", "UploadPartCopy", "GetObject", "HeadObject"})
_UPLOAD_ID_OPS = frozenset(
    {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts"}
)
_COPY_OPS = frozenset({"CopyObject", "UploadPartCopy"})


def route(
    method: str,
    host: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    domain: str,
) -> Endpoint:
    """Parse a request into an :class:`Endpoint`; raise :class:`S3Error` on bad input.

    ``raw_path`` is the request target's path percent-encoded as received; anything from
    the first ``?`` on is ignored (aiohttp's ``request.raw_path`` includes the query).
    ``query`` holds decoded (name, value) pairs; a bare ``?acl`` is ``("acl", "")``; the
    first occurrence of a repeated name wins. ``headers`` may be case-insensitive (aiohttp)
    or a plain dict with any case.
    """
    method = method.upper()
    bucket, key = _split_target(host, raw_path, domain)
    target = Target.SERVICE if bucket is None else Target.OBJECT if key else Target.BUCKET
    if not key:
        key = None

    params: dict[str, str] = {}
    for name, value in query:
        params.setdefault(name, value)
    features = set(params)
    if _header(headers, COPY_SOURCE_HEADER) is not None:
        features.add(_COPY)
    content_type = (_header(headers, "content-type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        features.add(_FORM)
    elif content_type.startswith("application/x-www-form-urlencoded"):
        features.add(_FORMURL)

    rule, detail = _choose(method, target, features)
    if bucket is not None:
        validate_bucket_name(bucket)
    if key is not None:
        validate_key(key)
    if rule is None:
        return Endpoint(UNSUPPORTED, target, bucket, key, detail=detail)
    if rule.name in (PREFLIGHT, UNSUPPORTED_SERVICE_ACTION):
        return Endpoint(rule.name, target, bucket, key)

    name = rule.name
    return Endpoint(
        name,
        target,
        bucket,
        key,
        version_id=_version_id(params) if target is Target.OBJECT else None,
        upload_id=params.get("uploadId") if name in _UPLOAD_ID_OPS else None,
        part_number=_part_number(params) if name in _PART_NUMBER_OPS else None,
        list_type=_list_type(params) if name in ("ListObjects", "ListObjectsV2") else None,
        copy_source=(
            parse_copy_source(_header(headers, COPY_SOURCE_HEADER) or "")
            if name in _COPY_OPS
            else None
        ),
    )


def _choose(method: str, target: Target, features: set[str]) -> tuple[Rule | None, str | None]:
    """Apply the precedence rule of the module docstring."""
    candidates = [r for r in _BY_METHOD_TARGET.get((method, target), ()) if r.requires <= features]
    if not candidates:
        return None, f"{method} on a {target.value} with {_describe(features)}"
    best_rank = max(r.rank for r in candidates)
    best = [r for r in candidates if r.rank == best_rank]
    if len({r.name for r in best}) > 1:
        names = ", ".join(sorted({r.name for r in best}))
        return None, f"ambiguous request: {names}"
    rule = best[0]
    if _ANY in rule.tolerates:
        return rule, None
    leftover = (features & KNOWN_SUBRESOURCES) - rule.requires - rule.tolerates
    if leftover:
        return None, f"{rule.name} with unsupported subresource {', '.join(sorted(leftover))}"
    return rule, None


def _describe(features: set[str]) -> str:
    subs = sorted(features & KNOWN_SUBRESOURCES)
    return "subresource " + ", ".join(subs) if subs else "no subresource"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def _split_target(host: str, raw_path: str, domain: str) -> tuple[str | None, str | None]:
    """(bucket, key) from the addressing style; key is "" for a bucket-level request."""
    raw_path = raw_path.partition("?")[0]
    if not raw_path.startswith("/"):
        raise S3Error("InvalidURI", resource=raw_path)
    vhost_bucket = virtual_host_bucket(host, domain)
    if vhost_bucket is not None:
        return vhost_bucket, _decode(raw_path[1:])
    bucket_raw, _, key_raw = raw_path[1:].partition("/")
    if not bucket_raw:
        if key_raw:  # "//key": an empty bucket segment
            raise S3Error("InvalidBucketName", extra={"BucketName": ""})
        return None, None
    return _decode(bucket_raw), _decode(key_raw)


def virtual_host_bucket(host: str, domain: str) -> str | None:
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return None
    hostname = _strip_port(host).rstrip(".").lower()
    suffix = "." + domain
    if hostname.endswith(suffix) and len(hostname) > len(suffix):
        return hostname[: -len(suffix)]
    return None


def _strip_port(host: str) -> str:
    host = host.strip()
    if host.startswith("["):  # [IPv6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode(raw: str) -> str:
    """Strict percent-decoding to UTF-8: ``+`` is literal, bad escapes are InvalidURI."""
    if "%" not in raw and raw.isascii():
        return raw
    if _BAD_ESCAPE.search(raw):
        raise S3Error("InvalidURI", resource=raw)
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeError:  # undecodable escapes, or lone surrogates from raw bytes
        raise S3Error("InvalidURI", resource=raw) from None


def _argument_error(name: str, value: str, message: str) -> S3Error:
    return S3Error("InvalidArgument", message, extra={"ArgumentName": name, "ArgumentValue": value})


def _version_id(params: Mapping[str, str]) -> str | None:
    value = params.get("versionId")
    if value == "":
        raise _argument_error("versionId", "", "Version id cannot be the empty string")
    if value is not None:
        check_version_id("versionId", value)
    return value


def check_version_id(name: str, value: str) -> None:
    """``InvalidArgument`` unless ``value`` is ``null`` or an id this store gives (AWS answers
    an id of a shape it never gives so, and NoSuchVersion only for one it could have)."""
    try:
        parse_version_id(value)
    except InvalidVersionId:
        raise _argument_error(name, value, "Invalid version id specified") from None


def _part_number(params: Mapping[str, str]) -> int | None:
    value = params.get("partNumber")
    if value is None:
        return None
    number = int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise _argument_error(
            "partNumber",
            value,
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
        )
    return number


def _list_type(params: Mapping[str, str]) -> int:
    value = params.get("list-type")
    if value is None:
        return 1
    if value != "2":
        raise _argument_error("list-type", value, "Invalid List Type specified in Request")
    return 2


def parse_copy_source(header: str) -> CopySource:
    """Decode ``x-amz-copy-source``: ``[/]bucket/key[?versionId=id]``, percent-encoded.

    The ``?versionId=`` suffix is recognised on the raw value (a ``?`` inside the key is
    encoded by clients); the rest is decoded and then split at its first slash, since a
    bucket name never holds one.
    """
    raw, sep, version = header.strip().partition("?versionId=")
    version_id: str | None = None
    if sep:
        version_id = _decode(version)
        if not version_id:
            raise _argument_error(
                COPY_SOURCE_HEADER, header, "Version id cannot be the empty string"
            )
        check_version_id(COPY_SOURCE_HEADER, version_id)
    path = _decode(raw)
    bucket, _, key = path.removeprefix("/").partition("/")
    if not bucket or not key:
        raise _argument_error(
            COPY_SOURCE_HEADER,
            header,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
    validate_bucket_name(bucket)
    validate_key(key)
    return CopySource(bucket, key, version_id)


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@lru_cache(maxsize=1024)  # every request names a bucket; the few in use pass once
def validate_bucket_name(name: str) -> None:
    """Raise ``InvalidBucketName`` unless ``name`` follows AWS's general-purpose bucket rules.

    3-63 characters of lower-case letters, digits, dots and hyphens, beginning and ending
    with a letter or digit, no ``..`` and no dot next to a hyphen (``a.-b``, ``a-.b``: not a
    DNS label), not an IPv4 address, none of AWS's reserved
    prefixes (``xn--``, ``sthree-``, ``amzn-s3-demo-``) or suffixes (``-s3alias``,
    ``--ol-s3``, ``.mrap``, ``--x-s3``, ``--table-s3``).
    """
    if (
        _BUCKET_NAME.fullmatch(name) is None
        or ".." in name
        or ".-" in name
        or "-." in name
        or name.startswith(_RESERVED_PREFIXES)
        or name.endswith(_RESERVED_SUFFIXES)
        or _is_ipv4(name)
    ):
        raise S3Error("InvalidBucketName", extra={"BucketName": name})


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def validate_key(key: str) -> None:
    """Raise ``KeyTooLongError`` for a key above 1024 bytes of UTF-8."""
    # A str of at most 256 code points cannot exceed 1024 UTF-8 bytes: skip the encode.
    if len(key) <= MAX_KEY_BYTES // 4:
        return
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", extra={"Size": str(size), "MaxSizeAllowed": "1024"})


def unsupported_error(endpoint: Endpoint) -> S3Error:
    """The error the server answers for ``Unsupported`` / ``UnsupportedServiceAction``.

    Unsupported S3 operations are ``NotImplemented`` (501), as AWS answers features it
    lacks. IAM/STS-style calls (``Action=`` or a form body on ``/``) are ``InvalidRequest``
    (400): a 4xx that SDKs do not retry, answered without reading the body.
    """
    if endpoint.name == UNSUPPORTED_SERVICE_ACTION:
        return S3Error(
            "InvalidRequest",
            "This endpoint serves the S3 API only; IAM/STS-style Action requests are not supported",
        )
    message = "This operation is not implemented"
    if endpoint.detail:
        message += f": {endpoint.detail}"
    return S3Error("NotImplemented", message)
