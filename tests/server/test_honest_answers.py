"""Features Stratum does not implement are refused, never accepted and ignored: encryption
headers on writes and reads answer 501 NotImplemented naming the header, and nothing is
stored; an expected bucket owner that is not the caller is AccessDenied."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.test_s3_objects import error_of

KEY = os.urandom(32)


@pytest.mark.parametrize(
    "extra",
    [
        {"ServerSideEncryption": "AES256"},
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "my-key"},
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY},
    ],
    ids=["sse-s3", "sse-kms", "sse-c"],
)
def test_encrypted_writes_are_refused_and_nothing_is_stored(
    s3: Any, bucket: str, extra: dict[str, Any]
) -> None:
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=bucket, Key="secret", Body=b"data", **extra)
    assert error_of(put) == (501, "NotImplemented")
    assert put.value.response["Error"]["Header"].startswith("x-amz-server-side-encryption")
    with pytest.raises(ClientError) as upload:
        s3.create_multipart_upload(Bucket=bucket, Key="secret", **extra)
    assert error_of(upload) == (501, "NotImplemented")
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=bucket, Key="secret")
    assert error_of(head)[0] == 404
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_reads_and_copies_with_customer_keys_are_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"data")
    with pytest.raises(ClientError) as get:
        s3.get_object(Bucket=bucket, Key="plain", SSECustomerAlgorithm="AES256", SSECustomerKey=KEY)
    assert error_of(get) == (501, "NotImplemented")
    with pytest.raises(ClientError) as copy:
        s3.copy_object(
            Bucket=bucket,
            Key="copy",
            CopySource={"Bucket": bucket, "Key": "plain"},
            CopySourceSSECustomerAlgorithm="AES256",
            CopySourceSSECustomerKey=KEY,
        )
    assert error_of(copy) == (501, "NotImplemented")


def test_the_expected_bucket_owner_is_checked(s3: Any, bucket: str) -> None:
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner=owner)
    with pytest.raises(ClientError) as other:
        s3.put_object(Bucket=bucket, Key="k", Body=b"y", ExpectedBucketOwner="111122223333")
    assert error_of(other) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
