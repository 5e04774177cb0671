"""SigV4 verification against botocore's own signer, AWS's published examples, and tampering."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, get_args
from unittest.mock import patch
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.auth import (
    AuthError,
    AuthResult,
    RequestView,
    authenticate,
    checks,
    is_anonymous,
    sigv4,
)
from stratum.auth.errors import AuthErrorCode
from stratum.auth.request import EMPTY_SHA256
from stratum.s3.errors import S3Error, as_s3_error

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
WHEN = datetime(2024, 5, 17, 12, 34, 56)  # naive UTC, as botocore's clock returns it
NOW = float(calendar.timegm(WHEN.timetuple()))
ENDPOINT = "http://localhost:9000"

SECRETS = {ACCESS_KEY: SECRET, "AKOTHER": "other-secret"}
lookup: Callable[[str], str | None] = SECRETS.get


# --- signing with botocore ------------------------------------------------------------------


class _FixedPayloadAuth(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer with a chosen x-amz-content-sha256 (it never picks STREAMING-*)."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def _request(
    method: str,
    url: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    params: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> AWSRequest:
    req = AWSRequest(method=method, url=url, data=body, params=dict(params or {}))
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        req.headers[name] = value  # HTTPHeaders appends: repeated names are kept
    return req


def to_view(req: AWSRequest) -> RequestView:
    """What the server would see of the request botocore sends."""
    url = req.prepare().url
    split = urlsplit(url)
    pairs = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()]
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.append(("Host", split.netloc))
    query = parse_qsl(split.query, keep_blank_values=True)
    return RequestView.from_wire(req.method, split.path, query, pairs)


def sign_header(
    method: str,
    url: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    params: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    region: str = REGION,
    when: datetime = WHEN,
    payload: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> RequestView:
    req = _request(method, url, headers, params, body)
    req.context.update(context or {})
    creds = Credentials(access_key, secret)
    signer = (
        S3SigV4Auth(creds, "s3", region)
        if payload is None
        else _FixedPayloadAuth(creds, region, payload)
    )
    with patch("botocore.auth.get_current_datetime", return_value=when):
        signer.add_auth(req)
    return to_view(req)


def presign(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    *,
    expires: int = 3600,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    region: str = REGION,
    when: datetime = WHEN,
) -> RequestView:
    req = _request(method, url, headers or {}, params)
    signer = S3SigV4QueryAuth(Credentials(access_key, secret), "s3", region, expires=expires)
    with patch("botocore.auth.get_current_datetime", return_value=when):
        signer.add_auth(req)
    return to_view(req)


def check(view: RequestView, *, now: float = NOW, region: str = REGION) -> AuthResult:
    result = authenticate(view, lookup, region=region, now=now)
    assert result is not None, "taken for an anonymous request"
    return result


def refused(view: RequestView, code: str, status: int, *, now: float = NOW) -> S3Error:
    """The S3 error a client gets for ``view``, refused as ``code`` with ``status``."""
    with pytest.raises(AuthError) as info:
        check(view, now=now)
    error = as_s3_error(info.value)
    assert error.code == code, error
    assert error.status == status
    return error


def replace(view: RequestView, **changes: Any) -> RequestView:
    return dataclasses.replace(view, **changes)


def with_headers(view: RequestView, **headers: str | None) -> RequestView:
    new = dict(view.headers)
    for name, value in headers.items():
        name = name.replace("_", "-")
        if value is None:
            new.pop(name, None)
        else:
            new[name] = value
    return replace(view, headers=new)


# --- accepted shapes ------------------------------------------------------------------------

_tricky = st.sampled_from(list(" +=~/&?%#:@!$'()*,;[]\\^`{|}\"<>.-_é日本🙂\x7f"))
object_keys = st.text(st.one_of(_tricky, st.characters(codec="utf-8")), min_size=1, max_size=30)
query_text = st.text(st.one_of(_tricky, st.characters(codec="utf-8")), max_size=12)
header_values = st.text(st.sampled_from(list("abcXYZ019 -_=/+:;,.\t ")), max_size=20)
meta_names = st.text(st.sampled_from(list("abcdefxyz0123-")), min_size=1, max_size=8)
# Clients differ in what they leave unencoded in the path; all sign what they send.
path_encoders: list[Callable[[str], str]] = [
    lambda key: percent_encode(key, safe="/~"),
    lambda key: quote(key, safe="/~=@+!$'()*,;:"),
    lambda key: quote(key, safe="~"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]),
    key=object_keys,
    encoder=st.sampled_from(path_encoders),
    query=st.lists(st.tuples(query_text.filter(bool), st.none() | query_text), max_size=4),
    meta=st.dictionaries(meta_names, header_values, max_size=3),
    body=st.binary(max_size=64),
    extra=st.sampled_from([{}, {"Range": "bytes=0-9"}, {"Content-Type": "text/plain"}]),
)
def test_botocore_header_signed_requests_verify_and_tampering_fails(
    method: str,
    key: str,
    encoder: Callable[[str], str],
    query: list[tuple[str, str | None]],
    meta: dict[str, str],
    body: bytes,
    extra: dict[str, str],
) -> None:
    raw_query = "&".join(
        percent_encode(k) if v is None else percent_encode_sequence([(k, v)]) for k, v in query
    )
    url = f"{ENDPOINT}/bucket/{encoder(key)}" + (f"?{raw_query}" if raw_query else "")
    headers = {f"x-amz-meta-{n}": v for n, v in meta.items()} | extra
    view = sign_header(method, url, headers, body=body)
    result = check(view)
    assert result == AuthResult(ACCESS_KEY, hashlib.sha256(body).hexdigest())

    refused(replace(view, method="PATCH"), "SignatureDoesNotMatch", 403)
    refused(replace(view, raw_path=view.raw_path + "x"), "SignatureDoesNotMatch", 403)
    refused(replace(view, query=[*view.query, ("extra", "")]), "SignatureDoesNotMatch", 403)
    if view.query:
        (k, v), *rest = view.query
        refused(replace(view, query=[(k, v + "x"), *rest]), "SignatureDoesNotMatch", 403)
    refused(
        with_headers(view, x_amz_content_sha256=hashlib.sha256(body + b"!").hexdigest()),
        "SignatureDoesNotMatch",
        403,
    )
    if meta:
        name = f"x-amz-meta-{next(iter(meta))}"
        tampered = with_headers(view, **{name: view.headers[name] + "x"})
        refused(tampered, "SignatureDoesNotMatch", 403)
    later = checks.format_amz_date(NOW + 1)
    refused(with_headers(view, x_amz_date=later), "SignatureDoesNotMatch", 403)
    with pytest.raises(AuthError) as info:
        authenticate(view, lambda _: "not-the-secret", region=REGION, now=NOW)
    assert info.value.code == "SignatureDoesNotMatch"


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE"]),
    key=object_keys,
    params=st.dictionaries(
        query_text.filter(lambda k: k and not k.startswith("X-Amz-")), query_text, max_size=4
    ),
    expires=st.integers(1, 604800),
)
def test_botocore_presigned_urls_verify(
    method: str, key: str, params: dict[str, str], expires: int
) -> None:
    url = f"{ENDPOINT}/bucket/{percent_encode(key, safe='/~')}"
    view = presign(method, url, params=params, expires=expires)
    result = check(view)
    assert result == AuthResult(ACCESS_KEY, "UNSIGNED-PAYLOAD", presigned=True)
    # valid through its last second, expired one second later
    check(view, now=NOW + expires)
    refused(view, "AccessDenied", 403, now=NOW + expires + 1)

    refused(replace(view, method="POST"), "SignatureDoesNotMatch", 403)
    refused(replace(view, raw_path=view.raw_path + "/"), "SignatureDoesNotMatch", 403)
    query = [(k, v + "0" if k == "X-Amz-Expires" else v) for k, v in view.query]
    if expires <= 60480:  # an extra digit stays within a week
        refused(replace(view, query=query), "SignatureDoesNotMatch", 403)
    signed_host = replace(view, headers={**view.headers, "host": "evil.example"})
    refused(signed_host, "SignatureDoesNotMatch", 403)


def test_params_encoded_by_urlencode_verify() -> None:
    # AWSRequest.params reach the wire through urlencode (space as '+'); the signature used %20.
    params = {"prefix": "a b+c/d", "list-type": "2", "delimiter": "/", "empty": ""}
    view = sign_header("GET", f"{ENDPOINT}/bucket", params=params)
    assert ("prefix", "a b+c/d") in view.query
    check(view)


def test_valueless_query_keys_and_duplicates() -> None:
    view = sign_header("GET", f"{ENDPOINT}/bucket/key?acl&tagging=&b=2&b=1&a=%20")
    assert sigv4.canonical_query_string(view.query) == "a=%20&acl=&b=1&b=2&tagging="
    check(view)


def test_presigned_put_with_signed_headers() -> None:
    view = presign(
        "PUT",
        f"{ENDPOINT}/bucket/some%20key",
        headers={"Content-Type": "image/png", "x-amz-acl": "private"},
    )
    signed = dict(view.query)["X-Amz-SignedHeaders"]
    assert signed == "content-type;host;x-amz-acl"
    assert check(view).presigned
    refused(with_headers(view, content_type="text/html"), "SignatureDoesNotMatch", 403)


def test_repeated_headers_are_joined_like_botocore() -> None:
    view = sign_header(
        "GET",
        f"{ENDPOINT}/bucket/k",
        [("X-Amz-Meta-Tag", " one  two "), ("x-amz-meta-tag", "three")],
    )
    assert view.headers["x-amz-meta-tag"] == "one two,three"
    check(view)


def test_date_header_instead_of_x_amz_date() -> None:
    view = sign_header("GET", f"{ENDPOINT}/bucket/k", {"Date": "placeholder"})
    assert "x-amz-date" not in view.headers
    assert view.headers["date"] == "Fri, 17 May 2024 12:34:56 -0000"
    check(view)
    refused(view, "RequestTimeTooSkewed", 403, now=NOW + 16 * 60)


def test_unsigned_payload_and_streaming_trailer_values() -> None:
    https = "https://localhost:9000/bucket/k"
    config = SimpleNamespace(s3={"payload_signing_enabled": False})
    view = sign_header("PUT", https, body=b"data", context={"client_config": config})
    assert check(view).payload_hash == "UNSIGNED-PAYLOAD"
    trailer = {"checksum": {"request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32"}}}
    view = sign_header("PUT", https, {"x-amz-trailer": "x-amz-checksum-crc32"}, context=trailer)
    result = check(view)
    assert result.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert result.streaming
    assert result.chunk_context is None


@pytest.mark.parametrize(
    "payload", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"]
)
def test_signed_streaming_returns_chunk_context(payload: str) -> None:
    view = sign_header("PUT", f"{ENDPOINT}/bucket/k", payload=payload)
    result = check(view)
    assert result.payload_hash == payload
    context = result.chunk_context
    assert context is not None
    assert context.trailer == payload.endswith("TRAILER")
    assert context.amz_date == "20240517T123456Z"
    assert context.scope == "20240517/us-east-1/s3/aws4_request"
    assert context.signing_key == sigv4.signing_key(SECRET, "20240517", REGION)
    assert context.seed_signature == view.headers["authorization"].rsplit("Signature=", 1)[1]
    assert SECRET not in repr(result) and context.signing_key.hex() not in repr(result)


def test_upper_case_hex_payload_hash_is_returned_lower_case() -> None:
    digest = hashlib.sha256(b"x").hexdigest().upper()
    view = sign_header("PUT", f"{ENDPOINT}/bucket/k", payload=digest)
    assert check(view).payload_hash == digest.lower()


# --- AWS's published examples ---------------------------------------------------------------

AWS_DATE = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))


def test_aws_example_get_object() -> None:
    # "Example: GET Object" of AWS's "Signature Calculations for the Authorization Header".
    view = RequestView(
        "GET",
        "/test.txt",
        [],
        {
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
            "us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
    )
    assert check(view, now=AWS_DATE) == AuthResult(ACCESS_KEY, EMPTY_SHA256)


def test_aws_example_presigned_get() -> None:
    # The example of AWS's "Authenticating Requests: Using Query Parameters".
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    view = RequestView(
        "GET",
        "/test.txt",
        parse_qsl(query, keep_blank_values=True),
        {"host": "examplebucket.s3.amazonaws.com"},
    )
    assert check(view, now=AWS_DATE + 3600).presigned
    refused(view, "AccessDenied", 403, now=AWS_DATE + 86401)


# --- every refusal, with AWS's code and status ----------------------------------------------


@pytest.fixture
def signed_get() -> RequestView:
    return sign_header("GET", f"{ENDPOINT}/bucket/key")


@pytest.fixture
def presigned_get() -> RequestView:
    return presign("GET", f"{ENDPOINT}/bucket/key")


def test_no_authentication_is_anonymous(
    signed_get: RequestView, presigned_get: RequestView
) -> None:
    view = RequestView("GET", "/bucket/key", [("x", "1")], {"host": "localhost"})
    assert is_anonymous(view)
    assert authenticate(view, lookup, region=REGION, now=NOW) is None
    assert not is_anonymous(signed_get)
    assert not is_anonymous(presigned_get)
    assert not is_anonymous(replace(view, query=[("AWSAccessKeyId", "AK")]))
    # A credential without the rest of a signature is refused, not taken for anonymous.
    credential = replace(view, query=[("X-Amz-Credential", f"{ACCESS_KEY}/20240517")])
    assert not is_anonymous(credential)
    assert refused(credential, "AccessDenied", 403).text == "Access Denied"


def test_unknown_access_key(signed_get: RequestView) -> None:
    view = sign_header("GET", f"{ENDPOINT}/bucket/key", access_key="AKNOBODY")
    error = refused(view, "InvalidAccessKeyId", 403)
    assert error.extra["AWSAccessKeyId"] == "AKNOBODY"
    view = presign("GET", f"{ENDPOINT}/bucket/key", access_key="AKNOBODY")
    refused(view, "InvalidAccessKeyId", 403)


def test_signature_mismatch_reports_what_was_signed(signed_get: RequestView) -> None:
    auth = signed_get.headers["authorization"]
    bad = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    error = refused(with_headers(signed_get, authorization=bad), "SignatureDoesNotMatch", 403)
    assert error.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20240517T123456Z\n")
    assert error.extra["CanonicalRequest"].startswith("GET\n/bucket/key\n\nhost:localhost:9000\n")
    assert error.extra["SignatureProvided"] == bad.rsplit("=", 1)[1]
    # a signature that is not even ASCII is a mismatch, not a crash
    refused(with_headers(signed_get, authorization=auth[:-1] + "é"), "SignatureDoesNotMatch", 403)


def test_wrong_secret_on_presigned_url() -> None:
    refused(presign("GET", f"{ENDPOINT}/b/k", secret="wrong"), "SignatureDoesNotMatch", 403)


def _authorization(
    credential: str, signed: str = "host;x-amz-date", signature: str = "0" * 64
) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240517/us-east-1/s3/aws4_request, "
            "SignedHeaders=host",
            "The authorization header is malformed; the authorization header requires three "
            "components: Credential, SignedHeaders, and Signature.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential",
            'The authorization header is malformed; the authorization component "Credential" '
            "is malformed.",
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/20240517/us-east-1/s3"),
            "The authorization header is malformed; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/2024-5-17/us-east-1/s3/aws4_request"),
            "The authorization header is malformed; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/20240517/eu-west-1/s3/aws4_request"),
            "The authorization header is malformed; the region 'eu-west-1' is wrong; "
            "expecting 'us-east-1'",
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/20240517/us-east-1/ec2/aws4_request"),
            'The authorization header is malformed; incorrect service "ec2". This endpoint '
            'belongs to "s3".',
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/20240517/us-east-1/s3/aws5_request"),
            'The authorization header is malformed; incorrect terminal "aws5_request". This '
            'endpoint uses "aws4_request".',
        ),
        (
            _authorization("AKIAIOSFODNN7EXAMPLE/20240516/us-east-1/s3/aws4_request"),
            "The authorization header is malformed; Invalid credential date. Date is not the "
            "same as X-Amz-Date.",
        ),
    ],
)
def test_malformed_authorization_header(
    signed_get: RequestView, authorization: str, message: str
) -> None:
    error = refused(
        with_headers(signed_get, authorization=authorization), "AuthorizationHeaderMalformed", 400
    )
    assert error.text == message


def test_wrong_region_names_the_right_one(signed_get: RequestView) -> None:
    view = sign_header("GET", f"{ENDPOINT}/bucket/key", region="eu-central-1")
    error = refused(view, "AuthorizationHeaderMalformed", 400)
    assert error.extra == {"Region": "us-east-1"}
    with pytest.raises(AuthError):
        check(signed_get, region="eu-central-1")
    assert check(view, region="eu-central-1").access_key == ACCESS_KEY


def test_unknown_authorization_scheme(signed_get: RequestView) -> None:
    error = refused(with_headers(signed_get, authorization="Bearer abc"), "InvalidArgument", 400)
    assert error.text == "Unsupported Authorization Type"
    assert error.extra["ArgumentName"] == "Authorization"


def test_header_and_query_auth_together(
    signed_get: RequestView, presigned_get: RequestView
) -> None:
    both = replace(signed_get, query=presigned_get.query)
    error = refused(both, "InvalidArgument", 400)
    assert error.text.startswith("Only one auth mechanism allowed")


def test_missing_and_invalid_content_sha256(signed_get: RequestView) -> None:
    error = refused(with_headers(signed_get, x_amz_content_sha256=None), "InvalidRequest", 400)
    assert error.text == "Missing required header for this request: x-amz-content-sha256"
    for bad in ["abc", "g" * 64, "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", " " + "a" * 63]:
        error = refused(with_headers(signed_get, x_amz_content_sha256=bad), "InvalidArgument", 400)
        assert error.extra["ArgumentName"] == "x-amz-content-sha256"


@pytest.mark.parametrize("offset", [-15 * 60 - 1, 15 * 60 + 1, -86400 * 3])
def test_request_time_too_skewed(signed_get: RequestView, offset: int) -> None:
    error = refused(signed_get, "RequestTimeTooSkewed", 403, now=NOW + offset)
    assert error.extra["RequestTime"] == "20240517T123456Z"
    assert error.extra["MaxAllowedSkewMilliseconds"] == "900000"
    check(signed_get, now=NOW + (900 if offset > 0 else -900))


@pytest.mark.parametrize(
    "date", [None, "20240517T1234", "2024-05-17T12:34:56Z", "20241317T123456Z"]
)
def test_missing_or_invalid_request_date(signed_get: RequestView, date: str | None) -> None:
    view = with_headers(signed_get, x_amz_date=date)
    error = refused(view, "AccessDenied", 403)
    assert error.text == "AWS authentication requires a valid Date or x-amz-date header"


def test_unsigned_amz_headers_are_refused(
    signed_get: RequestView, presigned_get: RequestView
) -> None:
    for view in (signed_get, presigned_get):
        error = refused(with_headers(view, x_amz_acl="public-read"), "AccessDenied", 403)
        assert error.text == "There were headers present in the request which were not signed"
        assert error.extra == {"HeadersNotSigned": "x-amz-acl"}
    # unsigned ordinary headers are fine
    check(with_headers(signed_get, user_agent="test", accept="*/*"))


def test_host_must_be_signed(signed_get: RequestView) -> None:
    auth = signed_get.headers["authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    error = refused(with_headers(signed_get, authorization=auth), "AccessDenied", 403)
    assert error.extra == {"HeadersNotSigned": "host"}


def _presigned_with(view: RequestView, **params: str | None) -> RequestView:
    query = [(k, v) for k, v in view.query if k.replace("-", "_") not in params]
    query += [(k.replace("_", "-"), v) for k, v in params.items() if v is not None]
    return replace(view, query=query)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"X_Amz_Signature": None},
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters.",
        ),
        ({"X_Amz_Expires": ""}, "Query-string authentication version 4 requires"),
        ({"X_Amz_Algorithm": "AWS4-HMAC-SHA1"}, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"'),
        (
            {"X_Amz_Credential": "AKIAIOSFODNN7EXAMPLE/20240517/us-west-2/s3/aws4_request"},
            "Error parsing the X-Amz-Credential parameter; the region 'us-west-2' is wrong; "
            "expecting 'us-east-1'",
        ),
        (
            {"X_Amz_Credential": "AKIAIOSFODNN7EXAMPLE/20240517/us-east-1/sqs/aws4_request"},
            'Error parsing the X-Amz-Credential parameter; incorrect service "sqs".',
        ),
        (
            {"X_Amz_Credential": "AKIAIOSFODNN7EXAMPLE"},
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed;",
        ),
        ({"X_Amz_Date": "2024-05-17"}, "X-Amz-Date must be in the ISO8601 Long Format"),
        ({"X_Amz_Date": "20240518T000000Z"}, "Invalid credential date. Date is not the same"),
        ({"X_Amz_Expires": "soon"}, "X-Amz-Expires should be a number"),
        ({"X_Amz_Expires": "+5"}, "X-Amz-Expires should be a number"),
        ({"X_Amz_Expires": "-5"}, "X-Amz-Expires must be non-negative"),
        ({"X_Amz_Expires": "604801"}, "X-Amz-Expires must be less than a week"),
        ({"X_Amz_Expires": "9" * 5000}, "X-Amz-Expires must be less than a week"),
    ],
)
def test_presigned_query_errors(
    presigned_get: RequestView, params: dict[str, str | None], message: str
) -> None:
    view = _presigned_with(presigned_get, **params)
    error = refused(view, "AuthorizationQueryParametersError", 400)
    assert error.text.startswith(message)


def test_presigned_duplicate_auth_parameter(presigned_get: RequestView) -> None:
    view = replace(presigned_get, query=[*presigned_get.query, ("X-Amz-Signature", "0" * 64)])
    refused(view, "AuthorizationQueryParametersError", 400)


def test_presigned_region_error_names_region(presigned_get: RequestView) -> None:
    view = presign("GET", f"{ENDPOINT}/bucket/key", region="ap-south-1")
    error = refused(view, "AuthorizationQueryParametersError", 400)
    assert error.extra == {"Region": "us-east-1"}


def test_presigned_expiry_and_future_dates() -> None:
    view = presign("GET", f"{ENDPOINT}/bucket/key", expires=60)
    error = refused(view, "AccessDenied", 403, now=NOW + 61)
    assert error.text == "Request has expired"
    assert error.extra == {
        "X-Amz-Expires": "60",
        "Expires": "2024-05-17T12:35:56Z",
        "ServerTime": "2024-05-17T12:35:57Z",
    }
    # clocks drift: a URL signed up to 15 minutes "in the future" is fine, later is not yet valid
    check(view, now=NOW - 900)
    error = refused(view, "AccessDenied", 403, now=NOW - 901)
    assert error.text == "Request is not valid yet"
    # a URL good for no time at all has expired, even signed this very second
    zero = presign("GET", f"{ENDPOINT}/bucket/key", expires=0)
    assert refused(zero, "AccessDenied", 403).text == "Request has expired"
    # an old presigned URL still inside its window is not "skewed"
    week = presign("GET", f"{ENDPOINT}/bucket/key", expires=604800)
    check(week, now=NOW + 6 * 86400)


def test_presigned_with_signed_content_sha256_header() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    view = presign("PUT", f"{ENDPOINT}/b/k", headers={"X-Amz-Content-SHA256": digest})
    assert check(view).payload_hash == digest


def test_signing_key_is_cached() -> None:
    sigv4.signing_key.cache_clear()
    view = sign_header("GET", f"{ENDPOINT}/bucket/key", when=WHEN + timedelta(days=1))
    for _ in range(3):
        check(view, now=NOW + 86400)
    info = sigv4.signing_key.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_uri_encode() -> None:
    assert sigv4.uri_encode("aZ09-_.~") == "aZ09-_.~"
    assert sigv4.uri_encode("a b+c/d=é*") == "a%20b%2Bc%2Fd%3D%C3%A9%2A"
    assert sigv4.uri_encode("\udcff") == "%FF"  # a wire byte decoded with surrogateescape


def test_every_refusal_maps_to_the_s3_error_of_its_code() -> None:
    for code in get_args(AuthErrorCode):
        error = as_s3_error(AuthError(code, "why", {"Detail": "x"}))
        assert (error.code, error.text, error.extra) == (code, "why", {"Detail": "x"})
    assert as_s3_error(AuthError("AccessDenied")).text == "Access Denied"
