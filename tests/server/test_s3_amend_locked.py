"""Tags and ACLs of versions under Object Lock change as on AWS (the lock keeps the data and
the version, not its tags or ACL), the lock stays as it was, and recover-metadata brings the
changed tags and ACLs back from the disks, each version's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import start_server
from tests.server.faultload import client_config, stop_cleanly, write_config
from tests.server.test_s3_objects import error_of
from tests.server.test_s3_tagging import rebuilt_from_disks, tag_set

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
BUCKET = "vault"


def _grants(s3: Any, key: str, **kw: Any) -> set[tuple[str, str]]:
    acl = s3.get_object_acl(Bucket=BUCKET, Key=key, **kw)
    return {(g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]}


def _lock(s3: Any, key: str, version: str) -> tuple[Any, Any, str]:
    retention = s3.get_object_retention(Bucket=BUCKET, Key=key, VersionId=version)["Retention"]
    hold = s3.get_object_legal_hold(Bucket=BUCKET, Key=key, VersionId=version)["LegalHold"]
    return retention["Mode"], retention["RetainUntilDate"], hold["Status"]


def _changed(s3: Any) -> dict[str, Any]:
    """What a reader sees of the changed versions (compared before and after recovery)."""
    old, new = (v["VersionId"] for v in _versions(s3, "k"))
    return {
        "tags": (tag_set(s3, BUCKET, "k"), tag_set(s3, BUCKET, "k", VersionId=old)),
        "acls": (_grants(s3, "k"), _grants(s3, "k", VersionId=old)),
        "locks": (_lock(s3, "k", new), _lock(s3, "k", old)),
        "held": (tag_set(s3, BUCKET, "held"), _grants(s3, "held")),
        "count": s3.head_object(Bucket=BUCKET, Key="k")["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amz-tagging-count"
        ),
    }


def _versions(s3: Any, key: str) -> list[dict[str, Any]]:
    """The key's versions, oldest first."""
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    return sorted((v for v in listed if v["Key"] == key), key=lambda v: bool(v["IsLatest"]))


def test_tags_and_acls_of_locked_versions_change_and_come_back(tmp_path: Path) -> None:
    layout = write_config(tmp_path)
    server = start_server(layout.data_dir, config=layout.config)
    try:
        s3 = server.client(**client_config())
        me = str(s3.list_buckets()["Owner"]["ID"])
        s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=BUCKET,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
            },
        )
        old = s3.put_object(Bucket=BUCKET, Key="k", Body=b"old", Tagging="at=write")["VersionId"]
        new = s3.put_object(Bucket=BUCKET, Key="k", Body=b"new")["VersionId"]
        s3.put_object(Bucket=BUCKET, Key="held", Body=b"h", ObjectLockLegalHoldStatus="ON")
        locks_before = (_lock(s3, "k", new), _lock(s3, "k", old))
        assert locks_before[0][0] == "COMPLIANCE"

        tagged = s3.put_object_tagging(
            Bucket=BUCKET, Key="k", Tagging={"TagSet": [{"Key": "at", "Value": "change"}]}
        )
        assert tagged["VersionId"] == new
        s3.delete_object_tagging(Bucket=BUCKET, Key="k", VersionId=old)
        s3.put_object_acl(Bucket=BUCKET, Key="k", VersionId=old, ACL="public-read")
        s3.put_object_acl(Bucket=BUCKET, Key="held", ACL="public-read")
        s3.put_object_tagging(
            Bucket=BUCKET, Key="held", Tagging={"TagSet": [{"Key": "case", "Value": "42"}]}
        )
        want = _changed(s3)
        assert want["tags"] == ({"at": "change"}, {})
        assert want["acls"] == ({(me, "FULL_CONTROL")}, {(ALL_USERS, "READ"), (me, "FULL_CONTROL")})
        assert want["locks"] == locks_before  # the lock is untouched
        assert want["held"] == ({"case": "42"}, {(ALL_USERS, "READ"), (me, "FULL_CONTROL")})
        assert want["count"] == "1"
        # and still keeps the versions
        for key, version in (("k", old), ("k", new)):
            with pytest.raises(ClientError) as refused:
                s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
            assert error_of(refused) == (403, "AccessDenied")
    finally:
        stop_cleanly(server)
    server = rebuilt_from_disks(layout)
    try:
        s3 = server.client(**client_config())
        assert _changed(s3) == want
        # the next change after recovery is recorded too
        s3.put_object_acl(Bucket=BUCKET, Key="k", VersionId=old, ACL="private")
        assert _grants(s3, "k", VersionId=old) == {(me, "FULL_CONTROL")}
    finally:
        stop_cleanly(server)
