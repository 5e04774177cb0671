"""Object Lock across two real Stratum sites: a locked version arrives locked, its later lock
changes follow it, and the target's lock holds against replicated deletes."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.replication_sites import Site, running_sites, version_listing, wait_for

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    yield from running_sites(tmp_path_factory.mktemp("lock-sites"))


def locked_bucket(name: str, *clients: Any) -> None:
    for s3 in clients:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)


def retention(s3: Any, bucket: str, key: str, version: str) -> tuple[str, datetime.datetime]:
    found = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    return found["Mode"], found["RetainUntilDate"].replace(microsecond=0)


def hold(s3: Any, bucket: str, key: str, version: str) -> str:
    found = s3.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version)
    return str(found["LegalHold"]["Status"])


def refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def test_a_locked_version_arrives_locked(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    locked_bucket("vault", s3a, s3b)
    until = (datetime.datetime.now(datetime.UTC) + DAY).replace(microsecond=0)
    put = s3a.put_object(
        Bucket="vault",
        Key="ledger.db",
        Body=b"entries" * 500,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )
    version = put["VersionId"]
    copy = wait_for(lambda: s3b.head_object(Bucket="vault", Key="ledger.db"), what="the copy")
    assert copy["VersionId"] == version
    assert copy["ObjectLockMode"] == "GOVERNANCE" and copy["ObjectLockLegalHoldStatus"] == "ON"
    assert retention(s3b, "vault", "ledger.db", version) == ("GOVERNANCE", until)
    # the copy is as locked as the original: removing it is refused on the target
    code = refused(s3b.delete_object, Bucket="vault", Key="ledger.db", VersionId=version)
    assert code == "AccessDenied"

    # a multipart object with a lock: each part goes with its digest, as S3 asks
    upload = s3a.create_multipart_upload(
        Bucket="vault",
        Key="archive.tar",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    parts = []
    for number, fill in enumerate((b"a", b"b"), 1):
        part = s3a.upload_part(
            Bucket="vault",
            Key="archive.tar",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=fill * (5 << 20 if number == 1 else 1000),
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    done = s3a.complete_multipart_upload(
        Bucket="vault",
        Key="archive.tar",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    big = wait_for(lambda: s3b.head_object(Bucket="vault", Key="archive.tar"), what="multipart")
    assert big["ETag"] == done["ETag"] and big["VersionId"] == done["VersionId"]
    assert retention(s3b, "vault", "archive.tar", done["VersionId"]) == ("COMPLIANCE", until)
    status = wait_for(
        lambda: (
            s3a.head_object(Bucket="vault", Key="archive.tar")["ReplicationStatus"] == "COMPLETED"
        ),
        what="COMPLETED on the source",
    )
    assert status


def test_lock_changes_follow_the_version(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    locked_bucket("deeds", s3a, s3b)
    until = (datetime.datetime.now(datetime.UTC) + DAY).replace(microsecond=0)
    put = s3a.put_object(
        Bucket="deeds",
        Key="house.pdf",
        Body=b"deed",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    version = put["VersionId"]
    wait_for(lambda: s3b.head_object(Bucket="deeds", Key="house.pdf"), what="the copy")
    assert hold(s3b, "deeds", "house.pdf", version) == "OFF"

    # changes made on the source after the version was replicated: sent to the target
    s3a.put_object_legal_hold(
        Bucket="deeds", Key="house.pdf", VersionId=version, LegalHold={"Status": "ON"}
    )
    later = until + 2 * DAY
    s3a.put_object_retention(
        Bucket="deeds",
        Key="house.pdf",
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later},
        BypassGovernanceRetention=True,  # GOVERNANCE made COMPLIANCE
    )
    wait_for(
        lambda: retention(s3b, "deeds", "house.pdf", version) == ("COMPLIANCE", later),
        what="the longer retention on the target",
    )
    assert hold(s3b, "deeds", "house.pdf", version) == "ON"
    # the hold lifted on the source is lifted on the target
    s3a.put_object_legal_hold(
        Bucket="deeds", Key="house.pdf", VersionId=version, LegalHold={"Status": "OFF"}
    )
    wait_for(lambda: hold(s3b, "deeds", "house.pdf", version) == "OFF", what="the hold lifted")
    # the replica's own changes are not sent back: a hold set on the target stays there
    s3b.put_object_legal_hold(
        Bucket="deeds", Key="house.pdf", VersionId=version, LegalHold={"Status": "ON"}
    )
    assert hold(s3a, "deeds", "house.pdf", version) == "OFF"

    # a delete replicated from the source is a delete marker: the locked copy stays
    marker = s3a.delete_object(Bucket="deeds", Key="house.pdf")
    wait_for(
        lambda: any(v[1] == marker["VersionId"] for v in version_listing(s3b, "deeds")),
        what="the delete marker on the target",
    )
    kept = [v for v in version_listing(s3b, "deeds") if v[1] == version]
    assert kept and not kept[0][2]
    body = s3b.get_object(Bucket="deeds", Key="house.pdf", VersionId=version)["Body"].read()
    assert body == b"deed"
