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
per-chunk signatures checked with :mod:`stratum.s3.sigv4_chunked` from the returned
:class:`ChunkSigningContext`. Every secret-dependent comparison uses
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote

from stratum.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINAL = "aws4_request"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MAX_SKEW_SECONDS = 15 * 60
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
# Query parameters that mean "this request is signed" (SigV4 and SigV2).
_CREDENTIAL_PARAMS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "AWSAccessKeyId", "Signature"}
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
class RequestView:
    """What signature verification needs to see of a request.

    ``raw_path`` is the path exactly as sent (percent-encoded, no query string); ``query``
    the *decoded* query pairs in wire order, a key without ``=`` having the value ``""``;
    ``headers`` maps **lower-case** names to values, repeated headers already joined (use
    :meth:`from_wire`). Decode wire bytes as UTF-8 with ``surrogateescape`` so that encoding
    them back gives the bytes the client signed.
    """

    method: str
    raw_path: str
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]

    @classmethod
    def from_wire(
        cls,
        method: str,
        raw_path: str,
        query: Sequence[tuple[str, str]],
        headers: Iterable[tuple[str, str]],
    ) -> RequestView:
        """Build a view from header pairs in any case, joining repeats the way SigV4 does."""
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            value = _trimall(value)
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        return cls(method, raw_path, query, joined)


@dataclass(frozen=True, slots=True)
class ChunkSigningContext:
    """What checking the signatures of an aws-chunked body needs (seed = request signature)."""

    seed_signature: str
    signing_key: bytes = field(repr=False)
    scope: str
    amz_date: str
    trailer: bool


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A verified request: who signed it and what its ``x-amz-content-sha256`` promises.

    ``payload_hash`` is a lower-case 64-hex SHA-256 (the caller checks the body against it),
    ``UNSIGNED-PAYLOAD`` or one of the ``STREAMING-*`` values. ``chunk_context`` is set for
    the two signed streaming values, whose chunks carry chained signatures.
    """

    access_key: str
    payload_hash: str
    presigned: bool = False
    chunk_context: ChunkSigningContext | None = None

    @property
    def streaming(self) -> bool:
        return self.payload_hash.startswith("STREAMING-")


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


def signatures_equal(expected: str, claimed: str) -> bool:
    """Constant-time comparison that tolerates any text in ``claimed``."""
    return hmac.compare_digest(expected.encode(), claimed.encode("utf-8", "surrogateescape"))


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
        lines.append(f"{name}:{_trimall(value)}")
    lines.append("")
    lines.append(signed_headers)
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def is_anonymous(request: RequestView) -> bool:
    """Whether the request carries no credentials of any kind (a candidate for public access).

    :func:`verify` refuses such a request with ``AccessDenied``; whether an anonymous request
    may go on is the caller's decision.
    """
    if "authorization" in request.headers:
        return False
    return not any(k in _CREDENTIAL_PARAMS for k, _ in request.query)


def verify(
    request: RequestView,
    lookup_secret: Callable[[str], str | None],
    *,
    region: str,
    now: float,
    virtual_bucket: str | None = None,
) -> AuthResult:
    """Authenticate ``request`` or raise :class:`S3Error` with the code AWS would use.

    ``lookup_secret`` maps an access key id to its secret (``None`` if unknown); ``now`` is
    the server time in epoch seconds; ``virtual_bucket`` the bucket named by the Host
    header (virtual-hosted style), which SigV2 signs as part of the resource.
    """
    authorization = request.headers.get("authorization")
    presigned = any(k == "X-Amz-Algorithm" for k, _ in request.query)
    if authorization is not None:
        if presigned:
            raise S3Error(
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified",
                extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
            )
        if authorization.strip().partition(" ")[0] == "AWS":
            return _verify_sigv2(request, lookup_secret, now, virtual_bucket)
        return _verify_header(request, authorization, lookup_secret, region, now)
    if presigned:
        return _verify_presigned(request, lookup_secret, region, now)
    if any(k in ("AWSAccessKeyId", "Signature") for k, _ in request.query):
        return _verify_sigv2(request, lookup_secret, now, virtual_bucket)
    raise S3Error("AccessDenied")


def _verify_sigv2(
    request: RequestView,
    lookup_secret: Callable[[str], str | None],
    now: float,
    virtual_bucket: str | None,
) -> AuthResult:
    """``Authorization: AWS ...`` or ``AWSAccessKeyId``/``Signature`` in the query."""
    # Imported here: sigv2 builds on this module's types and helpers.
    from stratum.s3 import sigv2

    return sigv2.verify(request, lookup_secret, now=now, virtual_bucket=virtual_bucket)


def _verify_header(
    request: RequestView,
    authorization: str,
    lookup_secret: Callable[[str], str | None],
    region: str,
    now: float,
) -> AuthResult:
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        raise S3Error(
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
    request_time = None if amz_date is None else _parse_amz_date(amz_date)
    if amz_date is None and (http_date := headers.get("date")) is not None:
        request_time = _parse_http_date(http_date)
        if request_time is not None:
            amz_date = _format_amz_date(request_time)
    if request_time is None or amz_date is None:
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    if amz_date[:8] != scope_date:
        raise _header_malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": headers.get("x-amz-date") or headers.get("date", ""),
                "ServerTime": _format_iso(now),
                "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000),
            },
        )
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise S3Error(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
        )
    return _check_signature(
        request,
        lookup_secret,
        access_key=access_key,
        scope_date=scope_date,
        scope=scope,
        amz_date=amz_date,
        region=region,
        signed_headers=signed_headers,
        signature=signature,
        payload_hash=_checked_payload_hash(payload_hash),
        presigned=False,
    )


def _verify_presigned(
    request: RequestView,
    lookup_secret: Callable[[str], str | None],
    region: str,
    now: float,
) -> AuthResult:
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
    request_time = _parse_amz_date(amz_date)
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
    if expires == 0:
        raise _query_error("X-Amz-Expires must be at least 1 second")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise _query_error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            f"X-Amz-Expires must be less than {MAX_PRESIGNED_EXPIRES} seconds"
        )
    if request_time - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > request_time + expires:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": expires_text,
                "Expires": _format_iso(request_time + expires),
                "ServerTime": _format_iso(now),
            },
        )
    payload_hash = request.headers.get("x-amz-content-sha256")
    return _check_signature(
        request,
        lookup_secret,
        access_key=access_key,
        scope_date=scope_date,
        scope=scope,
        amz_date=amz_date,
        region=region,
        signed_headers=params["X-Amz-SignedHeaders"],
        signature=params["X-Amz-Signature"],
        payload_hash=UNSIGNED_PAYLOAD
        if payload_hash is None
        else _checked_payload_hash(payload_hash),
        presigned=True,
    )


def _check_signature(
    request: RequestView,
    lookup_secret: Callable[[str], str | None],
    *,
    access_key: str,
    scope_date: str,
    scope: str,
    amz_date: str,
    region: str,
    signed_headers: str,
    signature: str,
    payload_hash: str,
    presigned: bool,
) -> AuthResult:
    """The checks both forms share once their parameters are parsed."""
    signed = {name.lower() for name in signed_headers.split(";")}
    unsigned = [h for h in request.headers if h.startswith("x-amz-") and h not in signed]
    if "host" not in signed:
        unsigned.insert(0, "host")
    if unsigned:
        # Otherwise anyone holding a presigned URL could add, say, x-amz-acl to it.
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})
    key = signing_key(secret, scope_date, region, SERVICE)
    wire_payload_hash = request.headers.get("x-amz-content-sha256", payload_hash)
    canonical = canonical_request(
        request,
        signed_headers,
        wire_payload_hash,
        exclude_param="X-Amz-Signature" if presigned else None,
    )
    to_sign = string_to_sign(amz_date, scope, canonical)
    expected = sign(key, to_sign)
    if not signatures_equal(expected, signature):
        raise S3Error(
            "SignatureDoesNotMatch",
            extra={
                "AWSAccessKeyId": access_key,
                "StringToSign": to_sign,
                "SignatureProvided": signature,
                "StringToSignBytes": _spaced_hex(to_sign),
                "CanonicalRequest": canonical,
                "CanonicalRequestBytes": _spaced_hex(canonical),
            },
        )
    context = None
    if payload_hash in _SIGNED_STREAMING:
        context = ChunkSigningContext(
            seed_signature=expected,
            signing_key=key,
            scope=scope,
            amz_date=amz_date,
            trailer=payload_hash == STREAMING_PAYLOAD_TRAILER,
        )
    return AuthResult(access_key, payload_hash, presigned, context)


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
    raise S3Error(
        "InvalidArgument",
        _CONTENT_SHA256_VALUES,
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


def _header_malformed(detail: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", _HEADER_MALFORMED + detail)


def _query_error(message: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message)


def _trimall(value: str) -> str:
    # Same rule as botocore: strip, and collapse every inner whitespace run to one space.
    return " ".join(value.split())


@lru_cache(maxsize=128)
def _parse_amz_date(text: str) -> float | None:
    """``YYYYMMDDTHHMMSSZ`` -> epoch seconds, or ``None`` if it is not one."""
    digits = text[:8] + text[9:15]
    if len(text) != 16 or text[8] != "T" or text[15] != "Z" or not digits.isascii():
        return None
    if not digits.isdigit():
        return None
    try:
        when = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return when.timestamp()


def _parse_http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _format_amz_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def _format_iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spaced_hex(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").hex(" ")
