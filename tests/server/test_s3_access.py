"""Access control on a real server: ACLs, bucket policies, anonymous access, public access
blocks and object ownership, driven by boto3 as two users, and by curl without credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server, stratum_command
from tests.server.test_users import client

BOB = ("BOBKEY000000", "bob-secret-key-00000000")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("access-data"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
    added = subprocess.run(
        [
            *stratum_command(),
            "user",
            "add",
            *BOB,
            "--display-name",
            "bob",
            "--data-dir",
            str(srv.data_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-30:])


@pytest.fixture(scope="module")
def owner(server: RunningServer) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def bob(server: RunningServer) -> Any:
    return client(server, *BOB)


_made = 0


@pytest.fixture
def bucket(owner: Any) -> str:
    global _made
    _made += 1
    name = f"access-{_made}"
    owner.create_bucket(Bucket=name)
    return name


def user_id(s3: Any) -> str:
    return str(s3.list_buckets()["Owner"]["ID"])


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def curl(*args: str) -> tuple[int, bytes]:
    """An anonymous request by curl: (status, body)."""
    done = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=30,
        check=True,
    )
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_a_public_read_bucket_is_served_to_anonymous_curl(
    server: RunningServer, owner: Any, tmp_path: Path
) -> None:
    owner.create_bucket(Bucket="gallery", ACL="public-read")
    owner.put_object(Bucket="gallery", Key="cat.jpg", Body=b"meow", ACL="public-read")
    owner.put_object(Bucket="gallery", Key="private.jpg", Body=b"secret")

    status, body = curl(f"{server.endpoint}/gallery/cat.jpg")
    assert (status, body) == (200, b"meow")
    status, body = curl(f"{server.endpoint}/gallery?list-type=2")
    assert status == 200 and b"<Key>cat.jpg</Key>" in body and b"private.jpg" in body
    # the bucket's ACL lets anyone list it; only the object's own ACL lets anyone read it
    status, body = curl(f"{server.endpoint}/gallery/private.jpg")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    # reading is all: no anonymous write, no ACL reading
    status, _ = curl("-X", "PUT", "--data-binary", "x", f"{server.endpoint}/gallery/new.jpg")
    assert status == 403
    status, _ = curl(f"{server.endpoint}/gallery?acl")
    assert status == 403
    # a missing key in a listable bucket is a 404, a bucket that does not exist too
    assert curl(f"{server.endpoint}/gallery/nothing.jpg")[0] == 404
    status, body = curl(f"{server.endpoint}/no-such-bucket/x")
    assert status == 404 and b"NoSuchBucket" in body


def test_a_policy_grants_a_second_user_read_only_on_one_prefix(
    owner: Any, bob: Any, bucket: str
) -> None:
    owner.put_object(Bucket=bucket, Key="shared/report.txt", Body=b"for bob")
    owner.put_object(Bucket=bucket, Key="private/diary.txt", Body=b"not for bob")
    with pytest.raises(ClientError) as denied:
        bob.get_object(Bucket=bucket, Key="shared/report.txt")
    assert code(denied) == (403, "AccessDenied")

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BobReadsShared",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{user_id(bob)}:root"},
                "Action": ["s3:GetObject"],
                "Resource": f"arn:aws:s3:::{bucket}/shared/*",
            },
            {
                "Sid": "BobListsShared",
                "Effect": "Allow",
                "Principal": {"CanonicalUser": user_id(bob)},
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": "shared/*"}},
            },
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    assert bob.get_object(Bucket=bucket, Key="shared/report.txt")["Body"].read() == b"for bob"
    listed = bob.list_objects_v2(Bucket=bucket, Prefix="shared/")
    assert [o["Key"] for o in listed["Contents"]] == ["shared/report.txt"]
    for call, kwargs in [
        (bob.get_object, {"Key": "private/diary.txt"}),
        (bob.list_objects_v2, {"Prefix": "private/"}),
        (bob.list_objects_v2, {}),
        (bob.put_object, {"Key": "shared/new.txt", "Body": b"bob was here"}),
        (bob.delete_object, {"Key": "shared/report.txt"}),
        (bob.get_bucket_policy, {}),
    ]:
        with pytest.raises(ClientError) as refused:
            call(Bucket=bucket, **kwargs)
        assert code(refused) == (403, "AccessDenied"), call
    # the owner is not limited by a policy that names someone else
    assert owner.get_object(Bucket=bucket, Key="private/diary.txt")["Body"].read()


def test_an_explicit_deny_overrides_an_allow(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_object(Bucket=bucket, Key="a/open.txt", Body=b"open", ACL="public-read")
    owner.put_object(Bucket=bucket, Key="a/secret.txt", Body=b"closed", ACL="public-read")
    owner.put_bucket_acl(Bucket=bucket, ACL="public-read")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/a/secret*",
            },
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob.get_object(Bucket=bucket, Key="a/open.txt")["Body"].read() == b"open"
    for reader in (bob, owner):  # a deny binds the owner too, and beats the ACL's grant
        with pytest.raises(ClientError) as denied:
            reader.get_object(Bucket=bucket, Key="a/secret.txt")
        assert code(denied) == (403, "AccessDenied")
    # the owner can still take the policy away
    owner.delete_bucket_policy(Bucket=bucket)
    assert owner.get_object(Bucket=bucket, Key="a/secret.txt")["Body"].read() == b"closed"


def test_malformed_policies_are_refused_with_aws_reasons(owner: Any, bucket: str) -> None:
    def refused(document: Any) -> str:
        text = document if isinstance(document, str) else json.dumps(document)
        with pytest.raises(ClientError) as exc:
            owner.put_bucket_policy(Bucket=bucket, Policy=text)
        assert code(exc) == (400, "MalformedPolicy")
        return str(exc.value.response["Error"]["Message"])

    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    assert "valid JSON" in refused("{not json")
    assert "Statement" in refused({"Version": "2012-10-17"})
    assert "invalid action" in refused({"Statement": [{**statement, "Action": "s3:Fly"}]})
    assert "invalid resource" in refused(
        {"Statement": [{**statement, "Resource": "arn:aws:s3:::another-bucket/*"}]}
    )
    assert "effect" in refused({"Statement": [{**statement, "Effect": "Maybe"}]}).lower()
    with pytest.raises(ClientError) as missing:
        owner.get_bucket_policy(Bucket=bucket)
    assert code(missing) == (404, "NoSuchBucketPolicy")


def test_acl_grants_to_a_user_by_canonical_id(owner: Any, bob: Any, bucket: str) -> None:
    bob_id = user_id(bob)
    owner.put_object(Bucket=bucket, Key="k", Body=b"v", GrantRead=f'id="{bob_id}"')
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    acl = owner.get_object_acl(Bucket=bucket, Key="k")
    assert acl["Owner"]["ID"] == user_id(owner)
    assert acl["Grants"] == [
        {
            "Grantee": {"ID": bob_id, "DisplayName": "bob", "Type": "CanonicalUser"},
            "Permission": "READ",
        }
    ]
    with pytest.raises(ClientError) as refused:
        bob.get_object_acl(Bucket=bucket, Key="k")
    assert code(refused) == (403, "AccessDenied")
    with pytest.raises(ClientError) as unknown:
        owner.put_bucket_acl(Bucket=bucket, GrantRead='id="' + "0" * 64 + '"')
    assert code(unknown) == (400, "InvalidArgument")


def test_a_public_access_block_refuses_public_acls_and_ignores_them(
    owner: Any, bob: Any, bucket: str
) -> None:
    owner.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    owner.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True},
    )
    with pytest.raises(ClientError) as ignored:
        bob.get_object(Bucket=bucket, Key="k")
    assert code(ignored) == (403, "AccessDenied")
    with pytest.raises(ClientError) as blocked:
        owner.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code(blocked) == (403, "AccessDenied")
    got = owner.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }
    owner.delete_public_access_block(Bucket=bucket)
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_bucket_owner_enforced_disables_acls(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    owner.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": user_id(bob)},
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    }
                ]
            }
        ),
    )
    bob.put_object(Bucket=bucket, Key="from-bob", Body=b"x")
    assert owner.get_object_acl(Bucket=bucket, Key="from-bob")["Owner"]["ID"] == user_id(owner)
    with pytest.raises(ClientError) as refused:
        bob.put_object(Bucket=bucket, Key="other", Body=b"x", ACL="public-read")
    assert code(refused) == (400, "AccessControlListNotSupported")
    with pytest.raises(ClientError) as no_acl:
        owner.put_bucket_acl(Bucket=bucket, ACL="private")
    assert code(no_acl) == (400, "AccessControlListNotSupported")
    for acl in ({"ACL": "private"}, {"GrantRead": f"id={user_id(bob)}"}):
        with pytest.raises(ClientError) as no_object_acl:
            owner.put_object_acl(Bucket=bucket, Key="from-bob", **acl)
        assert code(no_object_acl) == (400, "AccessControlListNotSupported")
    rules = owner.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_put_object_acl_changes_one_version(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = owner.put_object(Bucket=bucket, Key="k", Body=b"old")["VersionId"]
    new = owner.put_object(Bucket=bucket, Key="k", Body=b"new")["VersionId"]
    owner.put_object_acl(Bucket=bucket, Key="k", VersionId=old, GrantRead=f"id={user_id(bob)}")
    got = bob.get_object(Bucket=bucket, Key="k", VersionId=old)
    assert got["Body"].read() == b"old"
    for version in (new, None):
        with pytest.raises(ClientError) as denied:
            bob.get_object(Bucket=bucket, Key="k", **({"VersionId": version} if version else {}))
        assert code(denied) == (403, "AccessDenied")
    with pytest.raises(ClientError) as refused:
        bob.put_object_acl(Bucket=bucket, Key="k", VersionId=old, ACL="public-read")
    assert code(refused) == (403, "AccessDenied")
    owner.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    grants = owner.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert [g["Permission"] for g in grants] == ["READ", "FULL_CONTROL"]
    assert grants[0]["Grantee"]["URI"] == ALL_USERS
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"


def test_put_object_acl_with_a_grant_document(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    mine = owner.get_object_acl(Bucket=bucket, Key="k")
    policy = {
        "Owner": mine["Owner"],
        "Grants": [
            *mine["Grants"],
            {"Grantee": {"Type": "CanonicalUser", "ID": user_id(bob)}, "Permission": "READ"},
        ],
    }
    owner.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy=policy)
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    grants = owner.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert {(g["Grantee"].get("ID"), g["Permission"]) for g in grants} == {
        (user_id(owner), "FULL_CONTROL"),
        (user_id(bob), "READ"),
    }
    owner.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    with pytest.raises(ClientError) as denied:
        bob.get_object(Bucket=bucket, Key="k")
    assert code(denied) == (403, "AccessDenied")


def test_a_policy_lets_a_second_user_change_tags(owner: Any, bob: Any, bucket: str) -> None:
    """A tag change allowed by the bucket's policy is made on the bucket owner's authority."""
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    with pytest.raises(ClientError) as denied:
        bob.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []})
    assert code(denied) == (403, "AccessDenied")
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": user_id(bob)},
        "Action": ["s3:PutObjectTagging", "s3:DeleteObjectTagging"],
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [statement]}))
    bob.put_object_tagging(
        Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "by", "Value": "bob"}]}
    )
    assert owner.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "by", "Value": "bob"}
    ]
    bob.delete_object_tagging(Bucket=bucket, Key="k")
    assert owner.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


def test_an_upload_lists_who_started_it(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    mine = owner.create_multipart_upload(Bucket=bucket, Key="a-owners")["UploadId"]
    bobs = bob.create_multipart_upload(Bucket=bucket, Key="b-bobs")["UploadId"]
    for s3 in (owner, bob):  # whoever lists them
        listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
        assert [(u["Key"], u["Initiator"]["ID"], u["Owner"]["DisplayName"]) for u in listed] == [
            ("a-owners", user_id(owner), listed[0]["Initiator"]["DisplayName"]),
            ("b-bobs", user_id(bob), "bob"),
        ]
    owner.abort_multipart_upload(Bucket=bucket, Key="a-owners", UploadId=mine)
    bob.abort_multipart_upload(Bucket=bucket, Key="b-bobs", UploadId=bobs)


def _reader_policy(bucket: str, principal: Any, **statement: Any) -> str:
    """A policy letting ``principal`` read the bucket's objects."""
    allow = {
        "Effect": "Allow",
        "Principal": principal,
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        **statement,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [allow]})


def _is_public(owner: Any, bucket: str) -> bool:
    return bool(owner.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"])


@needs_curl
def test_policy_status_and_block_public_policy(
    server: RunningServer, owner: Any, bob: Any, bucket: str
) -> None:
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    public = _reader_policy(bucket, "*")
    for private in (
        _reader_policy(bucket, {"AWS": user_id(bob)}),
        # a condition pinning the caller to fixed addresses makes a "*" policy non-public
        _reader_policy(bucket, "*", Condition={"IpAddress": {"aws:SourceIp": "10.1.2.0/24"}}),
    ):
        owner.put_bucket_policy(Bucket=bucket, Policy=private)
        assert not _is_public(owner, bucket)
    owner.put_bucket_policy(Bucket=bucket, Policy=public)
    assert _is_public(owner, bucket)
    assert curl(f"{server.endpoint}/{bucket}/k") == (200, b"v")
    with pytest.raises(ClientError) as refused:
        bob.get_bucket_policy_status(Bucket=bucket)
    assert code(refused) == (403, "AccessDenied")

    owner.delete_bucket_policy(Bucket=bucket)
    owner.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True}
    )
    with pytest.raises(ClientError) as blocked:
        owner.put_bucket_policy(Bucket=bucket, Policy=public)
    assert code(blocked) == (403, "AccessDenied")
    with pytest.raises(ClientError) as nothing_stored:
        owner.get_bucket_policy(Bucket=bucket)
    assert code(nothing_stored) == (404, "NoSuchBucketPolicy")
    assert curl(f"{server.endpoint}/{bucket}/k")[0] == 403
    owner.put_bucket_policy(Bucket=bucket, Policy=_reader_policy(bucket, {"AWS": user_id(bob)}))
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # not public: taken
    owner.delete_public_access_block(Bucket=bucket)
    owner.put_bucket_policy(Bucket=bucket, Policy=public)
    assert _is_public(owner, bucket)


def test_deleting_ownership_controls_enables_acls_again(owner: Any, bob: Any, bucket: str) -> None:
    owner.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    with pytest.raises(ClientError) as disabled:
        owner.put_object(Bucket=bucket, Key="k", Body=b"v", GrantRead=f"id={user_id(bob)}")
    assert code(disabled) == (400, "AccessControlListNotSupported")
    assert (
        owner.delete_bucket_ownership_controls(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"]
        == 204
    )
    with pytest.raises(ClientError) as gone:
        owner.get_bucket_ownership_controls(Bucket=bucket)
    assert code(gone) == (404, "OwnershipControlsNotFoundError")
    owner.put_object(Bucket=bucket, Key="k", Body=b"v", GrantRead=f"id={user_id(bob)}")
    assert bob.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


@needs_curl
def test_a_canned_acl_on_copy_object(server: RunningServer, owner: Any, bucket: str) -> None:
    owner.put_object(Bucket=bucket, Key="original", Body=b"photo")
    source = {"Bucket": bucket, "Key": "original"}
    owner.copy_object(Bucket=bucket, Key="public-copy", CopySource=source, ACL="public-read")
    owner.copy_object(Bucket=bucket, Key="plain-copy", CopySource=source)
    assert curl(f"{server.endpoint}/{bucket}/public-copy") == (200, b"photo")
    # Neither the source nor a copy made without an ACL is readable anonymously: a copy
    # takes the ACL its request gives (private by default), not its source's.
    for key in ("original", "plain-copy"):
        assert curl(f"{server.endpoint}/{bucket}/{key}")[0] == 403, key
    grants = owner.get_object_acl(Bucket=bucket, Key="public-copy")["Grants"]
    assert any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)
