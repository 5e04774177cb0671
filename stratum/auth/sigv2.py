"""AWS Signature Version 2 verification for S3 requests (pure: no HTTP framework).

SigV2 is what boto3 presigns with by default in us-east-1 (``generate_presigned_url``
without ``signature_version``) and what older clients (s3cmd with ``signature_v2``, old
minio-go and restic builds) sign with. AWS still accepts it where it always did. Two forms:

* ``Authorization: AWS <AKID>:<signature>``, the request time in ``x-amz-date`` or ``Date``,
  within 15 minutes of the server's clock;
* query strings ``AWSAccessKeyId``, ``Signature`` and ``Expires`` (epoch seconds, the URL is
  good through that second). AWS sets no limit on ``Expires`` (a URL may be good for years);
  here it may be at most a week ahead, SigV4's limit, answered ``AccessDenied`` (403, what the
  s3-tests suite expects of an over-long SigV4 URL) beyond. SigV2 signs no time of signing,
  so a URL signed for later than that is refused until its ``Expires`` is a week away.

``[server] sigv2 = false`` refuses SigV2 altogether (:func:`stratum.auth.authenticate`), as AWS
regions opened since 2014 do.

The signature is base64 HMAC-SHA1 of the string to sign::

    METHOD \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders CanonicalizedResource

* the Date line is ``Expires`` for query auth, empty for header auth when ``x-amz-date`` is
  sent, the ``Date`` header otherwise;
* CanonicalizedAmzHeaders: every ``x-amz-*`` header, lower-cased, sorted, ``name:value\\n``,
  repeats joined with ``,`` (:meth:`RequestView.from_wire` has already joined and trimmed
  them). For query auth the ``x-amz-*`` (and missing Content-Type/Content-MD5) parameters
  count as headers too, since that is where botocore's presigner puts them;
* CanonicalizedResource: ``/bucket`` for a virtual-hosted request, then the path exactly
  as received (percent-encoding as on the wire, ``/`` if empty), then the
  sub-resources of :data:`SUBRESOURCES` present in the query, sorted by name, *decoded*,
  ``name=value`` or just ``name`` when valueless.

Where clients disagree and the difference cannot be exploited, each accepted form is tried
(the first is reported in ``SignatureDoesNotMatch``):

* botocore signs an empty sub-resource sent as ``key=`` as ``key=`` (AWS's form is ``key``);
* botocore puts ``Date`` on the Date line even when ``x-amz-date`` is sent (AWS leaves it
  empty); both headers are signed either way;
* botocore (and s3cmd, minio-go) sign a path-style bucket request sent to ``/bucket`` as
  ``/bucket/``, and the router treats both paths as the bucket.

The result's ``payload_hash`` is always ``UNSIGNED-PAYLOAD``: SigV2 does not sign the body
(a signed ``Content-MD5`` still holds it).

Known limit: :meth:`RequestView.from_wire` collapses runs of inner whitespace in header
values (the SigV4 rule); SigV2 signers keep them, so such a header value does not verify.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from itertools import product

from stratum.auth.checks import (
    LookupSecret,
    check_skew,
    format_iso,
    no_request_date,
    one_mechanism_only,
    request_time_of,
    secret_of,
    signature_mismatch,
    signatures_equal,
)
from stratum.auth.errors import AuthError
from stratum.auth.request import UNSIGNED_PAYLOAD, AuthResult, RequestView
from stratum.auth.sigv4 import MAX_PRESIGNED_EXPIRES

SCHEME = "AWS"

# The query parameters signed as part of the resource: AWS's documented list, everything
# botocore's HmacV1Auth signs, and the other sub-resources that select an operation in
# stratum.s3.router (minio-go and Ceph sign these too). One left out could be appended to
# a signed request to turn it into another operation, so the list errs on the long side:
# a client that leaves one of the extras unsigned gets SignatureDoesNotMatch, not a hole.
SUBRESOURCES = frozenset(
    {
        # AWS, "Signing and authenticating REST requests"
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "restore",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        # botocore.auth.HmacV1Auth.QSAOfInterest, besides the above
        "accelerate",
        "analytics",
        "defaultObjectAcl",
        "inventory",
        "metrics",
        "object-lock",
        "replication",
        "select",
        "select-type",
        "storageClass",
        # routed by stratum.s3.router
        "attributes",
        "encryption",
        "intelligent-tiering",
        "legal-hold",
        "metadataTable",
        "ownershipControls",
        "policyStatus",
        "publicAccessBlock",
        "renameObject",
        "retention",
        "session",
    }
)

QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_QUERY_INCOMPLETE = (
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
)
_HEADER_INVALID = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"


def sign(secret: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA1 of a string to sign, as SigV2 clients send it."""
    digest = hmac.digest(
        secret.encode("utf-8", "surrogateescape"),
        string_to_sign.encode("utf-8", "surrogateescape"),
        "sha1",
    )
    return base64.b64encode(digest).decode("ascii")


def canonical_resource(
    request: RequestView,
    *,
    virtual_bucket: str | None = None,
    empty_as_equals: bool = False,
    bucket_slash: bool = False,
) -> str:
    """``[/bucket]/raw/path[?subresources]``.

    ``empty_as_equals`` writes ``key=`` for a valueless sub-resource instead of ``key``;
    ``bucket_slash`` signs a path-style bucket path ``/bucket`` as ``/bucket/``.
    """
    resource = request.raw_path or "/"
    if virtual_bucket is not None:
        resource = f"/{virtual_bucket}{resource}"
    elif bucket_slash and _is_bucket_path(resource):
        resource += "/"
    subresources = sorted(
        ((k, v) for k, v in request.query if k in SUBRESOURCES), key=lambda kv: kv[0]
    )
    if not subresources:
        return resource
    parts = [f"{k}={v}" if v or empty_as_equals else k for k, v in subresources]
    return f"{resource}?{'&'.join(parts)}"


def canonical_amz_headers(request: RequestView, *, include_query: bool = False) -> str:
    """The ``x-amz-*`` lines; ``include_query`` adds ``x-amz-*`` query parameters (presigned)."""
    values = {name: value for name, value in request.headers.items() if name.startswith("x-amz-")}
    if include_query:
        from_query: dict[str, list[str]] = {}
        for key, value in request.query:
            name = key.lower()
            if name.startswith("x-amz-"):
                from_query.setdefault(name, []).append(value.strip())
        for name, listed in from_query.items():
            joined = ",".join(listed)
            # botocore's presigner copies the header into the query; a client may send both.
            # Different values are both signed, so that neither can be slipped in unsigned.
            header = values.get(name)
            values[name] = joined if header is None or header == joined else f"{header},{joined}"
    return "".join(f"{name}:{values[name]}\n" for name in sorted(values))


def string_to_sign(
    request: RequestView,
    date_line: str,
    *,
    virtual_bucket: str | None = None,
    presigned: bool = False,
    empty_as_equals: bool = False,
    bucket_slash: bool = False,
) -> str:
    """The SigV2 string to sign for ``request`` with the given Date (or Expires) line."""
    headers = request.headers
    content_md5 = headers.get("content-md5")
    content_type = headers.get("content-type")
    if presigned:
        params = {k.lower(): v.strip() for k, v in request.query}
        content_md5 = params.get("content-md5") if content_md5 is None else content_md5
        content_type = params.get("content-type") if content_type is None else content_type
    resource = canonical_resource(
        request,
        virtual_bucket=virtual_bucket,
        empty_as_equals=empty_as_equals,
        bucket_slash=bucket_slash,
    )
    return "".join(
        [
            f"{request.method}\n{content_md5 or ''}\n{content_type or ''}\n{date_line}\n",
            canonical_amz_headers(request, include_query=presigned),
            resource,
        ]
    )


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request says it was signed with: the header and query forms, parsed."""

    access_key: str
    signature: str
    date_lines: list[str]  # the Date lines a client may have signed, AWS's first
    presigned: bool


def verify(
    request: RequestView,
    lookup_secret: LookupSecret,
    *,
    now: float,
    virtual_bucket: str | None = None,
) -> AuthResult:
    """Authenticate a SigV2 request or raise :class:`AuthError` with the code AWS would use.

    ``virtual_bucket`` is the bucket named by the Host header when the request is
    virtual-hosted (it is signed as the first path segment); ``now`` is epoch seconds.
    """
    authorization = request.headers.get("authorization")
    if authorization is None:
        claim = _query_claim(request, now)
    else:
        claim = _header_claim(request, authorization, now)
    return _check(request, lookup_secret, claim, virtual_bucket)


def _header_claim(request: RequestView, authorization: str, now: float) -> _Claim:
    if any(k == "Signature" for k, _ in request.query):
        raise one_mechanism_only(authorization)
    scheme, _, credentials = authorization.strip().partition(" ")
    access_key, sep, signature = credentials.strip().rpartition(":")
    if scheme != SCHEME or not sep or not access_key or not signature:
        raise AuthError(
            "InvalidArgument",
            _HEADER_INVALID,
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
        )
    headers = request.headers
    amz_date = headers.get("x-amz-date")
    http_date = headers.get("date")
    sent = amz_date if amz_date is not None else http_date
    request_time = None if sent is None else request_time_of(sent)
    if sent is None or request_time is None:
        raise no_request_date()
    check_skew(request_time, sent, now)
    # With x-amz-date, AWS's empty Date line first; botocore signs Date there regardless.
    date_lines = [sent] if amz_date is None else ["", http_date] if http_date else [""]
    return _Claim(access_key, signature, date_lines, presigned=False)


def _query_claim(request: RequestView, now: float) -> _Claim:
    params: dict[str, str] = {}
    for key, value in request.query:
        if key in QUERY_PARAMS:
            params.setdefault(key, value)
    if any(not params.get(p) for p in QUERY_PARAMS):
        raise AuthError("AccessDenied", _QUERY_INCOMPLETE)
    expires_text = params["Expires"]
    if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
        raise AuthError(
            "AccessDenied", f"Invalid date (should be seconds since epoch): {expires_text}"
        )
    expires = int(expires_text)
    if now > expires:
        raise AuthError(
            "AccessDenied",
            "Request has expired",
            extra={"Expires": format_iso(expires), "ServerTime": format_iso(now)},
        )
    if expires - now > MAX_PRESIGNED_EXPIRES:
        raise AuthError(
            "AccessDenied",
            f"Expires must be at most {MAX_PRESIGNED_EXPIRES} seconds (a week) from now",
            extra={"ServerTime": format_iso(now)},  # no ISO form for an Expires past 9999
        )
    # A '+' left unencoded in the base64 signature arrives as a space; base64 has no spaces.
    signature = params["Signature"].replace(" ", "+")
    return _Claim(params["AWSAccessKeyId"], signature, [expires_text], presigned=True)


def _check(
    request: RequestView,
    lookup_secret: LookupSecret,
    claim: _Claim,
    virtual_bucket: str | None,
) -> AuthResult:
    """Compare the claimed signature with each accepted string to sign (AWS's form first)."""
    secret = secret_of(lookup_secret, claim.access_key)
    empty_forms = [False]
    if any(k in SUBRESOURCES and not v for k, v in request.query):
        empty_forms.append(True)
    slash_forms = [False]
    if virtual_bucket is None and _is_bucket_path(request.raw_path):
        slash_forms.append(True)
    candidates = [
        string_to_sign(
            request,
            date_line,
            virtual_bucket=virtual_bucket,
            presigned=claim.presigned,
            empty_as_equals=empty_as_equals,
            bucket_slash=bucket_slash,
        )
        for date_line, empty_as_equals, bucket_slash in product(
            claim.date_lines, empty_forms, slash_forms
        )
    ]
    matched = False
    for candidate in candidates:
        # Every candidate is compared, so timing says nothing about which one matched.
        matched |= signatures_equal(sign(secret, candidate), claim.signature)
    if not matched:
        raise signature_mismatch(claim.access_key, candidates[0], claim.signature)
    return AuthResult(claim.access_key, UNSIGNED_PAYLOAD, presigned=claim.presigned)


def _is_bucket_path(raw_path: str) -> bool:
    """``/bucket``: one path segment, no trailing slash (path style, addressing a bucket)."""
    return len(raw_path) > 1 and raw_path.count("/") == 1 and raw_path.startswith("/")
