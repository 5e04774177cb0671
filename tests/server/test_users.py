"""Users managed by `stratum user` in another process, beside a running server whose root keys
come from its environment, as systemd's EnvironmentFile gives them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.server.conftest import ACCESS_KEY, RunningServer, start_server, stratum_command

ALICE = ("ALICEKEY0000", "alice-secret-key-0000")


def stratum(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """A command run from an operator's shell: no STRATUM_* keys in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
    return subprocess.run(
        [*stratum_command(), *args, "--data-dir", str(server.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def client(server: RunningServer, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = start_server(tmp_path / "data")
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-30:])


def test_user_list_shows_the_root_key_in_use(server: RunningServer) -> None:
    listed = stratum(server, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    root = json.loads(listed.stdout)[0]
    assert (root["access_key"], root["display_name"]) == (ACCESS_KEY, "root")
    generated = json.loads((server.data_dir / "root-credentials.json").read_text())
    assert root["id"] == generated["canonical_id"] and generated["access_key"] != ACCESS_KEY


def test_a_removed_user_leaves_no_bucket_behind(server: RunningServer) -> None:
    added = stratum(server, "user", "add", *ALICE)
    assert added.returncode == 0, added.stderr
    alice = client(server, *ALICE)
    alice.create_bucket(Bucket="alices")
    alice.put_object(Bucket="alices", Key="note", Body=b"from alice")
    assert ALICE[1].encode() not in (server.data_dir / "meta" / "data.mdb").read_bytes()

    refused = stratum(server, "user", "remove", ALICE[0])
    assert refused.returncode == 2
    assert "owns 1 bucket(s): alices" in refused.stderr and "--to" in refused.stderr
    assert alice.get_object(Bucket="alices", Key="note")["Body"].read() == b"from alice"

    handed = stratum(server, "user", "remove", ALICE[0], "--to", ACCESS_KEY)
    assert handed.returncode == 0, handed.stderr
    root = server.client()
    assert root.get_object(Bucket="alices", Key="note")["Body"].read() == b"from alice"
    with pytest.raises(ClientError) as gone:
        alice.list_buckets()
    assert gone.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    # the same access key again is a new user, owning nothing of the old one's
    assert stratum(server, "user", "add", *ALICE).returncode == 0
    assert client(server, *ALICE).list_buckets()["Buckets"] == []
    with pytest.raises(ClientError) as denied:
        client(server, *ALICE).get_object(Bucket="alices", Key="note")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    root.delete_object(Bucket="alices", Key="note")
    root.delete_bucket(Bucket="alices")
