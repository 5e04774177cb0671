"""Bucket policies: parsing and AWS's refusals, conditions, evaluation (explicit deny wins)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.access import policy as policies
from stratum.access.conditions import NeedsObject, like_regex, parse_block
from stratum.access.errors import PolicyError

BUCKET = "photos"
ALICE = "a" * 64
BOB = "b" * 64


def doc(*statements: dict[str, Any], **top: Any) -> str:
    return json.dumps({"Version": "2012-10-17", **top, "Statement": list(statements)})


def allow(**fields: Any) -> dict[str, Any]:
    base = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    }
    return {**base, **fields}


def no_facts(_key: str) -> None:
    return None


def evaluate(
    text: str, principal: str | None, action: str, key: str | None = "k"
) -> tuple[bool, bool]:
    policy = policies.parse(text, BUCKET)
    return policy.evaluate(principal, action, policies.resource_arn(BUCKET, key), no_facts)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "valid JSON"),
        ("[1]", "valid JSON"),
        (json.dumps({"Version": "2012-10-17"}), "Missing required field Statement"),
        (doc(allow(), Version="2020-01-01"), "valid version"),
        (doc(allow(Effect="Perhaps")), "Invalid effect: Perhaps"),
        (doc({k: v for k, v in allow().items() if k != "Principal"}), "field Principal"),
        (doc({k: v for k, v in allow().items() if k != "Action"}), "field Action"),
        (doc({k: v for k, v in allow().items() if k != "Resource"}), "field Resource"),
        (doc(allow(Action="s3:Teleport")), "invalid action"),
        (doc(allow(Action="ec2:RunInstances")), "invalid action"),
        (doc(allow(Resource="arn:aws:s3:::other/*")), "invalid resource"),
        (doc(allow(Resource="photos/*")), "invalid resource"),
        (doc(allow(Principal={"Martian": "x"})), "Invalid principal"),
        (doc(allow(NotPrincipal={"AWS": ALICE}, Principal=None)), "Principal"),
        (doc(allow(Condition={"StringFuzzy": {"s3:prefix": "a"}})), "Invalid Condition type"),
        (doc(allow(Condition={"StringEquals": {"s3:flavour": "a"}})), "invalid condition key"),
        (doc(allow(Sid="x"), allow(Sid="x")), "unique"),
        (doc(allow(Colour="red")), "Unknown field Colour"),
        (doc(allow(Condition={"IpAddress": {"aws:SourceIp": "not-an-ip"}})), "Condition value"),
    ],
)
def test_malformed_policies_say_why(text: str, reason: str) -> None:
    with pytest.raises(PolicyError) as refused:
        policies.parse(text, BUCKET)
    assert reason in refused.value.message


def test_not_principal_only_with_deny() -> None:
    statement = allow()
    del statement["Principal"]
    statement["NotPrincipal"] = {"AWS": ALICE}
    with pytest.raises(PolicyError):
        policies.parse(doc(statement), BUCKET)
    statement["Effect"] = "Deny"
    assert evaluate(doc(statement), BOB, "s3:GetObject") == (True, False)
    assert evaluate(doc(statement), ALICE, "s3:GetObject") == (False, False)


def test_a_policy_over_20_kib_is_refused() -> None:
    big = doc(
        *[allow(Sid=f"s{i}", Resource=f"arn:aws:s3:::{BUCKET}/{'x' * 200}{i}") for i in range(100)]
    )
    with pytest.raises(PolicyError, match="maximum allowed document size"):
        policies.parse(big, BUCKET)


def test_principals_by_id_arn_and_canonical_user() -> None:
    for principal in (
        {"AWS": ALICE},
        {"AWS": f"arn:aws:iam::{ALICE}:root"},
        {"AWS": [f"arn:aws:iam::{ALICE}:user/someone"]},
        {"CanonicalUser": ALICE},
    ):
        text = doc(allow(Principal=principal))
        assert evaluate(text, ALICE, "s3:GetObject") == (False, True), principal
        assert evaluate(text, BOB, "s3:GetObject") == (False, False), principal
        assert evaluate(text, None, "s3:GetObject") == (False, False), principal
    everyone = doc(allow(Principal={"AWS": "*"}))
    assert evaluate(everyone, None, "s3:GetObject") == (False, True)


def test_actions_take_wildcards_and_ignore_case() -> None:
    text = doc(allow(Action=["s3:Get*", "S3:LISTBUCKET"], Resource=["*"]))
    assert evaluate(text, BOB, "s3:GetObject")[1]
    assert evaluate(text, BOB, "s3:GetObjectVersion")[1]
    assert evaluate(text, BOB, "s3:ListBucket", None)[1]
    assert not evaluate(text, BOB, "s3:PutObject")[1]
    not_action = doc(allow(Action=None, NotAction="s3:Delete*"))
    with pytest.raises(PolicyError):  # both Action (null) and NotAction
        policies.parse(not_action, BUCKET)
    only_not = allow()
    del only_not["Action"]
    only_not["NotAction"] = "s3:Delete*"
    assert evaluate(doc(only_not), BOB, "s3:GetObject")[1]
    assert not evaluate(doc(only_not), BOB, "s3:DeleteObject")[1]


def test_resources_match_keys_case_sensitively() -> None:
    text = doc(allow(Resource=f"arn:aws:s3:::{BUCKET}/public/*"))
    assert evaluate(text, BOB, "s3:GetObject", "public/a.jpg")[1]
    assert not evaluate(text, BOB, "s3:GetObject", "Public/a.jpg")[1]
    assert not evaluate(text, BOB, "s3:GetObject", "private/a.jpg")[1]
    assert not evaluate(text, BOB, "s3:GetObject", None)[1]  # the bucket is not its objects
    wild = doc(allow(Resource=["arn:aws:s3:::*/*", "arn:aws:s3:::ph?tos/a*z"]))
    assert evaluate(wild, BOB, "s3:GetObject", "anything")[1]


def test_explicit_deny_wins_whatever_the_order() -> None:
    deny = allow(Effect="Deny", Resource=f"arn:aws:s3:::{BUCKET}/secret/*")
    for statements in ((allow(), deny), (deny, allow())):
        text = doc(*statements)
        assert evaluate(text, BOB, "s3:GetObject", "secret/x")[0] is True
        assert evaluate(text, BOB, "s3:GetObject", "open/x") == (False, True)


def facts(values: dict[str, list[str]]) -> Any:
    def lookup(key: str) -> list[str] | None:
        return values.get(key)

    return lookup


def holds(block: dict[str, Any], values: dict[str, list[str]]) -> bool:
    return all(c.holds(facts(values)) for c in parse_block(block))


def test_condition_operators() -> None:
    assert holds({"StringEquals": {"s3:x-amz-acl": "private"}}, {"s3:x-amz-acl": ["private"]})
    assert not holds({"StringEquals": {"s3:x-amz-acl": "private"}}, {})
    assert holds({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, {})  # absent: true
    assert holds({"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}, {})
    assert holds({"StringLike": {"s3:prefix": ["home/*", "pub?"]}}, {"s3:prefix": ["pubs"]})
    assert not holds({"StringNotLike": {"s3:prefix": "home/*"}}, {"s3:prefix": ["home/x"]})
    assert holds(
        {"StringEqualsIgnoreCase": {"aws:referer": "HTTP://A"}}, {"aws:referer": ["http://a"]}
    )
    assert holds({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": ["10"]})
    assert not holds({"NumericLessThan": {"s3:max-keys": 10}}, {"s3:max-keys": ["10"]})
    assert not holds({"NumericGreaterThan": {"s3:max-keys": "5"}}, {"s3:max-keys": ["many"]})
    assert holds({"Bool": {"aws:SecureTransport": False}}, {"aws:securetransport": ["false"]})
    assert holds({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:sourceip": ["10.1.2.3"]})
    assert holds(
        {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}},
        {"aws:sourceip": ["192.0.2.1"]},
    )
    assert holds(
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:currenttime": ["2026-12-07T08:00:00Z"]},
    )
    assert holds({"Null": {"s3:x-amz-acl": "true"}}, {})
    assert not holds({"Null": {"s3:x-amz-acl": "false"}}, {})
    tag = parse_block({"StringEquals": {"s3:ExistingObjectTag/Security": "public"}})[0]
    assert tag.key == "s3:existingobjecttag/Security" and tag.needs_object


def test_a_condition_on_object_tags_waits_for_the_object() -> None:
    text = doc(allow(Condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}}))
    policy = policies.parse(text, BUCKET)

    def unread(key: str) -> None:
        raise NeedsObject(key)

    with pytest.raises(NeedsObject):
        policy.evaluate(BOB, "s3:GetObject", policies.resource_arn(BUCKET, "k"), unread)


def test_public_policies() -> None:
    assert policies.parse(doc(allow()), BUCKET).public
    assert not policies.parse(doc(allow(Principal={"AWS": ALICE})), BUCKET).public
    fixed = allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}})
    assert not policies.parse(doc(fixed), BUCKET).public
    assert not policies.parse(doc(allow(Effect="Deny")), BUCKET).public


_PATTERN = st.text(alphabet="ab*?/", max_size=8)
_NAME = st.text(alphabet="ab/", max_size=8)


@given(_PATTERN, _NAME)
def test_resource_globs_agree_with_a_plain_regex(pattern: str, name: str) -> None:
    """The fast paths (equality, prefix) answer as the general regular expression does."""
    resource = f"arn:aws:s3:::{BUCKET}/{pattern}"
    text = doc(allow(Resource=resource))
    got = evaluate(text, BOB, "s3:GetObject", name)[1]
    expected = re.fullmatch(like_regex(resource), policies.resource_arn(BUCKET, name), re.DOTALL)
    assert got == (expected is not None)


_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(
        ["*", "Allow", "Deny", "s3:GetObject", "s3:*", f"arn:aws:s3:::{BUCKET}/*", "x"]
    ),
    st.lists(st.sampled_from(["*", "s3:Get*", f"arn:aws:s3:::{BUCKET}", "10.0.0.0/8"]), max_size=3),
    st.dictionaries(
        st.sampled_from(["AWS", "StringLike", "s3:prefix", "IpAddress"]), st.just("*"), max_size=2
    ),
)
_STATEMENT = st.dictionaries(
    st.sampled_from(["Effect", "Principal", "Action", "Resource", "Condition", "Sid", "NotAction"]),
    _VALUE,
    max_size=6,
)


@given(st.lists(_STATEMENT, max_size=3), st.sampled_from([None, "2012-10-17", "1999"]))
def test_any_document_is_a_policy_or_a_policy_error(
    statements: list[dict[str, Any]], version: str | None
) -> None:
    document: dict[str, Any] = {"Statement": statements}
    if version is not None:
        document["Version"] = version
    try:
        policy = policies.parse(json.dumps(document), BUCKET)
    except PolicyError:
        return
    policy.evaluate(None, "s3:GetObject", policies.resource_arn(BUCKET, "k"), no_facts)


@given(st.text(max_size=300))
def test_stored_policies_give_their_text_back(text: str) -> None:
    assert policies.text_of(policies.stored(text)) == text
    assert policies.text_of(text) == text  # the first release stored the text itself


def test_a_stored_policy_parses_as_its_text() -> None:
    text = doc(allow())
    packed = policies.stored(text)
    assert packed["v"] == 1
    assert policies.from_stored(packed, BUCKET).statements[0].allow
    assert policies.from_stored(packed, BUCKET) is policies.from_stored(dict(packed), BUCKET)


@given(
    st.lists(st.tuples(st.booleans(), _PATTERN), min_size=1, max_size=6),
    _NAME,
)
def test_the_resource_shortcut_answers_as_every_statement_would(
    statements: list[tuple[bool, str]], name: str
) -> None:
    text = doc(
        *[
            allow(Effect="Allow" if permit else "Deny", Resource=f"arn:aws:s3:::{BUCKET}/{p}")
            for permit, p in statements
        ]
    )
    policy = policies.parse(text, BUCKET)
    resource = policies.resource_arn(BUCKET, name)
    applying = [s for s in policy.statements if s.applies(BOB, resource, no_facts)]
    expected = (any(not s.allow for s in applying), any(s.allow for s in applying))
    denied, allowed = policy.evaluate(BOB, "s3:GetObject", resource, no_facts)
    assert denied == expected[0]
    assert denied or allowed == expected[1]
