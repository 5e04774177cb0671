"""AWS Signature Version 4 verification for S3 requests (pure: no HTTP framework).

Two forms are accepted, exactly as AWS S3 accepts them:

* the ``Authorization: AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/s3/aws4_request,
  SignedHeaders=a;b;c, Signature=<64 hex>`` header, with the request time in ``x-amz-date``
  (or ``Date``) and the payload hash in ``x-amz-content-sha256``;
* presigned query strings (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``), whose payload is
  ``UNSIGNED-PAYLOAD`` unless a signed ``x-amz-content-sha256`` header says otherwise.

The canonical request is built the way AWS specifies and botocore signs:

* the URI is the path *as received on the wire*: S3 neither normalises it nor encodes it
  twice, and clients sign the path exactly as they encoded it;
* the query string is decoded pairs re-encoded with AWS's URI encoding (RFC 3986 unreserved
  characters kept, everything else ``%XX`` upper case, space as ``%20``), sorted by encoded
  key then encoded value; a key without a value canonicalises as ``key=``;
* each signed header is ``name:value`` with the value trimmed and inner whitespace runs
  collapsed to one space; repeated headers are joined with ``,`` (see
  :meth:`RequestView.from_wire`).

:func:`verify` checks everything but the payload: a 64-hex ``payload_hash`` in the result
must still be compared with the body by the caller, and streaming (aws-chunked) bodies carry
per-chunk signatures checked with :mod:`stratum.auth.streaming` from the returned
:class:`ChunkSigningContext`. Every secret-dependent comparison uses
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from stratum.auth.checks import (
    MAX_SKEW_SECONDS,
    LookupSecret,
    check_skew,
    format_amz_date,
    format_iso,
    no_request_date,
    parse_amz_date,
    parse_http_date,
    secret_of,
    signature_mismatch,
    signatures_equal,
)
from stratum.auth.errors import AuthError
from stratum.auth.request import (
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthResult,
    ChunkSigningContext,
    RequestView,
    trimall,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINAL = "aws4_request"

MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600

# The header values that stand for the payload hash rather than being one.
_SPECIAL_PAYLOADS = frozenset(
    {
        UNSIGNED_PAYLOAD,
        STREAMING_PAYLOAD,
        STREAMING_PAYLOAD_TRAILER,
        STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    }
)
_SIGNED_STREAMING = frozenset({STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER})
_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
_HEADER_MALFORMED = "The authorization header is malformed; "
_CREDENTIAL_PARAM = "Error parsing the X-Amz-Credential parameter; "
_CREDENTIAL_SHAPE = (
    'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
)
_CONTENT_SHA256_VALUES = (
    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
    "or a valid sha256 value."
)


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request says it was signed with: the header and presigned forms, parsed."""

    access_key: str
    scope_date: str
    scope: str
    amz_date: str
    signed_headers: str
    signature: str
    payload_hash: str
    presigned: bool


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """``kSigning`` for a secret and a ``YYYYMMDD`` day; cached, it only changes daily."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, TERMINAL.encode(), "sha256")


def sign(key: bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of a string to sign."""
    return hmac.digest(key, string_to_sign.encode("utf-8", "surrogateescape"), "sha256").hex()


def uri_encode(text: str) -> str:
    """AWS URI encoding: unreserved characters kept, every other UTF-8 byte as ``%XX``."""
    if _UNRESERVED.issuperset(text):
        return text
    return quote(text, safe="-_.~", errors="surrogateescape")


def canonical_query_string(query: Sequence[tuple[str, str]], exclude: str | None = None) -> str:
    """Encoded ``key=value`` pairs sorted by key then value, joined by ``&``."""
    if not query:
        return ""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query if k != exclude)
    return "&".join([f"{k}={v}" for k, v in pairs])


def canonical_request(
    request: RequestView,
    signed_headers: str,
    payload_hash: str,
    *,
    exclude_param: str | None = None,
) -> str:
    """The canonical request; ``signed_headers`` is the ``;``-separated list as signed."""
    headers = request.headers
    lines = [
        request.method,
        request.raw_path or "/",
        canonical_query_string(request.query, exclude_param),
    ]
    for name in signed_headers.split(";"):
        value = headers.get(name.lower(), "")
        lines.append(f"{name}:{trimall(value)}")
    lines.append("")
    lines.append(signed_headers)
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def verify(
    request: RequestView, lookup_secret: LookupSecret, *, region: str, now: float
) -> AuthResult:
    """Authenticate a SigV4 request (signed in its ``Authorization`` header, or presigned
    when it has none) or raise :class:`AuthError` with the code AWS would use.

    ``now`` is the server time in epoch seconds.
    """
    authorization = request.headers.get("authorization")
    if authorization is None:
        claim = _presigned_claim(request, region, now)
    else:
        claim = _header_claim(request, authorization, region, now)
    return _check_signature(request, lookup_secret, claim, region)


def _header_claim(request: RequestView, authorization: str, region: str, now: float) -> _Claim:
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        raise AuthError(
            "InvalidArgument",
            "Unsupported Authorization Type",
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
        )
    components: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value or name in components:
            raise _header_malformed(f'the authorization component "{part.strip()}" is malformed.')
        components[name] = value
    try:
        credential = components["Credential"]
        signed_headers = components["SignedHeaders"]
        signature = components["Signature"]
    except KeyError:
        raise _header_malformed(
            "the authorization header requires three components: Credential, SignedHeaders, "
            "and Signature."
        ) from None
    access_key, scope_date, scope = _parse_credential(credential, region, presigned=False)

    headers = request.headers
    amz_date = headers.get("x-amz-date")
    request_time = None if amz_date is None else parse_amz_date(amz_date)
    if amz_date is None and (http_date := headers.get("date")) is not None:
        request_time = parse_http_date(http_date)
        if request_time is not None:
            amz_date = format_amz_date(request_time)
    if request_time is None or amz_date is None:
        raise no_request_date()
    if amz_date[:8] != scope_date:
        raise _header_malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    check_skew(request_time, headers.get("x-amz-date") or headers.get("date", ""), now)
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise AuthError(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
        )
    return _Claim(
        access_key,
        scope_date,
        scope,
        amz_date,
        signed_headers,
        signature,
        _checked_payload_hash(payload_hash),
        presigned=False,
    )


def _presigned_claim(request: RequestView, region: str, now: float) -> _Claim:
    params: dict[str, str] = {}
    duplicated = False
    for key, value in request.query:
        if key in _PRESIGN_PARAMS:
            duplicated = duplicated or key in params
            params[key] = value
    if duplicated or any(not params.get(p) for p in _PRESIGN_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    access_key, scope_date, scope = _parse_credential(
        params["X-Amz-Credential"], region, presigned=True
    )
    amz_date = params["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format")
    if amz_date[:8] != scope_date:
        raise _query_error("Invalid credential date. Date is not the same as X-Amz-Date.")
    expires_text = params["X-Amz-Expires"]
    digits = expires_text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise _query_error("X-Amz-Expires should be a number")
    if digits != expires_text:
        raise _query_error("X-Amz-Expires must be non-negative")
    # Beyond a week anyway; capping the length keeps int() away from huge inputs.
    expires = int(digits) if len(digits) <= 12 else MAX_PRESIGNED_EXPIRES + 1
    if expires > MAX_PRESIGNED_EXPIRES:
        raise _query_error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            f"X-Amz-Expires must be less than {MAX_PRESIGNED_EXPIRES} seconds"
        )
    if request_time - now > MAX_SKEW_SECONDS:
        raise AuthError("AccessDenied", "Request is not valid yet")
    # A URL good for 0 seconds has expired when it arrives: 403, as MinIO and Ceph answer
    # it (AWS refuses negative and over-a-week values as malformed, 400, and so does this).
    if expires == 0 or now > request_time + expires:
        raise AuthError(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": expires_text,
                "Expires": format_iso(request_time + expires),
                "ServerTime": format_iso(now),
            },
        )
    payload_hash = request.headers.get("x-amz-content-sha256")
    return _Claim(
        access_key,
        scope_date,
        scope,
        amz_date,
        params["X-Amz-SignedHeaders"],
        params["X-Amz-Signature"],
        UNSIGNED_PAYLOAD if payload_hash is None else _checked_payload_hash(payload_hash),
        presigned=True,
    )


def _check_signature(
    request: RequestView, lookup_secret: LookupSecret, claim: _Claim, region: str
) -> AuthResult:
    """The checks both forms share once their parameters are parsed."""
    signed = {name.lower() for name in claim.signed_headers.split(";")}
    unsigned = [h for h in request.headers if h.startswith("x-amz-") and h not in signed]
    if "host" not in signed:
        unsigned.insert(0, "host")
    if unsigned:
        # Otherwise anyone holding a presigned URL could add, say, x-amz-acl to it.
        raise AuthError(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )
    secret = secret_of(lookup_secret, claim.access_key)
    key = signing_key(secret, claim.scope_date, region, SERVICE)
    wire_payload_hash = request.headers.get("x-amz-content-sha256", claim.payload_hash)
    canonical = canonical_request(
        request,
        claim.signed_headers,
        wire_payload_hash,
        exclude_param="X-Amz-Signature" if claim.presigned else None,
    )
    to_sign = string_to_sign(claim.amz_date, claim.scope, canonical)
    expected = sign(key, to_sign)
    if not signatures_equal(expected, claim.signature):
        raise signature_mismatch(claim.access_key, to_sign, claim.signature, canonical)
    context = None
    if claim.payload_hash in _SIGNED_STREAMING:
        context = ChunkSigningContext(
            seed_signature=expected,
            signing_key=key,
            scope=claim.scope,
            amz_date=claim.amz_date,
            trailer=claim.payload_hash == STREAMING_PAYLOAD_TRAILER,
        )
    return AuthResult(claim.access_key, claim.payload_hash, claim.presigned, context)


def _parse_credential(credential: str, region: str, *, presigned: bool) -> tuple[str, str, str]:
    """``AKID/date/region/s3/aws4_request`` -> (access key, date, scope without the key)."""
    make = _query_error if presigned else _header_malformed
    prefix = _CREDENTIAL_PARAM if presigned else ""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not all(parts):
        raise make(prefix + _CREDENTIAL_SHAPE)
    access_key, date, scope_region, service, terminal = parts
    if len(date) != 8 or not (date.isascii() and date.isdigit()):
        raise make(prefix + _CREDENTIAL_SHAPE)
    if scope_region != region:
        error = make(prefix + f"the region '{scope_region}' is wrong; expecting '{region}'")
        error.extra["Region"] = region
        raise error
    if service != SERVICE:
        raise make(prefix + f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminal != TERMINAL:
        raise make(prefix + f'incorrect terminal "{terminal}". This endpoint uses "{TERMINAL}".')
    return access_key, date, f"{date}/{region}/{SERVICE}/{TERMINAL}"


def _checked_payload_hash(value: str) -> str:
    if value in _SPECIAL_PAYLOADS:
        return value
    if len(value) == 64 and value.isascii() and not value.strip(_HEX):
        return value.lower()
    raise AuthError(
        "InvalidArgument",
        _CONTENT_SHA256_VALUES,
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


def _header_malformed(detail: str) -> AuthError:
    return AuthError("AuthorizationHeaderMalformed", _HEADER_MALFORMED + detail)


def _query_error(message: str) -> AuthError:
    return AuthError("AuthorizationQueryParametersError", message)
