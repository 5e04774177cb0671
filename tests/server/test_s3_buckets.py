"""Bucket operations, user isolation and virtual-hosted addressing against a real server."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server, stratum_command
from tests.server.test_s3_listing import signed_get

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
OTHER_KEY = "STRATUMBUCKETSOTHER1"
OTHER_SECRET = "other-user-secret-for-bucket-tests-000001"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def signed(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """A SigV4-signed request built by botocore's signer, sent as is."""
    url = server.endpoint + path
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    return requests.request(method, url, data=body, headers=dict(request.headers), timeout=10)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10**12}"


@pytest.fixture(scope="module")
def other(server: RunningServer) -> Any:
    """A second user, added with the CLI while the server runs (no restart)."""
    done = subprocess.run(
        [
            *stratum_command(),
            "user",
            "add",
            "--data-dir",
            str(server.data_dir),
            "--display-name",
            "other",
            OTHER_KEY,
            OTHER_SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert OTHER_KEY in done.stdout
    return dataclasses.replace(server, access_key=OTHER_KEY, secret_key=OTHER_SECRET).client()


# --- ListBuckets / CreateBucket ------------------------------------------------------------


def test_list_buckets_shows_bucket_owner_and_creation_date(s3: Any, bucket: str) -> None:
    listed = s3.list_buckets()
    entries = {b["Name"]: b for b in listed["Buckets"]}
    assert bucket in entries
    age = time.time() - entries[bucket]["CreationDate"].timestamp()
    assert -5 < age < 120
    assert re.fullmatch(r"[0-9a-f]{64}", listed["Owner"]["ID"])
    assert listed["Owner"]["DisplayName"] == "root"
    names = [b["Name"] for b in listed["Buckets"]]
    assert names == sorted(names)


def test_create_bucket_answers_location_and_bucket_is_usable(s3: Any) -> None:
    name = unique("create")
    response = s3.create_bucket(Bucket=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["Location"] == f"/{name}"
    s3.head_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize("name", ["abc", "a" * 63, "a.b-c.1", "0-9"])
def test_create_bucket_accepts_edge_names(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name)
    try:
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        ".leading-dot",
        "double..dot",
        "192.168.10.20",
        "xn--punycode",
        "sthree-reserved",
        "name-s3alias",
        "name--ol-s3",
    ],
)
def test_create_bucket_rejects_invalid_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == (400, "InvalidBucketName")
    assert exc.value.response["Error"]["BucketName"] == name
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_rejects_characters_boto3_would_refuse(server: RunningServer) -> None:
    response = signed(server, "PUT", "/bad%21name")
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "InvalidBucketName"


def test_location_constraint_us_east_1_is_invalid(s3: Any) -> None:
    # AWS: us-east-1 is the default and may not be named explicitly.
    name = unique("loc-east")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    assert error_of(exc) == (400, "InvalidLocationConstraint")
    assert exc.value.response["Error"]["LocationConstraint"] == "us-east-1"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_location_constraint_of_another_region_is_refused(s3: Any) -> None:
    name = unique("loc-eu")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_of(exc) == (400, "IllegalLocationConstraintException")
    assert "eu-west-1" in exc.value.response["Error"]["Message"]
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_with_malformed_configuration(server: RunningServer, s3: Any) -> None:
    name = unique("badxml")
    response = signed(server, "PUT", f"/{name}", body=b"<CreateBucketConfiguration><oops")
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "MalformedXML"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_own_bucket_again_in_us_east_1_succeeds_and_changes_nothing(
    s3: Any, bucket: str
) -> None:
    """AWS's legacy us-east-1 behaviour (documented for CreateBucket): 200, bucket untouched.
    Other regions answer 409 BucketAlreadyOwnedByYou (see the region test below)."""
    s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    s3.create_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"kept"


def test_create_bucket_owned_by_another_user_already_exists(
    s3: Any, other: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert error_of(exc) == (409, "BucketAlreadyExists")
    # still ours
    s3.head_bucket(Bucket=bucket)


# --- DeleteBucket / HeadBucket -------------------------------------------------------------


def test_delete_bucket_not_empty_then_empty(s3: Any) -> None:
    name = unique("del")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert error_of(exc) == (409, "BucketNotEmpty")
    assert exc.value.response["Error"]["BucketName"] == name
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"x"
    s3.delete_object(Bucket=name, Key="k")
    response = s3.delete_bucket(Bucket=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert error_of(exc) == (404, "404")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_delete_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=unique("never"))
    assert error_of(exc) == (404, "NoSuchBucket")


def test_head_bucket(s3: Any, bucket: str) -> None:
    response = s3.head_bucket(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_head_missing_bucket_is_404_without_body(server: RunningServer) -> None:
    response = signed(server, "HEAD", f"/{unique('nohead')}")
    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["x-amz-request-id"]


def test_head_bucket_of_another_user_is_403(other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        other.head_bucket(Bucket=bucket)
    assert error_of(exc) == (403, "403")


# --- GetBucketLocation / GetBucketVersioning / ListObjectVersions --------------------------


def test_get_bucket_location(s3: Any, server: RunningServer, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    raw = signed(server, "GET", f"/{bucket}?location")
    assert raw.status_code == 200
    root = ET.fromstring(raw.content)
    assert root.tag == NS + "LocationConstraint"
    assert not root.text


def test_get_bucket_location_of_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket=unique("noloc"))
    assert error_of(exc) == (404, "NoSuchBucket")


def test_get_bucket_versioning_is_never_enabled(
    s3: Any, server: RunningServer, bucket: str
) -> None:
    response = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in response
    assert "MFADelete" not in response
    raw = signed(server, "GET", f"/{bucket}?versioning")
    root = ET.fromstring(raw.content)
    assert root.tag == NS + "VersioningConfiguration"
    assert list(root) == []
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_versioning(Bucket=unique("nover"))
    assert error_of(exc) == (404, "NoSuchBucket")


def test_list_object_versions_reports_null_versions(s3: Any, bucket: str) -> None:
    etags = {}
    for key in ("b", "a", "dir/c"):
        etags[key] = s3.put_object(Bucket=bucket, Key=key, Body=key.encode())["ETag"]
    response = s3.list_object_versions(Bucket=bucket)
    versions = response["Versions"]
    assert [v["Key"] for v in versions] == ["a", "b", "dir/c"]
    for v in versions:
        assert v["VersionId"] == "null"
        assert v["IsLatest"] is True
        assert v["ETag"] == etags[v["Key"]]
        assert v["Size"] == len(v["Key"])
        assert v["Owner"]["DisplayName"] == "root"
    assert "DeleteMarkers" not in response
    assert response["IsTruncated"] is False

    page = s3.list_object_versions(Bucket=bucket, MaxKeys=1, Delimiter="/")
    assert [v["Key"] for v in page["Versions"]] == ["a"]
    assert page["IsTruncated"] is True
    assert page["NextKeyMarker"] == "a"
    assert page["NextVersionIdMarker"] == "null"
    rest = s3.list_object_versions(
        Bucket=bucket, Delimiter="/", KeyMarker="a", VersionIdMarker="null"
    )
    assert [v["Key"] for v in rest["Versions"]] == ["b"]
    assert rest["CommonPrefixes"] == [{"Prefix": "dir/"}]
    assert rest["IsTruncated"] is False


def test_list_object_versions_of_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=unique("nov"))
    assert error_of(exc) == (404, "NoSuchBucket")


# --- two users -----------------------------------------------------------------------------


def test_other_user_cannot_touch_my_bucket(s3: Any, other: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="mine", Body=b"secret")
    attempts = [
        lambda: other.list_objects(Bucket=bucket),
        lambda: other.list_objects_v2(Bucket=bucket),
        lambda: other.get_object(Bucket=bucket, Key="mine"),
        lambda: other.put_object(Bucket=bucket, Key="theirs", Body=b"x"),
        lambda: other.put_object(Bucket=bucket, Key="mine", Body=b"overwritten"),
        lambda: other.delete_object(Bucket=bucket, Key="mine"),
        lambda: other.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine"}]}),
        lambda: other.delete_bucket(Bucket=bucket),
        lambda: other.get_bucket_location(Bucket=bucket),
        lambda: other.list_object_versions(Bucket=bucket),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as exc:
            attempt()
        assert error_of(exc) == (403, "AccessDenied")
    with pytest.raises(ClientError) as exc:
        other.head_object(Bucket=bucket, Key="mine")
    assert error_of(exc) == (403, "403")
    # nothing changed
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["mine"]
    assert s3.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"secret"


def test_copy_between_users_is_denied_both_ways(s3: Any, other: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    theirs = unique("theirs")
    other.create_bucket(Bucket=theirs)
    try:
        other.put_object(Bucket=theirs, Key="their-src", Body=b"their data")
        with pytest.raises(ClientError) as exc:
            other.copy_object(
                Bucket=theirs, Key="stolen", CopySource={"Bucket": bucket, "Key": "src"}
            )
        assert error_of(exc) == (403, "AccessDenied")
        with pytest.raises(ClientError) as exc:
            s3.copy_object(
                Bucket=bucket, Key="stolen", CopySource={"Bucket": theirs, "Key": "their-src"}
            )
        assert error_of(exc) == (403, "AccessDenied")
        assert [o["Key"] for o in other.list_objects_v2(Bucket=theirs)["Contents"]] == ["their-src"]
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]
    finally:
        other.delete_object(Bucket=theirs, Key="their-src")
        other.delete_bucket(Bucket=theirs)


def test_each_user_lists_only_own_buckets_with_own_owner(s3: Any, other: Any, bucket: str) -> None:
    theirs = unique("theirs")
    other.create_bucket(Bucket=theirs)
    try:
        other.put_object(Bucket=theirs, Key="k", Body=b"v")
        mine = s3.list_buckets()
        their_list = other.list_buckets()
        assert bucket in [b["Name"] for b in mine["Buckets"]]
        assert theirs not in [b["Name"] for b in mine["Buckets"]]
        assert [b["Name"] for b in their_list["Buckets"]] == [theirs]
        assert their_list["Owner"]["DisplayName"] == "other"
        assert re.fullmatch(r"[0-9a-f]{64}", their_list["Owner"]["ID"])
        assert their_list["Owner"]["ID"] != mine["Owner"]["ID"]
        owner = other.list_objects(Bucket=theirs)["Contents"][0]["Owner"]
        assert owner == their_list["Owner"]
        v2 = other.list_objects_v2(Bucket=theirs, FetchOwner=True)["Contents"][0]["Owner"]
        assert v2 == their_list["Owner"]
        with pytest.raises(ClientError) as exc:
            s3.list_objects_v2(Bucket=theirs)
        assert error_of(exc) == (403, "AccessDenied")
    finally:
        other.delete_object(Bucket=theirs, Key="k")
        other.delete_bucket(Bucket=theirs)


def test_unknown_user_key_after_removal(server: RunningServer) -> None:
    """A user removed with the CLI is refused at once, without a restart."""
    key, secret = "STRATUMREMOVEDUSER01", "removed-user-secret-000000000000000001"
    base = [*stratum_command(), "user"]
    data = ["--data-dir", str(server.data_dir)]
    subprocess.run([*base, "add", *data, key, secret], check=True, capture_output=True)
    client = dataclasses.replace(server, access_key=key, secret_key=secret).client()
    assert client.list_buckets()["Buckets"] == []
    subprocess.run([*base, "remove", *data, key], check=True, capture_output=True)
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert error_of(exc) == (403, "InvalidAccessKeyId")


# --- virtual-hosted style ------------------------------------------------------------------

DOMAIN = "s3.test"


@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("vhost-data")
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text(f'[server]\ndomain = "{DOMAIN}"\n\n[storage]\ndata_dir = "{data_dir}"\n')
    srv = start_server(data_dir, config=config)
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-30:])


def vhost_client(srv: RunningServer) -> Any:
    """boto3 addressing ``bucket.s3.test:PORT``, with the connection sent to 127.0.0.1."""
    port = urlsplit(srv.endpoint).port
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}:{port}",
        aws_access_key_id=srv.access_key,
        aws_secret_access_key=srv.secret_key,
        region_name="us-east-1",
        config=BotoConfig(
            s3={"addressing_style": "virtual"}, retries={"max_attempts": 1, "mode": "standard"}
        ),
    )
    hosts: list[str] = []

    def to_localhost(request: Any, **_: Any) -> None:
        # The request is signed for its virtual host; keep that Host, change the socket.
        parts = urlsplit(request.url)
        hosts.append(parts.netloc)
        request.headers["Host"] = parts.netloc
        request.url = parts._replace(netloc=f"127.0.0.1:{port}").geturl()

    client.meta.events.register("before-send.s3", to_localhost)
    client.sent_hosts = hosts
    return client


def test_virtual_hosted_style_round_trip(vhost_server: RunningServer) -> None:
    client = vhost_client(vhost_server)
    port = urlsplit(vhost_server.endpoint).port
    client.create_bucket(Bucket="vhosted")
    assert client.sent_hosts[-1] == f"vhosted.{DOMAIN}:{port}"
    client.put_object(Bucket="vhosted", Key="dir/a b+c.txt", Body=b"virtual", ContentType="t/x")
    got = client.get_object(Bucket="vhosted", Key="dir/a b+c.txt")
    assert got["Body"].read() == b"virtual"
    assert got["ContentType"] == "t/x"
    listed = client.list_objects_v2(Bucket="vhosted", Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/a b+c.txt"]
    assert client.list_objects(Bucket="vhosted")["Contents"][0]["Key"] == "dir/a b+c.txt"
    client.head_bucket(Bucket="vhosted")
    assert all(h == f"vhosted.{DOMAIN}:{port}" for h in client.sent_hosts)

    # the same bucket and object are there for a path-style client (Host 127.0.0.1)
    path_client = vhost_server.client()
    assert path_client.get_object(Bucket="vhosted", Key="dir/a b+c.txt")["Body"].read() == (
        b"virtual"
    )
    assert "vhosted" in [b["Name"] for b in path_client.list_buckets()["Buckets"]]

    client.delete_object(Bucket="vhosted", Key="dir/a b+c.txt")
    client.delete_bucket(Bucket="vhosted")
    assert "vhosted" not in [b["Name"] for b in path_client.list_buckets()["Buckets"]]


def test_virtual_host_names_the_bucket_not_the_path(vhost_server: RunningServer) -> None:
    """On ``b.s3.test`` the whole path is the key: ``/b2/k`` is key ``b2/k`` in ``b``."""
    client = vhost_client(vhost_server)
    client.create_bucket(Bucket="vhost-one")
    try:
        client.put_object(Bucket="vhost-one", Key="vhost-two/k", Body=b"1")
        path_client = vhost_server.client()
        keys = [o["Key"] for o in path_client.list_objects_v2(Bucket="vhost-one")["Contents"]]
        assert keys == ["vhost-two/k"]
        with pytest.raises(ClientError) as exc:
            path_client.head_bucket(Bucket="vhost-two")
        assert error_of(exc) == (404, "404")
    finally:
        client.delete_object(Bucket="vhost-one", Key="vhost-two/k")
        client.delete_bucket(Bucket="vhost-one")


def test_virtual_host_with_dotted_bucket_and_path_style_on_the_domain(
    vhost_server: RunningServer,
) -> None:
    client = vhost_client(vhost_server)
    port = urlsplit(vhost_server.endpoint).port
    client.create_bucket(Bucket="dotted.bucket")
    try:
        assert client.sent_hosts[-1] == f"dotted.bucket.{DOMAIN}:{port}"
        client.put_object(Bucket="dotted.bucket", Key="k", Body=b"dots")
        # path style addressed to the bare domain works too
        path_style = boto3.client(
            "s3",
            endpoint_url=f"http://{DOMAIN}:{port}",
            aws_access_key_id=vhost_server.access_key,
            aws_secret_access_key=vhost_server.secret_key,
            region_name="us-east-1",
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        hosts: list[str] = []

        def to_localhost(request: Any, **_: Any) -> None:
            parts = urlsplit(request.url)
            hosts.append(parts.netloc)
            request.headers["Host"] = parts.netloc
            request.url = parts._replace(netloc=f"127.0.0.1:{port}").geturl()

        path_style.meta.events.register("before-send.s3", to_localhost)
        assert path_style.get_object(Bucket="dotted.bucket", Key="k")["Body"].read() == b"dots"
        assert "dotted.bucket" in [b["Name"] for b in path_style.list_buckets()["Buckets"]]
        assert hosts == [f"{DOMAIN}:{port}"] * 2
    finally:
        client.delete_object(Bucket="dotted.bucket", Key="k")
        client.delete_bucket(Bucket="dotted.bucket")


def test_virtual_host_key_that_looks_like_the_admin_prefix(vhost_server: RunningServer) -> None:
    """On ``b.s3.test`` the path is a key, even ``/_stratum/status``."""
    client = vhost_client(vhost_server)
    client.create_bucket(Bucket="vhost-admin-like")
    try:
        client.put_object(Bucket="vhost-admin-like", Key="_stratum/status", Body=b"a key")
        got = client.get_object(Bucket="vhost-admin-like", Key="_stratum/status")
        assert got["Body"].read() == b"a key"
        listed = client.list_objects_v2(Bucket="vhost-admin-like")
        assert [o["Key"] for o in listed.get("Contents", [])] == ["_stratum/status"]
    finally:
        client.delete_objects(
            Bucket="vhost-admin-like", Delete={"Objects": [{"Key": "_stratum/status"}]}
        )
        client.delete_bucket(Bucket="vhost-admin-like")


def test_virtual_host_invalid_bucket_label(vhost_server: RunningServer) -> None:
    port = urlsplit(vhost_server.endpoint).port
    url = vhost_server.endpoint + "/"
    host = f"bad_bucket.{DOMAIN}:{port}"
    request = AWSRequest(method="GET", url=f"http://{host}/", headers={})
    S3SigV4Auth(
        Credentials(vhost_server.access_key, vhost_server.secret_key), "s3", "us-east-1"
    ).add_auth(request)
    headers = dict(request.headers)
    headers["Host"] = host
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "InvalidBucketName"


def test_create_own_bucket_again_outside_us_east_1_is_already_owned_by_you(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("eu-data")
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text(f'[server]\nregion = "eu-central-1"\n\n[storage]\ndata_dir = "{data_dir}"\n')
    srv = start_server(data_dir, config=config)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=srv.endpoint,
            aws_access_key_id=srv.access_key,
            aws_secret_access_key=srv.secret_key,
            region_name="eu-central-1",
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        where = {"LocationConstraint": "eu-central-1"}
        client.create_bucket(Bucket="mine", CreateBucketConfiguration=where)
        client.put_object(Bucket="mine", Key="keep", Body=b"kept")
        with pytest.raises(ClientError) as exc:
            client.create_bucket(Bucket="mine", CreateBucketConfiguration=where)
        assert error_of(exc) == (409, "BucketAlreadyOwnedByYou")
        assert exc.value.response["Error"]["BucketName"] == "mine"
        assert client.get_object(Bucket="mine", Key="keep")["Body"].read() == b"kept"
        assert client.get_bucket_location(Bucket="mine")["LocationConstraint"] == "eu-central-1"
    finally:
        assert srv.stop() == 0, "".join(srv.output[-30:])


def test_delete_bucket_aborts_unfinished_uploads(s3: Any) -> None:
    s3.create_bucket(Bucket="with-uploads")
    upload = s3.create_multipart_upload(Bucket="with-uploads", Key="big")["UploadId"]
    s3.upload_part(Bucket="with-uploads", Key="big", UploadId=upload, PartNumber=1, Body=b"a")
    s3.delete_bucket(Bucket="with-uploads")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="with-uploads")
    assert error_of(exc)[0] == 404


def test_list_buckets_paginated(s3: Any) -> None:
    names = [f"page-bkt-{i}" for i in range(3)]
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        first = s3.list_buckets(MaxBuckets=2, Prefix="page-bkt-")
        assert [b["Name"] for b in first["Buckets"]] == names[:2]
        second = s3.list_buckets(
            MaxBuckets=2, Prefix="page-bkt-", ContinuationToken=first["ContinuationToken"]
        )
        assert [b["Name"] for b in second["Buckets"]] == names[2:]
        assert "ContinuationToken" not in second
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


def test_list_buckets_pages_by_token_with_prefix_and_region(s3: Any, server: Any) -> None:
    names = [f"lb-page-{i:02d}" for i in range(7)]
    for name in names:
        s3.create_bucket(Bucket=name)
    s3.create_bucket(Bucket="lb-pagf-outside")  # just past the prefix
    try:
        for size in (1, 2, 3, 7):
            seen: list[str] = []
            kwargs: dict[str, Any] = {"MaxBuckets": size, "Prefix": "lb-page-"}
            while True:
                page = s3.list_buckets(**kwargs)
                assert page["Prefix"] == "lb-page-"
                assert len(page["Buckets"]) <= size
                seen += [b["Name"] for b in page["Buckets"]]
                if "ContinuationToken" not in page:
                    break
                assert page["ContinuationToken"] != page["Buckets"][-1]["Name"]  # opaque
                kwargs["ContinuationToken"] = page["ContinuationToken"]
            assert seen == names, size
        region = s3.get_bucket_location(Bucket=names[0])["LocationConstraint"] or "us-east-1"
        here = s3.list_buckets(Prefix="lb-pa", BucketRegion=region)["Buckets"]
        assert [b["Name"] for b in here] == [*names, "lb-pagf-outside"]
        assert {b["BucketRegion"] for b in here} == {region}
        assert s3.list_buckets(Prefix="lb-pa", BucketRegion="xx-nowhere-9")["Buckets"] == []
        everything = s3.list_buckets()  # no parameter: every bucket, no token, no Prefix
        assert set(names) <= {b["Name"] for b in everything["Buckets"]}
        assert "ContinuationToken" not in everything and "Prefix" not in everything
    finally:
        for name in [*names, "lb-pagf-outside"]:
            s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "query",
    [
        {"max-buckets": "0"},
        {"max-buckets": "10001"},
        {"max-buckets": "many"},
        {"continuation-token": "not base64!"},
        {"continuation-token": "A" * 1025},
    ],
)
def test_list_buckets_refuses_bad_paging_arguments(server: Any, query: dict[str, str]) -> None:
    answer = signed_get(server, "/", query)
    assert answer.status_code == 400, answer.text
    assert "<Code>InvalidArgument</Code>" in answer.text
    assert f"<ArgumentName>{next(iter(query))}</ArgumentName>" in answer.text
