"""Authentication and payload integrity against a real server.

Requests are signed by botocore (``S3SigV4Auth`` / ``S3SigV4QueryAuth``) with a chosen
time, region or payload hash where a test needs one, and sent with ``requests``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import xml.etree.ElementTree as ET
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server

UNSIGNED = "UNSIGNED-PAYLOAD"
TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def code_of(response: requests.Response) -> str | None:
    return ET.fromstring(response.content).findtext("Code")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def signed_request(
    server: RunningServer,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    sent_body: bytes | None = None,
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
    region: str = "us-east-1",
    secret: str | None = None,
    at: datetime | None = None,
) -> requests.Response:
    """Sign ``body`` (or ``payload_hash``) at time ``at``; send ``sent_body`` if given."""
    url = server.endpoint + path
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    when = at or datetime.now(UTC)

    class Signer(S3SigV4Auth):
        def payload(self, request: Any) -> str:
            return payload_hash or super().payload(request)

        def add_auth(self, request: Any) -> None:
            request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            string_to_sign = self.string_to_sign(request, canonical)
            self._inject_signature_to_request(request, self.signature(string_to_sign, request))

    credentials = Credentials(server.access_key, secret or server.secret_key)
    Signer(credentials, "s3", region).add_auth(request)
    data = body if sent_body is None else sent_body
    return requests.request(method, url, data=data, headers=dict(request.headers), timeout=10)


def presigned_url(
    server: RunningServer,
    method: str,
    path: str,
    *,
    expires: int = 300,
    at: datetime | None = None,
    region: str = "us-east-1",
) -> str:
    request = AWSRequest(method=method, url=server.endpoint + path, headers={})
    when = at or datetime.now(UTC)

    class QuerySigner(S3SigV4QueryAuth):
        def add_auth(self, request: Any) -> None:
            request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            string_to_sign = self.string_to_sign(request, canonical)
            self._inject_signature_to_request(request, self.signature(string_to_sign, request))

    credentials = Credentials(server.access_key, server.secret_key)
    QuerySigner(credentials, "s3", region, expires=expires).add_auth(request)
    return str(request.url)


def assert_absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert error_of(exc) == (404, "404")


# --- who is asking -------------------------------------------------------------------------


def test_anonymous_requests_are_denied(server: RunningServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    for method, path in (
        ("GET", "/"),
        ("GET", f"/{bucket}"),
        ("GET", f"/{bucket}/private"),
        ("PUT", f"/{bucket}/anon"),
        ("DELETE", f"/{bucket}/private"),
    ):
        response = requests.request(method, server.endpoint + path, data=b"x", timeout=10)
        assert response.status_code == 403, (method, path)
        assert code_of(response) == "AccessDenied"
    response = requests.head(f"{server.endpoint}/{bucket}/private", timeout=10)
    assert response.status_code == 403
    assert response.content == b""
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"secret"
    assert_absent(s3, bucket, "anon")


def test_anonymous_request_to_a_missing_bucket_is_no_such_bucket(server: RunningServer) -> None:
    for method, path in (("GET", "/no-such-bucket-anon"), ("GET", "/no-such-bucket-anon/k")):
        response = requests.request(method, server.endpoint + path, timeout=10)
        assert response.status_code == 404, (method, path)
        assert code_of(response) == "NoSuchBucket"
        assert ET.fromstring(response.content).findtext("BucketName") == "no-such-bucket-anon"


def test_unknown_access_key(server: RunningServer) -> None:
    stranger = dataclasses.replace(server, access_key="NOSUCHKEY00000000000").client()
    with pytest.raises(ClientError) as exc:
        stranger.list_buckets()
    assert error_of(exc) == (403, "InvalidAccessKeyId")
    assert exc.value.response["Error"]["AWSAccessKeyId"] == "NOSUCHKEY00000000000"


def test_wrong_secret(server: RunningServer, bucket: str) -> None:
    forger = dataclasses.replace(server, secret_key="not-the-secret").client()
    for call in (
        lambda: forger.list_buckets(),
        lambda: forger.put_object(Bucket=bucket, Key="forged", Body=b"x"),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (403, "SignatureDoesNotMatch")
    assert_absent(server.client(), bucket, "forged")


def test_tampered_request_fails_signature(server: RunningServer, bucket: str) -> None:
    url_path = f"/{bucket}/one"
    request = AWSRequest(method="GET", url=server.endpoint + url_path, headers={})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    # the same signature on another key
    response = requests.get(
        f"{server.endpoint}/{bucket}/two", headers=dict(request.headers), timeout=10
    )
    assert response.status_code == 403
    assert code_of(response) == "SignatureDoesNotMatch"


# --- presigned URLs ------------------------------------------------------------------------


@pytest.fixture
def v4(server: RunningServer) -> Any:
    """boto3 presigns with SigV2 in us-east-1 unless SigV4 is asked for explicitly."""
    return server.client(signature_version="s3v4")


def test_presigned_url_with_boto3_default_signature(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert "AWSAccessKeyId=" in url  # what boto3 produces without signature_version
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.content == b"v2"


def test_presigned_get_put_head_delete(v4: Any, bucket: str) -> None:
    s3 = v4
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre signed+é"}, ExpiresIn=300
    )
    response = requests.put(put_url, data=b"via presigned PUT", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{hashlib.md5(b"via presigned PUT").hexdigest()}"'

    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre signed+é"}, ExpiresIn=300
    )
    response = requests.get(get_url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"via presigned PUT"

    head_url = s3.generate_presigned_url(
        "head_object", Params={"Bucket": bucket, "Key": "pre signed+é"}, ExpiresIn=300
    )
    response = requests.head(head_url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(b"via presigned PUT"))

    # a URL signed for GET does not allow a DELETE
    assert requests.delete(get_url, timeout=10).status_code == 403

    delete_url = s3.generate_presigned_url(
        "delete_object", Params={"Bucket": bucket, "Key": "pre signed+é"}, ExpiresIn=300
    )
    assert requests.delete(delete_url, timeout=10).status_code == 204
    assert requests.get(get_url, timeout=10).status_code == 404


def test_presigned_get_with_response_overrides(v4: Any, bucket: str) -> None:
    s3 = v4
    s3.put_object(Bucket=bucket, Key="doc", Body=b"pdf?")
    url = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": "doc",
            "ResponseContentDisposition": 'attachment; filename="doc.pdf"',
            "ResponseContentType": "application/pdf",
        },
    )
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="doc.pdf"'
    assert response.headers["Content-Type"] == "application/pdf"


def test_presigned_url_with_tampered_signature(v4: Any, bucket: str) -> None:
    s3 = v4
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    bad = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    response = requests.get(bad, timeout=10)
    assert response.status_code == 403
    assert code_of(response) == "SignatureDoesNotMatch"


def test_expired_presigned_url(server: RunningServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    url = presigned_url(
        server, "GET", f"/{bucket}/old", expires=60, at=datetime.now(UTC) - timedelta(minutes=5)
    )
    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert code_of(response) == "AccessDenied"
    assert "expired" in (ET.fromstring(response.content).findtext("Message") or "").lower()
    # the same, still valid
    fresh = presigned_url(server, "GET", f"/{bucket}/old", expires=60)
    assert requests.get(fresh, timeout=10).content == b"x"


def test_presigned_expires_beyond_a_week(
    server: RunningServer, s3: Any, v4: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    ok = presigned_url(server, "GET", f"/{bucket}/k", expires=604800)
    assert requests.get(ok, timeout=10).status_code == 200
    url = presigned_url(server, "GET", f"/{bucket}/k", expires=604801)
    response = requests.get(url, timeout=10)
    assert response.status_code == 400
    assert code_of(response) == "AuthorizationQueryParametersError"
    boto_url = v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604801
    )
    assert code_of(requests.get(boto_url, timeout=10)) == "AuthorizationQueryParametersError"


def test_sigv2_presigned_url_expires_within_a_week(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    params = {"Bucket": bucket, "Key": "k"}
    ok = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=6 * 86400)
    assert "AWSAccessKeyId=" in ok
    assert requests.get(ok, timeout=10).content == b"x"
    far = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=8 * 86400)
    response = requests.get(far, timeout=10)
    assert response.status_code == 403
    assert code_of(response) == "AccessDenied"
    assert "at most 604800 seconds" in (ET.fromstring(response.content).findtext("Message") or "")


def test_sigv2_can_be_turned_off(tmp_path: Path) -> None:
    config = tmp_path / "stratum.toml"
    config.write_text(f'[server]\nsigv2 = false\n[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    server = start_server(tmp_path / "data", config=config)
    try:
        v2 = server.client(signature_version="s3")
        with pytest.raises(ClientError) as refused:
            v2.create_bucket(Bucket="sigv2")
        assert error_of(refused) == (400, "InvalidRequest")
        assert "AWS4-HMAC-SHA256" in refused.value.response["Error"]["Message"]
        v4 = server.client(signature_version="s3v4")
        v4.create_bucket(Bucket="sigv4")
        v4.put_object(Bucket="sigv4", Key="k", Body=b"x")
        url = server.client().generate_presigned_url(
            "get_object", Params={"Bucket": "sigv4", "Key": "k"}
        )
        assert "AWSAccessKeyId=" in url
        response = requests.get(url, timeout=10)
        assert (response.status_code, code_of(response)) == (400, "InvalidRequest")
        v4.delete_object(Bucket="sigv4", Key="k")
    finally:
        assert server.stop() == 0, "".join(server.output[-30:])


def test_presigned_url_for_another_region(server: RunningServer, bucket: str) -> None:
    url = presigned_url(server, "GET", f"/{bucket}/k", region="eu-central-1")
    response = requests.get(url, timeout=10)
    assert response.status_code == 400
    assert code_of(response) == "AuthorizationQueryParametersError"


# --- signature scope and time --------------------------------------------------------------


def test_wrong_region_in_credential_scope(server: RunningServer, bucket: str) -> None:
    response = signed_request(server, "GET", f"/{bucket}", region="eu-west-1")
    assert response.status_code == 400
    root = ET.fromstring(response.content)
    assert root.findtext("Code") == "AuthorizationHeaderMalformed"
    assert root.findtext("Region") == "us-east-1"


def test_boto3_client_in_another_region(server: RunningServer) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="eu-west-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert error_of(exc) == (400, "AuthorizationHeaderMalformed")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_request_time_too_skewed(server: RunningServer, bucket: str, minutes: int) -> None:
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = signed_request(server, "PUT", f"/{bucket}/skewed", body=b"x", at=at)
    assert response.status_code == 403
    root = ET.fromstring(response.content)
    assert root.findtext("Code") == "RequestTimeTooSkewed"
    assert root.findtext("RequestTime") or root.findtext("ServerTime")
    assert_absent(server.client(), bucket, "skewed")


@pytest.mark.parametrize("minutes", [-14, 14])
def test_request_time_within_fifteen_minutes(
    server: RunningServer, s3: Any, bucket: str, minutes: int
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = signed_request(server, "PUT", f"/{bucket}/close", body=b"on time", at=at)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=bucket, Key="close")["Body"].read() == b"on time"


# --- payload integrity ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 200 * 1024], ids=["small", "erasure-coded"])
def test_payload_hash_mismatch_stores_nothing(
    server: RunningServer, s3: Any, bucket: str, size: int
) -> None:
    signed_body = os.urandom(size)
    sent_body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="existing", Body=b"before")
    for key in ("fresh", "existing"):
        response = signed_request(
            server, "PUT", f"/{bucket}/{key}", body=signed_body, sent_body=sent_body
        )
        assert response.status_code == 400
        root = ET.fromstring(response.content)
        assert root.findtext("Code") == "XAmzContentSHA256Mismatch"
        assert (
            root.findtext("ClientComputedContentSHA256") == hashlib.sha256(signed_body).hexdigest()
        )
        assert root.findtext("S3ComputedContentSHA256") == hashlib.sha256(sent_body).hexdigest()
    assert_absent(s3, bucket, "fresh")
    assert s3.get_object(Bucket=bucket, Key="existing")["Body"].read() == b"before"


def test_payload_hash_mismatch_on_a_document(server: RunningServer, s3: Any, bucket: str) -> None:
    """DeleteObjects' XML is payload too: a swapped document deletes nothing."""
    for key in ("aaaa", "bbbb"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    signed_doc = b"<Delete><Object><Key>aaaa</Key></Object></Delete>"
    sent_doc = b"<Delete><Object><Key>bbbb</Key></Object></Delete>"
    response = signed_request(
        server,
        "POST",
        f"/{bucket}?delete",
        body=signed_doc,
        sent_body=sent_doc,
        headers={"Content-MD5": base64.b64encode(hashlib.md5(sent_doc).digest()).decode()},
    )
    assert response.status_code == 400
    assert code_of(response) == "XAmzContentSHA256Mismatch"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["aaaa", "bbbb"]


def test_document_checksum_header_is_verified(server: RunningServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="aaaa", Body=b"x")
    document = b"<Delete><Object><Key>aaaa</Key></Object></Delete>"
    response = signed_request(
        server,
        "POST",
        f"/{bucket}?delete",
        body=document,
        headers={"x-amz-checksum-crc32": crc32_b64(b"another document")},
    )
    assert response.status_code == 400
    assert code_of(response) == "BadDigest"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["aaaa"]
    response = signed_request(
        server,
        "POST",
        f"/{bucket}?delete",
        body=document,
        headers={"x-amz-checksum-crc32": crc32_b64(document)},
    )
    assert response.status_code == 200
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_payload_hash_mismatch_on_create_bucket(server: RunningServer, s3: Any) -> None:
    name = "sha-mismatch-bucket"
    config = (
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1"
        b"</LocationConstraint></CreateBucketConfiguration>"
    )
    response = signed_request(
        server,
        "PUT",
        f"/{name}",
        body=b"",
        payload_hash=hashlib.sha256(b"").hexdigest(),
        sent_body=config,
    )
    assert response.status_code == 400
    assert code_of(response) == "XAmzContentSHA256Mismatch"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_unsigned_payload_is_accepted(server: RunningServer, s3: Any, bucket: str) -> None:
    body = os.urandom(300 * 1024)
    response = signed_request(
        server, "PUT", f"/{bucket}/unsigned", body=body, payload_hash=UNSIGNED
    )
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == body


def test_malformed_payload_hash_header(server: RunningServer, bucket: str) -> None:
    response = signed_request(
        server, "PUT", f"/{bucket}/bad-hash", body=b"x", payload_hash="not-a-hash"
    )
    assert response.status_code == 400
    assert code_of(response) == "InvalidArgument"


# --- boto3 checksums and aws-chunked bodies ------------------------------------------------

SIZES = [0, 1, 64 * 1024, 128 * 1024 + 1, 2 * 1024 * 1024 + 3]


def force_trailer(params: dict[str, Any], **_: Any) -> None:
    """Make botocore send its CRC32 as an aws-chunked trailer, as it does over HTTPS."""
    algorithm = params["context"].get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict):
        algorithm["in"] = "trailer"


@pytest.mark.parametrize("mode", ["default", "when_required", "trailer"])
def test_boto3_checksum_modes_store_exact_bytes(
    server: RunningServer, bucket: str, mode: str
) -> None:
    if mode == "when_required":
        client = server.client(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    else:
        client = server.client()
    sent: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    if mode == "trailer":
        client.meta.events.register("before-call.s3.PutObject", force_trailer)
    for size in SIZES:
        data = os.urandom(size)
        put = client.put_object(Bucket=bucket, Key=f"{mode}-{size}", Body=data)
        assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = client.get_object(Bucket=bucket, Key=f"{mode}-{size}")
        assert got["ContentLength"] == size
        assert got["Body"].read() == data
        if mode != "when_required":
            assert put["ChecksumCRC32"] == crc32_b64(data)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[-1].items()}
    if mode == "trailer":
        assert headers["x-amz-content-sha256"] == TRAILER
        assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    elif mode == "default":
        assert "x-amz-checksum-crc32" in headers
    else:
        assert not [h for h in headers if h.startswith("x-amz-checksum-")]


def test_stored_checksum_is_returned_on_request(s3: Any, bucket: str) -> None:
    data = b"checksummed"
    s3.put_object(Bucket=bucket, Key="c", Body=data, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    plain = s3.head_object(Bucket=bucket, Key="c")
    assert "ChecksumSHA256" not in plain


def test_wrong_checksum_header_is_bad_digest(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"data", ChecksumCRC32=crc32_b64(b"other"))
    assert error_of(exc) == (400, "BadDigest")
    assert_absent(s3, bucket, "c")


def aws_chunked(data: bytes, trailer_value: str, chunk: int = 3) -> bytes:
    parts = [
        f"{len(data[i : i + chunk]):x}\r\n".encode() + data[i : i + chunk] + b"\r\n"
        for i in range(0, len(data), chunk)
    ]
    return b"".join(parts) + f"0\r\nx-amz-checksum-crc32:{trailer_value}\r\n\r\n".encode()


def chunked_put(server: RunningServer, path: str, data: bytes, trailer: str) -> requests.Response:
    wire = aws_chunked(data, trailer)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Content-Length": str(len(wire)),
    }
    return signed_request(server, "PUT", path, body=wire, headers=headers, payload_hash=TRAILER)


def test_aws_chunked_body_is_stored_without_its_framing(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    data = b"hello, aws-chunked world"
    response = chunked_put(server, f"/{bucket}/framed", data, crc32_b64(data))
    assert response.status_code == 200, response.text
    assert response.headers["x-amz-checksum-crc32"] == crc32_b64(data)
    got = s3.get_object(Bucket=bucket, Key="framed")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    # Content-Encoding: aws-chunked is transport framing, not the object's encoding
    assert "ContentEncoding" not in got


def test_aws_chunked_wrong_trailer_stores_nothing(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    response = chunked_put(server, f"/{bucket}/framed", b"some data", crc32_b64(b"other"))
    assert response.status_code == 400
    assert code_of(response) == "BadDigest"
    assert_absent(s3, bucket, "framed")
