"""Routing: one row per operation, addressing styles, odd keys, validation."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.s3.errors import S3Error
from stratum.s3.router import (
    PREFLIGHT,
    RULES,
    UNSUPPORTED,
    UNSUPPORTED_SERVICE_ACTION,
    BodyKind,
    CopySource,
    Endpoint,
    Target,
    parse_copy_source,
    route,
    unsupported_error,
    validate_bucket_name,
    validate_key,
)

DOMAIN = "s3.example.com"
HOST = "localhost:9000"
COPY = {"x-amz-copy-source": "/src/dir/a%20b.txt"}
V1 = "0006a1b2c3d4e5f6" + "0" * 8 + "0a0b0c0d"  # the shape of the version ids Stratum gives
V2 = "0006a1b2c3d4e5f7" + "0" * 8 + "01020304"
COPY_V = {"x-amz-copy-source": f"src/k?versionId={V1}"}
FORM = {"Content-Type": "multipart/form-data; boundary=xyz"}
FORMURL = {"content-type": "application/x-www-form-urlencoded"}


def q(text: str) -> list[tuple[str, str]]:
    """`"a&b=1"` -> [("a", ""), ("b", "1")] (decoded pairs, as aiohttp gives them)."""
    pairs = []
    for part in filter(None, text.split("&")):
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def r(
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    host: str = HOST,
) -> Endpoint:
    return route(method, host, path, q(query), headers or {}, DOMAIN)


# (method, path, query, headers, expected name, expected bucket, expected key, other fields)
CASES: list[tuple[str, str, str, dict[str, str], str, str | None, str | None, dict[str, Any]]] = [
    ("GET", "/", "", {}, "ListBuckets", None, None, {}),
    ("PUT", "/bkt", "", {}, "CreateBucket", "bkt", None, {}),
    ("DELETE", "/bkt", "", {}, "DeleteBucket", "bkt", None, {}),
    ("HEAD", "/bkt", "", {}, "HeadBucket", "bkt", None, {}),
    ("GET", "/bkt", "location", {}, "GetBucketLocation", "bkt", None, {}),
    ("GET", "/bkt", "versioning", {}, "GetBucketVersioning", "bkt", None, {}),
    ("PUT", "/bkt", "versioning", {}, "PutBucketVersioning", "bkt", None, {}),
    ("GET", "/bkt", "", {}, "ListObjects", "bkt", None, {"list_type": 1}),
    ("GET", "/bkt/", "prefix=a&marker=b", {}, "ListObjects", "bkt", None, {"list_type": 1}),
    ("GET", "/bkt", "list-type=2&prefix=x", {}, "ListObjectsV2", "bkt", None, {"list_type": 2}),
    ("GET", "/bkt", "versions", {}, "ListObjectVersions", "bkt", None, {}),
    ("GET", "/bkt", "uploads&prefix=a", {}, "ListMultipartUploads", "bkt", None, {}),
    ("GET", "/bkt", "acl", {}, "GetBucketAcl", "bkt", None, {}),
    ("PUT", "/bkt", "acl", {}, "PutBucketAcl", "bkt", None, {}),
    ("GET", "/bkt", "cors", {}, "GetBucketCors", "bkt", None, {}),
    ("PUT", "/bkt", "cors", {}, "PutBucketCors", "bkt", None, {}),
    ("DELETE", "/bkt", "cors", {}, "DeleteBucketCors", "bkt", None, {}),
    ("GET", "/bkt", "policy", {}, "GetBucketPolicy", "bkt", None, {}),
    ("PUT", "/bkt", "policy", {}, "PutBucketPolicy", "bkt", None, {}),
    ("DELETE", "/bkt", "policy", {}, "DeleteBucketPolicy", "bkt", None, {}),
    ("GET", "/bkt", "tagging", {}, "GetBucketTagging", "bkt", None, {}),
    ("PUT", "/bkt", "tagging", {}, "PutBucketTagging", "bkt", None, {}),
    ("DELETE", "/bkt", "tagging", {}, "DeleteBucketTagging", "bkt", None, {}),
    ("GET", "/bkt", "lifecycle", {}, "GetBucketLifecycleConfiguration", "bkt", None, {}),
    ("PUT", "/bkt", "lifecycle", {}, "PutBucketLifecycleConfiguration", "bkt", None, {}),
    ("DELETE", "/bkt", "lifecycle", {}, "DeleteBucketLifecycle", "bkt", None, {}),
    ("GET", "/bkt", "encryption", {}, "GetBucketEncryption", "bkt", None, {}),
    ("GET", "/bkt", "replication", {}, "GetBucketReplication", "bkt", None, {}),
    ("PUT", "/bkt", "replication", {}, "PutBucketReplication", "bkt", None, {}),
    ("DELETE", "/bkt", "replication", {}, "DeleteBucketReplication", "bkt", None, {}),
    ("GET", "/bkt", "object-lock", {}, "GetObjectLockConfiguration", "bkt", None, {}),
    ("PUT", "/bkt", "object-lock", {}, "PutObjectLockConfiguration", "bkt", None, {}),
    ("GET", "/bkt", "ownershipControls", {}, "GetBucketOwnershipControls", "bkt", None, {}),
    ("GET", "/bkt", "publicAccessBlock", {}, "GetPublicAccessBlock", "bkt", None, {}),
    ("PUT", "/bkt", "publicAccessBlock", {}, "PutPublicAccessBlock", "bkt", None, {}),
    ("DELETE", "/bkt", "publicAccessBlock", {}, "DeletePublicAccessBlock", "bkt", None, {}),
    ("PUT", "/bkt", "ownershipControls", {}, "PutBucketOwnershipControls", "bkt", None, {}),
    ("DELETE", "/bkt", "ownershipControls", {}, "DeleteBucketOwnershipControls", "bkt", None, {}),
    ("GET", "/bkt", "policyStatus", {}, "GetBucketPolicyStatus", "bkt", None, {}),
    ("GET", "/bkt", "website", {}, "GetBucketWebsite", "bkt", None, {}),
    ("GET", "/bkt", "logging", {}, "GetBucketLogging", "bkt", None, {}),
    ("GET", "/bkt", "notification", {}, "GetBucketNotificationConfiguration", "bkt", None, {}),
    ("GET", "/bkt", "requestPayment", {}, "GetBucketRequestPayment", "bkt", None, {}),
    ("GET", "/bkt", "accelerate", {}, "GetBucketAccelerateConfiguration", "bkt", None, {}),
    ("POST", "/bkt", "delete", {}, "DeleteObjects", "bkt", None, {}),
    ("POST", "/bkt", "", FORM, "PostObject", "bkt", None, {}),
    ("POST", "/bkt/", "", FORM, "PostObject", "bkt", None, {}),
    ("PUT", "/bkt/k", "", {}, "PutObject", "bkt", "k", {}),
    (
        "PUT",
        "/bkt/k",
        "",
        COPY,
        "CopyObject",
        "bkt",
        "k",
        {"copy_source": CopySource("src", "dir/a b.txt")},
    ),
    ("GET", "/bkt/k", "", {}, "GetObject", "bkt", "k", {}),
    (
        "GET",
        "/bkt/k",
        f"versionId={V2}&partNumber=3",
        {},
        "GetObject",
        "bkt",
        "k",
        {
            "version_id": V2,
            "part_number": 3,
        },
    ),
    ("HEAD", "/bkt/k", "versionId=null", {}, "HeadObject", "bkt", "k", {"version_id": "null"}),
    ("DELETE", "/bkt/k", f"versionId={V1}", {}, "DeleteObject", "bkt", "k", {"version_id": V1}),
    ("GET", "/bkt/k", "acl", {}, "GetObjectAcl", "bkt", "k", {}),
    ("PUT", "/bkt/k", "acl", {}, "PutObjectAcl", "bkt", "k", {}),
    ("GET", "/bkt/k", "tagging", {}, "GetObjectTagging", "bkt", "k", {}),
    ("GET", "/bkt/k", "retention", {}, "GetObjectRetention", "bkt", "k", {}),
    ("PUT", "/bkt/k", "retention", {}, "PutObjectRetention", "bkt", "k", {}),
    ("GET", "/bkt/k", "legal-hold", {}, "GetObjectLegalHold", "bkt", "k", {}),
    ("PUT", "/bkt/k", "legal-hold", {}, "PutObjectLegalHold", "bkt", "k", {}),
    (
        "PUT",
        "/bkt/k",
        "tagging&versionId=null",
        {},
        "PutObjectTagging",
        "bkt",
        "k",
        {"version_id": "null"},
    ),
    ("DELETE", "/bkt/k", "tagging", {}, "DeleteObjectTagging", "bkt", "k", {}),
    ("GET", "/bkt/k", "attributes", {}, "GetObjectAttributes", "bkt", "k", {}),
    ("POST", "/bkt/k", "uploads", {}, "CreateMultipartUpload", "bkt", "k", {}),
    (
        "PUT",
        "/bkt/k",
        "partNumber=7&uploadId=u1",
        {},
        "UploadPart",
        "bkt",
        "k",
        {
            "part_number": 7,
            "upload_id": "u1",
        },
    ),
    (
        "PUT",
        "/bkt/k",
        "uploadId=u1&partNumber=10000",
        COPY_V,
        "UploadPartCopy",
        "bkt",
        "k",
        {
            "part_number": 10000,
            "upload_id": "u1",
            "copy_source": CopySource("src", "k", V1),
        },
    ),
    (
        "POST",
        "/bkt/k",
        "uploadId=u1",
        {},
        "CompleteMultipartUpload",
        "bkt",
        "k",
        {"upload_id": "u1"},
    ),
    (
        "DELETE",
        "/bkt/k",
        "uploadId=u1",
        {},
        "AbortMultipartUpload",
        "bkt",
        "k",
        {"upload_id": "u1"},
    ),
    ("GET", "/bkt/k", "uploadId=u1&max-parts=2", {}, "ListParts", "bkt", "k", {"upload_id": "u1"}),
    ("POST", "/bkt/k", "restore", {}, "RestoreObject", "bkt", "k", {}),
    ("POST", "/bkt/k", "select&select-type=2", {}, "SelectObjectContent", "bkt", "k", {}),
    ("OPTIONS", "/bkt/k", "", {}, PREFLIGHT, "bkt", "k", {}),
    ("OPTIONS", "/bkt/k", "uploadId=u&partNumber=1", {}, PREFLIGHT, "bkt", "k", {}),
    ("OPTIONS", "/bkt", "", {}, PREFLIGHT, "bkt", None, {}),
    ("OPTIONS", "/", "", {}, PREFLIGHT, None, None, {}),
    ("POST", "/", "Action=AssumeRole", {}, UNSUPPORTED_SERVICE_ACTION, None, None, {}),
    ("POST", "/", "", FORMURL, UNSUPPORTED_SERVICE_ACTION, None, None, {}),
    ("GET", "/", "Action=GetCallerIdentity", {}, UNSUPPORTED_SERVICE_ACTION, None, None, {}),
    # precedence: a subresource beats a header
    ("PUT", "/bkt/k", "acl", COPY, "PutObjectAcl", "bkt", "k", {}),
    ("PUT", "/bkt/k", "tagging", COPY, "PutObjectTagging", "bkt", "k", {}),
    # headers are looked up case-insensitively even in a plain dict
    (
        "PUT",
        "/bkt/k",
        "",
        {"X-Amz-Copy-Source": "src/x"},
        "CopyObject",
        "bkt",
        "k",
        {"copy_source": CopySource("src", "x")},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "name", "bucket", "key", "fields"),
    CASES,
    ids=[f"{c[0]} {c[1]}?{c[2]} {c[4]}" for c in CASES],
)
def test_route(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    name: str,
    bucket: str | None,
    key: str | None,
    fields: dict[str, Any],
) -> None:
    ep = r(method, path, query, headers)
    assert (ep.name, ep.bucket, ep.key) == (name, bucket, key)
    defaults = {
        "version_id": None,
        "upload_id": None,
        "part_number": None,
        "list_type": None,
        "copy_source": None,
    }
    for field, default in defaults.items():
        assert getattr(ep, field) == fields.get(field, default), field


def test_every_operation_has_a_case() -> None:
    routed = {c[4] for c in CASES}
    assert {rule.name for rule in RULES} <= routed


def test_target_kind_and_resource() -> None:
    assert r("GET", "/").target is Target.SERVICE
    assert r("GET", "/").resource == "/"
    assert r("GET", "/bkt").target is Target.BUCKET
    assert r("GET", "/bkt").resource == "/bkt"
    ep = r("GET", "/bkt/a/b")
    assert ep.target is Target.OBJECT
    assert ep.resource == "/bkt/a/b"


def test_body_kinds() -> None:
    assert r("PUT", "/bkt/k").body is BodyKind.STREAM
    assert r("PUT", "/bkt/k", "partNumber=1&uploadId=u").body is BodyKind.STREAM
    assert r("POST", "/bkt", "", FORM).body is BodyKind.STREAM
    assert r("POST", "/bkt", "delete").body is BodyKind.DOCUMENT
    assert r("POST", "/bkt/k", "uploadId=u").body is BodyKind.DOCUMENT
    assert r("PUT", "/bkt").body is BodyKind.DOCUMENT
    assert r("PUT", "/bkt/k", "", COPY).body is BodyKind.NONE
    assert not r("GET", "/bkt/k").needs_body
    assert r("POST", "/", "Action=X").body is BodyKind.NONE
    assert r("PUT", "/bkt/k").needs_body


# --- virtual-hosted style ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "bucket", "key"),
    [
        ("bkt.s3.example.com", "/", "bkt", None),
        ("bkt.s3.example.com:9000", "/", "bkt", None),
        ("BKT.S3.Example.COM.", "/", "bkt", None),
        ("my.dotted.bkt.s3.example.com", "/k", "my.dotted.bkt", "k"),
        ("bkt.s3.example.com", "/dir/file.txt", "bkt", "dir/file.txt"),
        # the whole path is the key: a first segment is not a bucket
        ("bkt.s3.example.com", "/other/k", "bkt", "other/k"),
        ("bkt.s3.example.com", "//k", "bkt", "/k"),
        # the domain itself, other hosts and IPs are path-style
        ("s3.example.com", "/bkt/k", "bkt", "k"),
        ("s3.example.com:443", "/bkt", "bkt", None),
        ("example.com", "/bkt/k", "bkt", "k"),
        ("xs3.example.com", "/bkt/k", "bkt", "k"),
        ("127.0.0.1:9000", "/bkt/k", "bkt", "k"),
        ("[::1]:9000", "/bkt/k", "bkt", "k"),
        ("", "/bkt/k", "bkt", "k"),
    ],
)
def test_virtual_host(host: str, path: str, bucket: str, key: str | None) -> None:
    ep = r("GET", path, host=host)
    assert (ep.bucket, ep.key) == (bucket, key)


def test_empty_domain_is_always_path_style() -> None:
    ep = route("GET", "bkt.s3.example.com", "/other/k", [], {}, "")
    assert (ep.bucket, ep.key) == ("other", "k")


def test_virtual_host_service_level_is_bucket_level() -> None:
    assert r("GET", "/", "list-type=2", host="bkt.s3.example.com").name == "ListObjectsV2"
    assert r("POST", "/", "delete", host="bkt.s3.example.com").name == "DeleteObjects"


def test_virtual_host_bucket_is_validated() -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "/", host="bad_name.s3.example.com")
    assert e.value.code == "InvalidBucketName"


# --- odd keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("caf%C3%A9/%E2%9C%93.txt", "café/✓.txt"),
        ("a%20b%20c", "a b c"),
        ("a+b", "a+b"),
        ("a%2Bb", "a+b"),
        ("dir%2Ffile", "dir/file"),
        ("dir/", "dir/"),
        ("dir//", "dir//"),
        ("../../etc/passwd", "../../etc/passwd"),
        ("%2E%2E/%2E%2E/etc/passwd", "../../etc/passwd"),
        ("line%0Abreak%0D", "line\nbreak\r"),
        ("tab%09nul%00", "tab\tnul\x00"),
        ("%3F%23%25%26", "?#%&"),
        ("~!*'()", "~!*'()"),
        ("%F0%9F%98%80", "😀"),
    ],
)
def test_odd_keys(raw: str, key: str) -> None:
    assert r("GET", "/bkt/" + raw).key == key
    assert r("GET", "/" + raw, host="bkt.s3.example.com").key == key


@given(st.text(min_size=1, max_size=200))
def test_any_key_roundtrips_through_client_encoding(key: str) -> None:
    # botocore quotes paths with safe="/~"; lone surrogates cannot be sent as UTF-8.
    try:
        raw = quote(key.encode("utf-8"), safe="/~")
    except UnicodeEncodeError:
        return
    ep = r("PUT", "/bkt/" + raw)
    assert (ep.name, ep.key) == ("PutObject", key)


@pytest.mark.parametrize("raw", ["a%zz", "a%", "a%4", "%C3%28", "%FF", "%ED%A0%80"])
def test_bad_escapes_are_invalid_uri(raw: str) -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "/bkt/" + raw)
    assert e.value.code == "InvalidURI"


def test_query_string_in_raw_path_is_ignored() -> None:
    ep = route("GET", HOST, "/bkt/a%3Fb?uploadId=x", [("uploadId", "x")], {}, DOMAIN)
    assert (ep.name, ep.key, ep.upload_id) == ("ListParts", "a?b", "x")


def test_raw_unicode_in_path() -> None:
    # A client sending raw UTF-8 bytes; aiohttp hands them over decoded (surrogateescape).
    assert r("GET", "/bkt/café").key == "café"
    with pytest.raises(S3Error) as e:
        r("GET", "/bkt/caf\udcc3")
    assert e.value.code == "InvalidURI"


def test_path_must_be_absolute() -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "bkt/k")
    assert e.value.code == "InvalidURI"


def test_empty_bucket_segment() -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "//k")
    assert e.value.code == "InvalidBucketName"


def test_encoded_slash_in_bucket_segment_is_not_a_separator() -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "/bkt%2Fk")
    assert e.value.code == "InvalidBucketName"


def test_key_length_limit() -> None:
    assert r("PUT", "/bkt/" + "a" * 1024).key == "a" * 1024
    assert r("PUT", "/bkt/" + quote("é" * 512)).key == "é" * 512  # 1024 bytes
    for raw in ("a" * 1025, quote("é" * 512 + "a"), quote("😀" * 257)):
        with pytest.raises(S3Error) as e:
            r("PUT", "/bkt/" + raw)
        assert e.value.code == "KeyTooLongError"


# --- validated arguments ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "10001", "-1", "abc", "", "1.5", "٣", " 1", "99999999"])
def test_invalid_part_numbers(value: str) -> None:
    for method, query in (
        ("PUT", f"partNumber={value}&uploadId=u"),
        ("GET", f"partNumber={value}"),
    ):
        with pytest.raises(S3Error) as e:
            r(method, "/bkt/k", query)
        assert e.value.code == "InvalidArgument"
        assert e.value.extra["ArgumentName"] == "partNumber"


def test_part_number_bounds() -> None:
    assert r("PUT", "/bkt/k", "partNumber=1&uploadId=u").part_number == 1
    assert r("PUT", "/bkt/k", "partNumber=00012&uploadId=u").part_number == 12
    assert r("HEAD", "/bkt/k", "partNumber=10000").part_number == 10000


@pytest.mark.parametrize(
    "version_id", ["", "v1", V1.upper(), V1[:-1], V1 + "0", "NULL", "3HL4kqCxf3vjVBH40Nrjfkd"]
)
def test_malformed_version_id(version_id: str) -> None:
    """AWS answers a version id of a shape it never gives with InvalidArgument."""
    with pytest.raises(S3Error) as e:
        r("GET", "/bkt/k", f"versionId={version_id}")
    assert e.value.code == "InvalidArgument"
    assert e.value.extra["ArgumentName"] == "versionId"


def test_invalid_list_type() -> None:
    with pytest.raises(S3Error) as e:
        r("GET", "/bkt", "list-type=3")
    assert e.value.code == "InvalidArgument"


def test_repeated_query_name_first_wins() -> None:
    ep = route(
        "PUT",
        HOST,
        "/bkt/k",
        [("partNumber", "2"), ("uploadId", "u"), ("partNumber", "9")],
        {},
        DOMAIN,
    )
    assert ep.part_number == 2


# --- unsupported ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("PATCH", "/bkt/k", "", {}),
        ("TRACE", "/", "", {}),
        ("HEAD", "/", "", {}),
        ("PUT", "/", "", {}),
        ("POST", "/", "", {}),
        ("POST", "/bkt", "", {}),
        ("POST", "/bkt/k", "", {}),
        ("PUT", "/bkt", "website", {}),
        ("DELETE", "/bkt", "encryption", {}),
        ("GET", "/bkt", "inventory", {}),
        ("GET", "/bkt", "analytics&id=x", {}),
        ("GET", "/bkt", "metrics", {}),
        ("GET", "/bkt/k", "torrent", {}),
        ("GET", "/bkt", "acl&tagging", {}),  # ambiguous
        ("POST", "/bkt/k", "uploads&uploadId=u", {}),  # ambiguous
        ("PUT", "/bkt/k", "partNumber=1", {}),  # a part without an upload
        ("PUT", "/bkt/k", "uploadId=u", {}),
        ("GET", "/bkt/k", "uploadId=u&partNumber=1", {}),
        ("GET", "/bkt", "versions&list-type=2", {}),
        ("GET", "/bkt/k", "delete", {}),
        ("GET", "/bkt/k", "location", {}),
    ],
)
def test_unsupported(method: str, path: str, query: str, headers: dict[str, str]) -> None:
    ep = r(method, path, query, headers)
    assert ep.name == UNSUPPORTED
    assert ep.detail
    err = unsupported_error(ep)
    assert (err.code, err.status) == ("NotImplemented", 501)


def test_unsupported_service_action_is_a_fast_4xx() -> None:
    err = unsupported_error(r("POST", "/", "Action=ListUsers&Version=2010-05-08"))
    assert (err.code, err.status) == ("InvalidRequest", 400)


def test_unknown_parameters_are_not_subresources() -> None:
    assert r("GET", "/bkt", "foo=bar&x-id=ListObjects").name == "ListObjects"
    assert r("GET", "/bkt/k", "response-content-type=text/plain").name == "GetObject"


def test_dispatch_is_independent_of_table_order() -> None:
    from stratum.s3 import router

    expected = [r(c[0], c[1], c[2], c[3]).name for c in CASES]
    saved = router._BY_METHOD_TARGET
    try:
        router._BY_METHOD_TARGET = {k: tuple(reversed(v)) for k, v in saved.items()}
        assert [r(c[0], c[1], c[2], c[3]).name for c in CASES] == expected
    finally:
        router._BY_METHOD_TARGET = saved


# --- copy source ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("/src/k", CopySource("src", "k")),
        ("src/k", CopySource("src", "k")),
        ("src/dir/sub/k.txt", CopySource("src", "dir/sub/k.txt")),
        ("src/a%20b%2Bc+d", CopySource("src", "a b+c+d")),
        (f"src/%3Fq%3Fr?versionId={V1}", CopySource("src", "?q?r", V1)),
        ("src/k?versionId=null", CopySource("src", "k", "null")),
        ("src%2Fk", CopySource("src", "k")),
        ("src/caf%C3%A9", CopySource("src", "café")),
        ("src/dir/", CopySource("src", "dir/")),
    ],
)
def test_copy_source(header: str, expected: CopySource) -> None:
    assert parse_copy_source(header) == expected


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("", "InvalidArgument"),
        ("/src", "InvalidArgument"),
        ("src/", "InvalidArgument"),
        ("/", "InvalidArgument"),
        ("src/k?versionId=", "InvalidArgument"),
        ("src/k?versionId=abc", "InvalidArgument"),
        ("Bad_Bucket/k", "InvalidBucketName"),
        ("src/" + "a" * 1025, "KeyTooLongError"),
        ("src/%zz", "InvalidURI"),
    ],
)
def test_bad_copy_source(header: str, code: str) -> None:
    with pytest.raises(S3Error) as e:
        parse_copy_source(header)
    assert e.value.code == code
    with pytest.raises(S3Error):
        r("PUT", "/bkt/k", "", {"x-amz-copy-source": header})


# --- bucket names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 63, "my-bucket", "my.bucket.name", "1bucket", "bucket1", "a-b.c-d", "192.168.5"],
)
def test_valid_bucket_names(name: str) -> None:
    validate_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",
        "a" * 64,
        "MyBucket",
        "my_bucket",
        "-bucket",
        "bucket-",
        ".bucket",
        "bucket.",
        "my..bucket",
        "abc.-def",
        "abc-.def",
        "192.168.5.4",
        "10.0.0.1",
        "xn--bucket",
        "sthree-bucket",
        "amzn-s3-demo-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "bucket--x-s3",
        "bucket.mrap",
        "bucket--table-s3",
        "buck et",
        "bücket",
        "bucket\n",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(S3Error) as e:
        validate_bucket_name(name)
    assert e.value.code == "InvalidBucketName"
    assert e.value.extra["BucketName"] == name


def test_invalid_bucket_in_path() -> None:
    with pytest.raises(S3Error) as e:
        r("PUT", "/Bad_Bucket")
    assert e.value.code == "InvalidBucketName"


def test_validate_key() -> None:
    validate_key("k")
    validate_key("x" * 1024)
    with pytest.raises(S3Error) as e:
        validate_key("x" * 1025)
    assert e.value.code == "KeyTooLongError"
