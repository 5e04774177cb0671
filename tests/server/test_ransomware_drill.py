"""The ransomware drill: restic backs up into a bucket with a COMPLIANCE default retention;
an attacker holding the same keys deletes every object, every version it can list, overwrites
every key and empties the bucket with rclone. Every original version is still there, rclone
restores the repository as it was (``--s3-version-at``), and restic checks it with
``--read-data``. Once the server's clock passes the retention date, deletes succeed.

The server runs in this process, on a real port, so that its clock can be moved: the node
judges retention on a clock the test advances, while signatures are checked on the real one
(a client signs with the real time).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from stratum.config import load_config
from stratum.node import Node
from stratum.s3.context import ApiSettings
from stratum.s3.server import S3Server
from stratum.util.clock import SystemClock
from stratum.web.app import make_app
from tests.server.clients import find_tool

ACCESS, SECRET = "DRILLROOTKEY", "drill-root-secret"
BUCKET = "backups"
PASSWORD = "correct horse battery staple"


class MovableClock:
    """The real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


class Drill:
    def __init__(self, s3: Any, clock: MovableClock, endpoint: str, home: Path) -> None:
        self.s3, self.clock, self.endpoint, self.home = s3, clock, endpoint, home
        home.mkdir()
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "AWS_ACCESS_KEY_ID": ACCESS,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "RESTIC_PASSWORD": PASSWORD,
        }
        self.rclone_config = home / "rclone.conf"
        self.rclone_config.write_text(
            "[stratum]\ntype = s3\nprovider = Other\nenv_auth = false\n"
            f"access_key_id = {ACCESS}\nsecret_access_key = {SECRET}\n"
            f"endpoint = {endpoint}\nregion = us-east-1\n"
        )

    async def boto(self, method: str, **kwargs: Any) -> Any:
        """A boto3 call, off the event loop that serves it."""
        return await asyncio.to_thread(getattr(self.s3, method), **kwargs)

    async def tool(self, *args: str, check: bool = True) -> str:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 300)
        text = output.decode(errors="replace")
        if check and process.returncode != 0:
            pytest.fail(f"{args[:3]} failed ({process.returncode}):\n{text}", pytrace=False)
        return text

    async def restic(self, repository: str, *args: str, check: bool = True) -> str:
        return await self.tool(find_tool("restic"), "-r", repository, *args, check=check)

    async def rclone(self, *args: str, check: bool = True) -> str:
        rclone = find_tool("rclone")
        return await self.tool(rclone, "--config", str(self.rclone_config), *args, check=check)

    async def versions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": BUCKET}
        while True:
            page = await self.boto("list_object_versions", **kwargs)
            found += page.get("Versions", [])
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]


@pytest.fixture
async def drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Drill]:
    monkeypatch.setenv("STRATUM_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("STRATUM_SECRET_KEY", SECRET)
    clock = MovableClock()
    node = Node.open(load_config(overrides={"storage.data_dir": tmp_path / "data"}), clock)
    await node.start()
    settings = ApiSettings(region="us-east-1", domain="", access_log=False)
    server = S3Server(node.service, node.multipart, node.users, settings, SystemClock())
    runner = web.AppRunner(make_app(server))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    endpoint = f"http://127.0.0.1:{port}"
    s3 = await asyncio.to_thread(  # botocore loads its models: not on the serving loop
        boto3.client,
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    try:
        yield Drill(s3, clock, endpoint, tmp_path / "home")
    finally:
        await runner.cleanup()
        await node.stop()
        node.close()


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
async def test_a_locked_backup_survives_an_attacker_with_the_keys(
    drill: Drill, tmp_path: Path
) -> None:
    d = drill
    await d.boto("create_bucket", Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    await d.boto(
        "put_object_lock_configuration",
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    data = tmp_path / "precious"
    (data / "docs").mkdir(parents=True)
    for i in range(5):
        (data / "docs" / f"small-{i}.txt").write_bytes(os.urandom(2000 + i))
    (data / "large.bin").write_bytes(os.urandom(3 << 20))
    repository = f"s3:{d.endpoint}/{BUCKET}"
    await d.restic(repository, "init")
    await d.restic(repository, "backup", str(data))
    listed = await d.versions()
    originals = {(v["Key"], v["VersionId"]): v["ETag"] for v in listed}
    current = {v["Key"] for v in listed if v["IsLatest"]}  # restic deleted its lock files
    assert len(current) >= 5
    await asyncio.sleep(1.1)  # the attack comes strictly after the backup
    before_attack = datetime.datetime.now(datetime.UTC)
    await asyncio.sleep(1.1)

    # The attacker, with the same keys.
    for key, _version in originals:
        await d.boto("delete_object", Bucket=BUCKET, Key=key)  # a delete marker each
    refused = 0
    for entry in await d.versions():
        try:
            await d.boto(
                "delete_object",
                Bucket=BUCKET,
                Key=entry["Key"],
                VersionId=entry["VersionId"],
                BypassGovernanceRetention=True,
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied"
            refused += 1
    assert refused == len(originals)
    for key, _version in originals:
        await d.boto("put_object", Bucket=BUCKET, Key=key, Body=b"encrypted by ransomware")
    await d.rclone("purge", f"stratum:{BUCKET}", check=False)  # the bucket is not empty
    await d.rclone("delete", "--s3-versions", f"stratum:{BUCKET}", check=False)

    # Every original version is there, byte for byte as written.
    for (key, version), etag in originals.items():
        got = await d.boto("head_object", Bucket=BUCKET, Key=key, VersionId=version)
        assert got["ETag"] == etag
    restored = tmp_path / "restored-repo"
    at = before_attack.strftime("%Y-%m-%dT%H:%M:%SZ")
    await d.rclone("copy", "--s3-version-at", at, f"stratum:{BUCKET}", str(restored))
    # Everything the repository held; restic's lock files too, once the attacker removed the
    # delete markers that hid them (as on AWS: a delete marker is not protected).
    extra = set(_tree(restored)) - current
    assert current <= set(_tree(restored)) and all(k.startswith("locks/") for k in extra)
    await d.restic(str(restored), "unlock")  # such a resurrected lock is stale
    await d.restic(str(restored), "check", "--read-data")
    target = tmp_path / "restore"
    await d.restic(str(restored), "restore", "latest", "--target", str(target))
    assert _tree(target / data.relative_to("/")) == _tree(data)

    # Past the retention date (on the server's clock) the versions can go.
    d.clock.offset += 86400 + 60
    (key, version), _etag = next(iter(originals.items()))
    await d.boto("delete_object", Bucket=BUCKET, Key=key, VersionId=version)
    with pytest.raises(ClientError) as gone:
        await d.boto("head_object", Bucket=BUCKET, Key=key, VersionId=version)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
