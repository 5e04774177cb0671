"""Browser form uploads (POST Object) on a real server: boto3's generate_presigned_post
(SigV4) and hand-signed SigV2 forms, sent with requests as a browser sends them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests

from tests.server.conftest import RunningServer


def error_of(response: requests.Response) -> tuple[int, str | None]:
    return response.status_code, ET.fromstring(response.content).findtext("Code")


def sigv2_form(server: RunningServer, conditions: list[Any], **fields: str) -> dict[str, str]:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    policy = base64.b64encode(
        json.dumps({"expiration": expires, "conditions": conditions}).encode()
    ).decode()
    digest = hmac.new(server.secret_key.encode(), policy.encode(), hashlib.sha1).digest()
    return {
        "AWSAccessKeyId": server.access_key,
        "policy": policy,
        "signature": base64.b64encode(digest).decode(),
        **fields,
    }


def post(
    server: RunningServer, bucket: str, fields: dict[str, str], data: bytes, name: str = "f"
) -> requests.Response:
    # requests sends fields in order, the file last, as browsers do
    return requests.post(
        f"{server.endpoint}/{bucket}",
        data=fields,
        files={"file": (name, data)},
        allow_redirects=False,
        timeout=30,
    )


@pytest.mark.parametrize(("version", "field"), [("s3v4", "x-amz-signature"), ("s3", "signature")])
def test_boto3_presigned_post_uploads(
    server: RunningServer, s3: Any, bucket: str, version: str, field: str
) -> None:
    form = server.client(signature_version=version).generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-album": "summer"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"Content-Type": "image/png"},
            {"x-amz-meta-album": "summer"},
            ["content-length-range", 1, 10 << 20],
        ],
        ExpiresIn=600,
    )
    assert field in form["fields"]
    data = bytes(range(256)) * 4096  # 1 MiB
    response = requests.post(
        form["url"], data=form["fields"], files={"file": ("cat.png", data)}, timeout=30
    )
    assert response.status_code == 204, response.content
    assert response.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="uploads/cat.png")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"album": "summer"}


def test_a_form_asking_for_encryption_is_refused_not_ignored(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    sse = {"x-amz-server-side-encryption": "AES256"}
    signed = server.client().generate_presigned_post(
        bucket, "secret", Fields=sse, Conditions=[sse], ExpiresIn=600
    )
    response = requests.post(
        signed["url"], data=signed["fields"], files={"file": ("s", b"data")}, timeout=30
    )
    assert error_of(response) == (501, "NotImplemented")
    assert ET.fromstring(response.content).findtext("Header") == "x-amz-server-side-encryption"
    # the same asked for in a header of the POST itself
    plain = server.client().generate_presigned_post(bucket, "plain", ExpiresIn=600)
    response = requests.post(
        plain["url"],
        data=plain["fields"],
        files={"file": ("p", b"data")},
        headers=sse,
        timeout=30,
    )
    assert error_of(response) == (501, "NotImplemented")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_sigv2_form_201_and_redirect(server: RunningServer, s3: Any, bucket: str) -> None:
    conditions: list[Any] = [{"bucket": bucket}, ["starts-with", "$key", "doc"]]
    created = post(
        server,
        bucket,
        sigv2_form(
            server,
            [*conditions, {"success_action_status": "201"}],
            key="doc1",
            success_action_status="201",
        ),
        b"one",
    )
    assert created.status_code == 201
    document = ET.fromstring(created.content)
    assert (document.tag, document.findtext("Key"), document.findtext("Bucket")) == (
        "PostResponse",
        "doc1",
        bucket,
    )
    assert document.findtext("ETag") == f'"{hashlib.md5(b"one").hexdigest()}"'
    back = "https://app.example/done"
    redirected = post(
        server,
        bucket,
        sigv2_form(
            server,
            [*conditions, ["eq", "$success_action_redirect", back]],
            key="doc2",
            success_action_redirect=back,
        ),
        b"two",
    )
    assert redirected.status_code == 303
    etag = hashlib.md5(b"two").hexdigest()
    assert redirected.headers["Location"] == f"{back}?bucket={bucket}&key=doc2&etag=%22{etag}%22"
    assert s3.get_object(Bucket=bucket, Key="doc2")["Body"].read() == b"two"


@pytest.mark.parametrize(
    ("conditions", "fields", "expected"),
    [
        ([["content-length-range", 0, 2]], {"key": "k"}, (400, "EntityTooLarge")),
        ([["content-length-range", 10, 20]], {"key": "k"}, (400, "EntityTooSmall")),
        ([["starts-with", "$key", "up/"]], {"key": "k"}, (403, "AccessDenied")),
        ([], {"key": "k", "x-amz-meta-a": "b"}, (403, "AccessDenied")),  # a field no one named
        ([{"bucket": "another-bucket"}], {"key": "k"}, (403, "AccessDenied")),
        ([], {}, (400, "InvalidArgument")),  # no key
        ([], {"key": "k", "acl": "public-read"}, (403, "AccessDenied")),  # acl not named
    ],
)
def test_refused_forms_store_nothing(
    server: RunningServer,
    s3: Any,
    bucket: str,
    conditions: list[Any],
    fields: dict[str, str],
    expected: tuple[int, str],
) -> None:
    response = post(
        server, bucket, sigv2_form(server, [["eq", "$key", "k"], *conditions], **fields), b"abc"
    )
    assert error_of(response) == expected
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_tagging_field_tags_the_object(server: RunningServer, s3: Any, bucket: str) -> None:
    tagging = "<Tagging><TagSet><Tag><Key>album</Key><Value>summer</Value></Tag></TagSet></Tagging>"
    fields = sigv2_form(
        server, [["eq", "$key", "t"], ["starts-with", "$tagging", ""]], key="t", tagging=tagging
    )
    assert post(server, bucket, fields, b"x").status_code == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "album", "Value": "summer"}
    ]
    bad = "<Tagging><TagSet><Tag><Key>aws:x</Key><Value>v</Value></Tag></TagSet></Tagging>"
    fields = sigv2_form(
        server, [["eq", "$key", "u"], ["starts-with", "$tagging", ""]], key="u", tagging=bad
    )
    assert error_of(post(server, bucket, fields, b"x")) == (400, "InvalidTag")


def test_signature_and_expiry_are_checked(server: RunningServer, bucket: str) -> None:
    fields = sigv2_form(server, [["eq", "$key", "k"]], key="k")
    forged = dict(fields, signature=base64.b64encode(b"x" * 20).decode())
    assert error_of(post(server, bucket, forged, b"x")) == (403, "SignatureDoesNotMatch")
    stranger = dict(fields, AWSAccessKeyId="NOSUCHKEY00000000000")
    assert error_of(post(server, bucket, stranger, b"x")) == (403, "InvalidAccessKeyId")
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    assert error_of(post(server, bucket, unsigned, b"x")) == (400, "InvalidArgument")
    expired_policy = base64.b64encode(
        json.dumps({"expiration": "2020-01-01T00:00:00Z", "conditions": []}).encode()
    ).decode()
    digest = hmac.new(server.secret_key.encode(), expired_policy.encode(), hashlib.sha1).digest()
    expired = dict(fields, policy=expired_policy, signature=base64.b64encode(digest).decode())
    assert error_of(post(server, bucket, expired, b"x")) == (403, "AccessDenied")


def test_anonymous_form(server: RunningServer, s3: Any, bucket: str) -> None:
    assert error_of(post(server, bucket, {"key": "k"}, b"x")) == (403, "AccessDenied")
    missing = post(server, f"{bucket}-missing", {"key": "k"}, b"x")
    assert error_of(missing) == (404, "NoSuchBucket")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert post(server, bucket, {"key": "dropbox/k"}, b"from anyone").status_code == 204
    assert s3.get_object(Bucket=bucket, Key="dropbox/k")["Body"].read() == b"from anyone"


def test_acl_field_sets_the_objects_acl(server: RunningServer, s3: Any, bucket: str) -> None:
    fields = sigv2_form(
        server, [["eq", "$key", "pub"], {"acl": "public-read"}], key="pub", acl="public-read"
    )
    assert post(server, bucket, fields, b"for all").status_code == 204
    anonymous = requests.get(f"{server.endpoint}/{bucket}/pub", timeout=10)
    assert (anonymous.status_code, anonymous.content) == (200, b"for all")
    grants = s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)


def test_large_form_upload_streams(server: RunningServer, s3: Any, bucket: str) -> None:
    data = hashlib.sha256(b"seed").digest() * (1 << 20)  # 32 MiB
    fields = sigv2_form(server, [["eq", "$key", "big"]], key="big")
    response = post(server, bucket, fields, data)
    assert response.status_code == 204
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_storage_class_and_lock_fields_apply_as_their_headers_do(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    any_of = [["starts-with", f"${name}", ""] for name in ("x-amz-storage-class",)]
    fields = sigv2_form(
        server, [["eq", "$key", "ia"], *any_of], key="ia", **{"x-amz-storage-class": "STANDARD_IA"}
    )
    assert post(server, bucket, fields, b"x").status_code == 204
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    fields = sigv2_form(
        server, [["eq", "$key", "bad"], *any_of], key="bad", **{"x-amz-storage-class": "COLDER"}
    )
    assert error_of(post(server, bucket, fields, b"x")) == (400, "InvalidStorageClass")

    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    lock = {
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": until,
        "x-amz-object-lock-legal-hold": "ON",
    }
    named = [["starts-with", f"${name}", ""] for name in lock]
    fields = sigv2_form(server, [["eq", "$key", "l"], *named], key="l", **lock)
    # in a bucket without Object Lock: refused, as the headers would be
    assert error_of(post(server, bucket, fields, b"x"))[0] == 400
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="l")
    s3.create_bucket(Bucket=f"{bucket}-locked", ObjectLockEnabledForBucket=True)
    response = post(server, f"{bucket}-locked", fields, b"locked by a form")
    assert response.status_code == 204, response.text
    head = s3.head_object(Bucket=f"{bucket}-locked", Key="l")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    assert head["ObjectLockRetainUntilDate"].strftime("%Y-%m-%dT%H:%M:%SZ") == until
    s3.put_object_legal_hold(
        Bucket=f"{bucket}-locked",
        Key="l",
        VersionId=head["VersionId"],
        LegalHold={"Status": "OFF"},
    )
    s3.delete_object(
        Bucket=f"{bucket}-locked",
        Key="l",
        VersionId=head["VersionId"],
        BypassGovernanceRetention=True,
    )
    s3.delete_bucket(Bucket=f"{bucket}-locked")
