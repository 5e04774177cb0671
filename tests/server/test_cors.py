"""CORS on a real server: rules set and read with boto3, preflights and actual requests as a
browser sends them (requests, with ``Origin``), errors included."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer

APP = "https://app.example"
RULES = {
    "CORSRules": [
        {
            "ID": "uploads",
            "AllowedOrigins": [APP],
            "AllowedMethods": ["PUT", "POST", "GET"],
            "AllowedHeaders": ["content-type", "x-amz-*"],
            "ExposeHeaders": ["ETag", "x-amz-request-id"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
    ]
}


def error_code(response: requests.Response) -> str | None:
    return ET.fromstring(response.content).findtext("Code")


def test_put_get_delete_bucket_cors(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got == RULES["CORSRules"]
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bad_rules_are_refused(s3: Any, bucket: str) -> None:
    bad = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=bad)
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def test_preflight_answers_by_the_rules(server: RunningServer, s3: Any, bucket: str) -> None:
    url = f"{server.endpoint}/{bucket}/photo.jpg"
    asked = {
        "Origin": APP,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Date",
    }
    refused = requests.options(url, headers=asked, timeout=10)
    assert refused.status_code == 403
    assert error_code(refused) == "AccessForbidden"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    allowed = requests.options(url, headers=asked, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == APP
    assert allowed.headers["Access-Control-Allow-Methods"] == "PUT, POST, GET"
    assert allowed.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert allowed.headers["Access-Control-Max-Age"] == "600"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    other = requests.options(
        url, headers={"Origin": "https://else.example", "Access-Control-Request-Method": "PUT"}
    )
    assert other.status_code == 403
    star = requests.options(
        url, headers={"Origin": "https://else.example", "Access-Control-Request-Method": "GET"}
    )
    assert star.headers["Access-Control-Allow-Origin"] == "*"
    unlisted = dict(asked, **{"Access-Control-Request-Headers": "x-custom"})
    assert requests.options(url, headers=unlisted, timeout=10).status_code == 403
    assert requests.options(url, timeout=10).status_code == 400
    missing = requests.options(
        f"{server.endpoint}/{bucket}-missing/k",
        headers={"Origin": APP, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert (missing.status_code, error_code(missing)) == (404, "NoSuchBucket")


def test_actual_requests_carry_the_headers(server: RunningServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=b"jpeg")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photo.jpg"})
    response = requests.get(get, headers={"Origin": APP}, timeout=10)
    assert response.content == b"jpeg"  # a streamed body: the headers went out first
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert "Access-Control-Max-Age" not in response.headers
    assert "Access-Control-Allow-Origin" not in requests.get(get, timeout=10).headers
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "nope"})
    error = requests.get(missing, headers={"Origin": APP}, timeout=10)
    assert error.status_code == 404
    assert error.headers["Access-Control-Allow-Origin"] == APP
    listing = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket})
    other = requests.get(listing, headers={"Origin": "https://else.example"}, timeout=10)
    assert other.status_code == 200
    assert other.headers["Access-Control-Allow-Origin"] == "*"
    delete = s3.generate_presigned_url(
        "delete_object", Params={"Bucket": bucket, "Key": "photo.jpg"}
    )
    refused = requests.delete(delete, headers={"Origin": APP}, timeout=10)
    assert refused.status_code == 204
    assert "Access-Control-Allow-Origin" not in refused.headers  # DELETE is in no rule
