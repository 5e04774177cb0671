"""Browser form uploads: the form's signature and its policy document (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.auth import AuthError, sigv4
from stratum.auth.post_policy import (
    Condition,
    authenticate_form,
    check_conditions,
    parse_policy,
)

AK, SECRET = "AKIDEXAMPLE000000000", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LATER = "2027-01-15T09:00:00Z"


def secrets(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def v2(policy: str, **fields: str) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), policy.encode(), hashlib.sha1).digest()
    signature = base64.b64encode(digest).decode()
    return {"awsaccesskeyid": AK, "policy": policy, "signature": signature, **fields}


def v4(policy: str, date: str = "20270115", region: str = "us-east-1") -> dict[str, str]:
    key = sigv4.signing_key(SECRET, date, region)
    return {
        "policy": policy,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{AK}/{date}/{region}/s3/aws4_request",
        "x-amz-date": f"{date}T080000Z",
        "x-amz-signature": sigv4.sign(key, policy),
    }


def authenticate(fields: dict[str, str]) -> Any:
    return authenticate_form(fields, secrets, region="us-east-1", now=NOW)


def refused(fields: dict[str, str]) -> tuple[str, str | None]:
    with pytest.raises(AuthError) as info:
        authenticate(fields)
    return info.value.code, info.value.message


POLICY = encode({"expiration": LATER, "conditions": [["eq", "$key", "k"]]})


def test_sigv2_and_sigv4_forms() -> None:
    for fields in (v2(POLICY), v4(POLICY)):
        signed = authenticate(fields)
        assert signed.access_key == AK
        assert signed.policy.conditions == (Condition("eq", "key", "k"),)


def test_anonymous_form() -> None:
    assert authenticate({"key": "k"}) is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (dict(v2(POLICY), signature="AAAA"), "SignatureDoesNotMatch"),
        (dict(v4(POLICY), **{"x-amz-signature": "0" * 64}), "SignatureDoesNotMatch"),
        (dict(v2(POLICY), awsaccesskeyid="NOPE"), "InvalidAccessKeyId"),
        ({"awsaccesskeyid": AK, "policy": POLICY}, "InvalidArgument"),  # no signature
        ({"awsaccesskeyid": AK, "signature": "x"}, "InvalidArgument"),  # no policy
        ({"policy": POLICY}, "InvalidArgument"),  # a policy nobody signed
        (v4(POLICY, region="eu-west-1"), "InvalidArgument"),
        (dict(v4(POLICY), **{"x-amz-date": "yesterday"}), "InvalidArgument"),
        (dict(v4(POLICY), **{"x-amz-algorithm": "AWS4-HMAC-SHA1"}), "InvalidArgument"),
        (v2(encode({"expiration": "2020-01-01T00:00:00Z", "conditions": []})), "AccessDenied"),
    ],
)
def test_refused_signatures(fields: dict[str, str], code: str) -> None:
    assert refused(fields)[0] == code


@pytest.mark.parametrize(
    "document",
    [
        {"conditions": []},
        {"expiration": LATER},
        {"EXPIRATION": LATER, "conditions": []},
        {"expiration": LATER, "CONDITIONS": []},
        {"expiration": "2027-01-15 09:00:00+00:00", "conditions": []},
        {"expiration": LATER, "conditions": {}},
        {"expiration": LATER, "conditions": [{}]},
        {"expiration": LATER, "conditions": [{"a": "b", "c": "d"}]},
        {"expiration": LATER, "conditions": [["content-length-range", 0]]},
        {"expiration": LATER, "conditions": [["content-length-range", -1, 0]]},
        {"expiration": LATER, "conditions": [["content-length-range", 5, 1]]},
        {"expiration": LATER, "conditions": [["in", "$key", "k"]]},
        {"expiration": LATER, "conditions": [["eq", "key", "k"]]},
        [],
    ],
)
def test_malformed_policies(document: Any) -> None:
    with pytest.raises(AuthError) as info:
        parse_policy(encode(document))
    assert info.value.code == "InvalidPolicyDocument"


def test_policy_case_rules_and_range() -> None:
    policy = parse_policy(
        encode(
            {
                "expiration": "2027-01-15T09:00:00.000Z",
                "conditions": [
                    {"bUcKeT": "b"},
                    ["StArTs-WiTh", "$KeY", "up/"],
                    ["content-length-range", 1, 100],
                ],
            }
        )
    )
    assert policy.conditions == (
        Condition("eq", "bucket", "b"),
        Condition("starts-with", "key", "up/"),
    )
    assert policy.length_range == (1, 100)
    check_conditions(policy, {"key": "up/a"}, "b")
    for fields, bucket in (({"key": "down/a"}, "b"), ({"key": "up/a"}, "other")):
        with pytest.raises(AuthError) as info:
            check_conditions(policy, fields, bucket)
        assert info.value.code == "AccessDenied"


def test_every_field_must_be_named() -> None:
    policy = parse_policy(encode({"expiration": LATER, "conditions": [["eq", "$key", "k"]]}))
    exempt = {
        "key": "k",
        "policy": "p",
        "signature": "s",
        "awsaccesskeyid": "a",
        "x-ignore-me": "1",
    }
    check_conditions(policy, exempt, "b")
    with pytest.raises(AuthError) as info:
        check_conditions(policy, {"key": "k", "x-amz-meta-a": "1"}, "b")
    assert "x-amz-meta-a" in (info.value.message or "")


def test_missing_field_is_empty_and_content_type_lists() -> None:
    policy = parse_policy(
        encode(
            {
                "expiration": LATER,
                "conditions": [
                    ["eq", "$x-amz-meta-a", ""],
                    ["starts-with", "$content-type", "image/"],
                ],
            }
        )
    )
    check_conditions(policy, {"content-type": "image/png, image/jpeg"}, "b")
    with pytest.raises(AuthError):
        check_conditions(policy, {"content-type": "image/png, text/plain"}, "b")


@given(st.text(max_size=64))
def test_any_policy_text_is_accepted_or_refused_as_a_policy(text: str) -> None:
    try:
        parse_policy(text)
    except AuthError as error:
        assert error.code == "InvalidPolicyDocument"
