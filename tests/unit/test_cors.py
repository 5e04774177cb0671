"""CORS rules: the document, matching, and the headers a browser gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.meta.records import BucketRecord
from stratum.s3 import cors
from stratum.s3.errors import S3Error

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*rules: str) -> bytes:
    return f"<CORSConfiguration {NS}>{''.join(rules)}</CORSConfiguration>".encode()


def rule(*elements: str) -> str:
    return "<CORSRule>" + "".join(elements) + "</CORSRule>"


def bucket_with(*rules: cors.CorsRule) -> BucketRecord:
    value = {"v": cors.FORMAT_VERSION, "rules": [r.to_setting() for r in rules]}
    return BucketRecord(name="b", owner_id="o", created=0.0, settings={"cors": value})


def test_document_round_trips() -> None:
    body = doc(
        rule(
            "<ID>web</ID>",
            "<AllowedOrigin>https://*.example.com</AllowedOrigin>",
            "<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>",
            "<AllowedHeader>x-amz-*</AllowedHeader>",
            "<ExposeHeader>ETag</ExposeHeader>",
            "<MaxAgeSeconds>600</MaxAgeSeconds>",
        ),
        rule("<AllowedOrigin>*</AllowedOrigin>", "<AllowedMethod>HEAD</AllowedMethod>"),
    )
    rules = cors.parse_cors_configuration(body)
    assert rules[0] == cors.CorsRule(
        origins=("https://*.example.com",),
        methods=("GET", "PUT"),
        headers=("x-amz-*",),
        expose=("ETag",),
        max_age=600,
        id="web",
    )
    assert cors.parse_cors_configuration(cors.configuration_xml(rules)) == rules
    stored = [cors.CorsRule.from_setting(r.to_setting()) for r in rules]
    assert stored == rules


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (doc(), "MalformedXML"),
        (b"<Other/>", "MalformedXML"),
        (doc(rule("<AllowedMethod>GET</AllowedMethod>")), "MalformedXML"),
        (doc(rule("<AllowedOrigin>*</AllowedOrigin>")), "MalformedXML"),
        (
            doc(rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>")),
            "InvalidRequest",
        ),
        (
            doc(rule("<AllowedOrigin>*a*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>")),
            "InvalidRequest",
        ),
        (
            doc(
                rule(
                    "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>",
                    "<MaxAgeSeconds>soon</MaxAgeSeconds>",
                )
            ),
            "MalformedXML",
        ),
        (
            doc(
                *[rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>")] * 101
            ),
            "MalformedXML",
        ),
    ],
)
def test_refused_documents(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as info:
        cors.parse_cors_configuration(body)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("*suffix", "foo.suffix", True),
        ("*suffix", "foo.suffix.get", False),
        ("start*end", "startend", True),
        ("start*end", "start12end", True),
        ("start*end", "0start12end", False),
        ("prefix*", "prefix", True),
        ("prefix*", "bla.prefix", False),
        ("aba*aba", "aba", False),  # head and tail may not overlap
        ("exact", "exact", True),
        ("exact", "Exact", False),
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert cors.wildcard_match(pattern, value) is expected


@given(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8))
def test_wildcard_matches_whatever_stands_for_the_star(head: str, middle: str, tail: str) -> None:
    head, tail = head.replace("*", ""), tail.replace("*", "")
    assert cors.wildcard_match(f"{head}*{tail}", head + middle + tail)


GET_RULE = cors.CorsRule(origins=("*.suffix",), methods=("GET",), expose=("x-amz-meta-a",))
PUT_RULE = cors.CorsRule(
    origins=("https://app.example",),
    methods=("PUT", "POST"),
    headers=("x-amz-*", "content-type"),
    max_age=3000,
)


def test_preflight_allows_a_matching_rule() -> None:
    bucket = bucket_with(GET_RULE, PUT_RULE)
    response = cors.preflight(
        bucket,
        "b",
        True,
        {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Content-Type, X-Amz-Date",
        },
    )
    assert response.status == 200
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Allow-Methods"] == "PUT, POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert headers["Access-Control-Max-Age"] == "3000"
    assert "Origin" in headers["Vary"]


def test_preflight_star_origin_and_expose() -> None:
    star = cors.CorsRule(origins=("*",), methods=("GET",), expose=("ETag", "x-amz-meta-a"))
    response = cors.preflight(
        bucket_with(star), "b", False, {"Origin": "x", "Access-Control-Request-Method": "GET"}
    )
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-meta-a"
    assert "Access-Control-Max-Age" not in response.headers


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "InvalidRequest"),
        ({"Origin": "a.suffix"}, "InvalidRequest"),
        ({"Origin": "a.other", "Access-Control-Request-Method": "GET"}, "AccessForbidden"),
        ({"Origin": "a.suffix", "Access-Control-Request-Method": "PUT"}, "AccessForbidden"),
        (
            {
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-custom",
            },
            "AccessForbidden",
        ),
    ],
)
def test_preflight_refusals(headers: dict[str, str], code: str) -> None:
    with pytest.raises(S3Error) as info:
        cors.preflight(bucket_with(GET_RULE, PUT_RULE), "b", True, headers)
    assert info.value.code == code


def test_preflight_without_rules_or_bucket() -> None:
    asked = {"Origin": "a.suffix", "Access-Control-Request-Method": "GET"}
    with pytest.raises(S3Error) as info:
        cors.preflight(bucket_with(), "b", False, asked)
    assert (info.value.code, info.value.status) == ("AccessForbidden", 403)
    with pytest.raises(S3Error) as info:
        cors.preflight(None, "b", False, asked)
    assert info.value.code == "NoSuchBucket"


def test_actual_request_headers() -> None:
    bucket = bucket_with(GET_RULE, PUT_RULE)
    got = cors.actual_request_headers(bucket, "GET", {"Origin": "foo.suffix"})
    assert got["Access-Control-Allow-Origin"] == "foo.suffix"
    assert got["Access-Control-Allow-Methods"] == "GET"
    assert got["Access-Control-Expose-Headers"] == "x-amz-meta-a"
    assert cors.actual_request_headers(bucket, "PUT", {"Origin": "foo.suffix"}) == {}
    asked = {"Origin": "foo.suffix", "Access-Control-Request-Method": "GET"}
    assert cors.actual_request_headers(bucket, "PUT", asked)["Access-Control-Allow-Origin"]
    assert cors.actual_request_headers(bucket, "GET", {}) == {}
    assert cors.actual_request_headers(None, "GET", {"Origin": "foo.suffix"}) == {}
    assert cors.actual_request_headers(bucket_with(), "GET", {"Origin": "foo.suffix"}) == {}
