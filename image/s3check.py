"""Signed S3 requests against the booted image (run by image/boot-test.sh on the host).

    python image/s3check.py --endpoint URL --keys-from FILE first|again [--hot N --warm N]

``FILE`` is the serial console log (the first boot prints the keys and the fingerprint of the
server's certificate) or the credentials file from the boot partition. With a fingerprint
(``https://`` endpoint), the certificate the server presents is fetched and used only if its
SHA-256 is that one, as a user is told to check it. ``first`` waits until Stratum answers a
signed ListBuckets, then writes a small and an erasure-coded object and reads them back;
``again`` (a later boot) reads them.
Both then ask the admin API (signed, root keys) for the disks and check every one is online,
under /srv/stratum, with the expected number in each tier. Exit 0 only if all of it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import ssl
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from appliance.render import fingerprint, parse_credentials_note, parse_fingerprint

BUCKET = "ci-pi"
BIG = random.Random(4).randbytes(3 * 1024 * 1024 + 17)  # > small_object_threshold: erasure
SMALL = b"hello from the Pi image\n"


def log(message: str) -> None:
    print(f"[s3check] {message}", flush=True)


def keys_from(path: Path) -> tuple[str, str, str | None]:
    text = path.read_text(errors="replace").replace("\r", "")
    return (*parse_credentials_note(text), parse_fingerprint(text))


def pinned_certificate(endpoint: str, expected: str) -> str:
    """The server's certificate saved to a file, if its fingerprint is ``expected``."""
    url = urlsplit(endpoint)
    pem = ssl.get_server_certificate((url.hostname or "", url.port or 443), timeout=10)
    if fingerprint(pem) != expected:
        raise SystemExit(f"the server presents {fingerprint(pem)}, the console said {expected}")
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as out:
        out.write(pem)
    return out.name


def admin_status(endpoint: str, access: str, secret: str, region: str, ca: str | None) -> Any:
    request = AWSRequest(method="GET", url=f"{endpoint}/_stratum/status", data=b"")
    S3SigV4Auth(Credentials(access, secret), "s3", region).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, headers=dict(prepared.headers))
    context = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(http, timeout=30, context=context) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["first", "again"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--keys-from", type=Path, required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--hot", type=int, default=None, help="expected hot disks")
    parser.add_argument("--warm", type=int, default=None, help="expected warm disks")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    keys: tuple[str, str, str | None] | None = None
    while keys is None:
        try:
            keys = keys_from(args.keys_from)
        except (KeyError, OSError):
            if time.monotonic() > deadline:
                log(f"no keys in {args.keys_from}")
                return 1
            time.sleep(2)
    access, secret, expected = keys
    log(f"access key {access} (from {args.keys_from.name})")
    ca: str | None = None
    while expected is not None and ca is None:  # the server may not be up yet
        try:
            ca = pinned_certificate(args.endpoint, expected)
        except OSError as exc:
            if time.monotonic() > deadline:
                log(f"no certificate from {args.endpoint}: {exc}")
                return 1
            time.sleep(3)
    if ca is not None:
        log(f"the server's certificate has the fingerprint the console showed: {expected}")
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
        verify=ca if ca is not None else True,
    )
    started = time.monotonic()
    while True:
        try:
            buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
            break
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                log(f"no signed answer: {exc}")
                return 1
            time.sleep(3)
    log(f"signed ListBuckets answered after {time.monotonic() - started:.0f} s: {buckets}")
    if args.phase == "first":
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="small.txt", Body=SMALL)
        s3.put_object(Bucket=BUCKET, Key="big.bin", Body=BIG)
        log(f"PUT small.txt and big.bin ({len(BIG)} bytes)")
    for key, body in (("small.txt", SMALL), ("big.bin", BIG)):
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
            log(f"GET {key}: wrong bytes")
            return 1
    log("GET small.txt and big.bin: same bytes")
    status = admin_status(args.endpoint, access, secret, args.region, ca)
    disks = status["disks"]
    for d in disks:
        log(f"disk {d['tier']:<4} {d['state']:<8} {d['path']}")
    ok = all(d["state"] == "online" and d["path"].startswith("/srv/stratum/") for d in disks)
    for tier, want in (("hot", args.hot), ("warm", args.warm)):
        have = sum(1 for d in disks if d["tier"] == tier)
        if want is not None and have != want:
            log(f"{tier}: {have} disks, expected {want}")
            ok = False
    if not ok:
        log("the disks are not what was provisioned")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
