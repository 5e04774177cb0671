"""ACLs and the access decision: owners, grants, policies, public access blocks, ownership."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.access import acl as acls
from stratum.access.actions import OPERATIONS, Level, access_of
from stratum.access.decide import (
    Decision,
    ObjectFacts,
    PublicAccessBlock,
    RequestFacts,
    bucket_access,
    decide,
)

OWNER = "o" * 64
ALICE = "a" * 64
BUCKET = "b1"


def facts(principal: str | None, **params: str) -> RequestFacts:
    return RequestFacts(
        principal=principal,
        source_ip="192.0.2.7",
        secure=False,
        now=1_800_000_000.0,
        headers={},
        params=params,
    )


def bucket(**settings: Any) -> Any:
    return bucket_access(BUCKET, OWNER, settings)


def run(
    op: str, b: Any, principal: str | None, key: str | None = None, obj: Any = "unread"
) -> Decision:
    f = facts(principal)
    if obj != "unread":
        f.with_object(obj)
        return decide(OPERATIONS[op], b, key, None, f, obj)
    return decide(OPERATIONS[op], b, key, None, f)


def stored(acl: acls.Acl) -> dict[str, Any]:
    return acl.stored(OWNER)


def test_canned_acls() -> None:
    assert acls.canned("private", OWNER, OWNER) == acls.private(OWNER)
    assert stored(acls.canned("private", OWNER, OWNER)) == {}
    public = acls.canned("public-read-write", OWNER, OWNER)
    assert [(g.grantee.value, g.permission) for g in public.grants[:2]] == [
        (acls.ALL_USERS, "READ"),
        (acls.ALL_USERS, "WRITE"),
    ]
    assert public.public and not acls.private(OWNER).public
    by_alice = acls.canned("bucket-owner-full-control", ALICE, OWNER)
    assert by_alice.grants[0] == acls.Grant(acls.Grantee("id", OWNER), "FULL_CONTROL")
    assert acls.canned("bucket-owner-read", OWNER, OWNER) == acls.private(OWNER)
    with pytest.raises(acls.AclError):
        acls.canned("public-everything", OWNER, OWNER)


def test_grant_headers() -> None:
    headers = {
        "x-amz-grant-read": f'id="{ALICE}", uri="{acls.AUTHENTICATED_USERS}"',
        "x-amz-grant-write-acp": f"id={ALICE}",
    }
    acl = acls.from_grant_headers(headers, OWNER)
    assert acl is not None
    assert [(g.grantee.kind, g.permission) for g in acl.grants] == [
        ("id", "READ"),
        ("group", "READ"),
        ("id", "WRITE_ACP"),
    ]
    assert acls.from_grant_headers({}, OWNER) is None
    with pytest.raises(acls.AclError) as email:
        acls.from_grant_headers({"x-amz-grant-read": 'emailAddress="a@b.c"'}, OWNER)
    assert email.value.code == "UnresolvableGrantByEmailAddress"
    with pytest.raises(acls.AclError):
        acls.from_grant_headers({"x-amz-grant-read": "uri=http://example.com/club"}, OWNER)
    with pytest.raises(acls.AclError):
        acls.validated(acls.Acl(OWNER, acl.grants), known_ids=[OWNER])


_GRANTEE = st.one_of(
    st.builds(acls.Grantee, st.just("id"), st.sampled_from([OWNER, ALICE, "c" * 64])),
    st.builds(acls.Grantee, st.just("group"), st.sampled_from(acls.GROUPS)),
)
_ACL = st.builds(
    acls.Acl,
    st.sampled_from([OWNER, ALICE]),
    st.lists(st.builds(acls.Grant, _GRANTEE, st.sampled_from(acls.PERMISSIONS)), max_size=5).map(
        tuple
    ),
)


@given(_ACL)
def test_stored_acls_load_back(acl: acls.Acl) -> None:
    assert acls.load(json.loads(json.dumps(acl.stored(OWNER))), OWNER) == acl


@given(_ACL, st.sampled_from([OWNER, ALICE, None]), st.sampled_from(acls.PERMISSIONS))
def test_ignoring_public_grants_only_takes_away(
    acl: acls.Acl, principal: str | None, permission: str
) -> None:
    if acl.allows(principal, permission, ignore_public=True):
        assert acl.allows(principal, permission, ignore_public=False)
    if principal is None:  # anonymous: only AllUsers grants anything
        assert not acl.allows(principal, permission, ignore_public=True)


def test_the_owner_may_do_anything_to_its_bucket() -> None:
    b = bucket()
    for op in ("ListObjects", "PutObject", "PutBucketPolicy", "DeleteBucket", "SomethingNew"):
        access = OPERATIONS.get(op) or access_of(op)
        assert decide(access, b, "k", None, facts(OWNER)) is Decision.ALLOW, op
    for principal in (ALICE, None):
        assert run("ListObjects", b, principal) is Decision.DENY
        assert run("PutObject", b, principal, "k") is Decision.DENY
        assert decide(access_of("SomethingNew"), b, None, None, facts(principal)) is Decision.DENY


def test_object_reads_wait_for_the_object_acl() -> None:
    b = bucket()
    assert run("GetObject", b, ALICE, "k") is Decision.NEEDS_OBJECT
    assert run("GetObject", b, OWNER, "k") is Decision.NEEDS_OBJECT  # could be another's
    mine = ObjectFacts(OWNER, {}, {})
    theirs = ObjectFacts(ALICE, acls.private(ALICE).stored(OWNER), {})
    assert run("GetObject", b, OWNER, "k", mine) is Decision.ALLOW
    assert run("GetObject", b, ALICE, "k", mine) is Decision.DENY
    assert run("GetObject", b, OWNER, "k", theirs) is Decision.DENY
    assert run("GetObject", b, ALICE, "k", theirs) is Decision.ALLOW
    assert run("GetObjectAcl", b, ALICE, "k", theirs) is Decision.ALLOW
    assert run("GetObject", b, ALICE, "k", None) is Decision.DENY  # missing
    public = ObjectFacts(OWNER, acls.canned("public-read", OWNER, OWNER).stored(OWNER), {})
    assert run("GetObject", b, None, "k", public) is Decision.ALLOW
    assert run("GetObjectAcl", b, None, "k", public) is Decision.DENY
    # under BucketOwnerEnforced the owner owns all, and ACLs are not consulted
    enforced = bucket(ownership={"v": 1, "rule": "BucketOwnerEnforced"})
    assert run("GetObject", enforced, OWNER, "k") is Decision.ALLOW
    assert run("GetObject", enforced, ALICE, "k") is Decision.DENY


def test_bucket_acls_grant_listing_and_writing() -> None:
    b = bucket(acl=acls.canned("public-read", OWNER, OWNER).stored(OWNER))
    assert run("ListObjects", b, None) is Decision.ALLOW
    assert run("PutObject", b, None, "k") is Decision.DENY
    assert run("GetBucketAcl", b, ALICE) is Decision.DENY
    rw = bucket(acl=acls.canned("public-read-write", OWNER, OWNER).stored(OWNER))
    assert run("PutObject", rw, None, "k") is Decision.ALLOW
    assert run("DeleteObject", rw, ALICE, "k") is Decision.ALLOW
    auth = bucket(acl=acls.canned("authenticated-read", OWNER, OWNER).stored(OWNER))
    assert run("ListObjects", auth, ALICE) is Decision.ALLOW
    assert run("ListObjects", auth, None) is Decision.DENY
    ignored = bucket(
        acl=acls.canned("public-read", OWNER, OWNER).stored(OWNER),
        public_access_block=PublicAccessBlock(ignore_public_acls=True).stored(),
    )
    assert run("ListObjects", ignored, None) is Decision.DENY


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def statement(effect: str, action: str, resource: str, **more: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": "*", "Action": action, "Resource": resource, **more}


def test_policy_allows_and_an_explicit_deny_wins() -> None:
    allow_all = statement("Allow", "s3:*", f"arn:aws:s3:::{BUCKET}/*")
    deny = statement("Deny", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/secret/*")
    b = bucket(
        policy=policy(allow_all, deny),
        acl=acls.canned("public-read", OWNER, OWNER).stored(OWNER),
    )
    assert run("GetObject", b, None, "open/x") is Decision.ALLOW
    assert run("GetObject", b, ALICE, "secret/x") is Decision.DENY
    assert run("GetObject", b, OWNER, "secret/x") is Decision.DENY
    # the owner keeps the right to manage the policy that denies it
    lock_out = bucket(policy=policy(statement("Deny", "s3:*", "*")))
    assert run("PutBucketPolicy", lock_out, OWNER) is Decision.ALLOW
    assert run("ListObjects", lock_out, OWNER) is Decision.DENY


def test_restrict_public_buckets_cuts_a_public_policy_off() -> None:
    text = policy(statement("Allow", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/*"))
    assert run("GetObject", bucket(policy=text), None, "k") is Decision.ALLOW
    block = PublicAccessBlock(restrict_public_buckets=True).stored()
    restricted = bucket(policy=text, public_access_block=block)
    assert run("GetObject", restricted, None, "k", None) is Decision.DENY
    assert run("GetObject", restricted, OWNER, "k", ObjectFacts(OWNER, {}, {})) is Decision.ALLOW


def test_conditions_read_the_request_and_the_object() -> None:
    listing = statement(
        "Allow",
        "s3:ListBucket",
        f"arn:aws:s3:::{BUCKET}",
        Condition={
            "StringLike": {"s3:prefix": "pub/*"},
            "NumericLessThanEquals": {"s3:max-keys": "100"},
        },
    )
    b = bucket(policy=policy(listing))
    op = OPERATIONS["ListObjectsV2"]
    assert (
        decide(op, b, None, None, facts(ALICE, prefix="pub/a", **{"max-keys": "10"}))
        is Decision.ALLOW
    )
    assert (
        decide(op, b, None, None, facts(ALICE, prefix="pub/a", **{"max-keys": "1000"}))
        is Decision.DENY
    )
    assert decide(op, b, None, None, facts(ALICE, prefix="priv/")) is Decision.DENY
    tagged = statement(
        "Allow",
        "s3:GetObjectTagging",
        f"arn:aws:s3:::{BUCKET}/*",
        Condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}},
    )
    b = bucket(policy=policy(tagged))
    assert run("GetObjectTagging", b, ALICE, "k") is Decision.NEEDS_OBJECT
    yes = ObjectFacts(OWNER, {}, {"security": "public"})
    no = ObjectFacts(OWNER, {}, {"security": "private"})
    assert run("GetObjectTagging", b, ALICE, "k", yes) is Decision.ALLOW
    assert run("GetObjectTagging", b, ALICE, "k", no) is Decision.DENY


def test_every_operation_has_a_level() -> None:
    for name, access in OPERATIONS.items():
        assert access.action.startswith("s3:"), name
        if access.level is Level.OBJECT and access.acl is not None:
            assert access.acl in ("READ", "READ_ACP", "WRITE_ACP"), name
