"""Users managed by `stratum user` in another process, beside a running server whose root keys
come from its environment, as systemd's EnvironmentFile gives them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from stratum.meta import catalog
from stratum.meta.records import BucketRecord, UserRecord
from stratum.meta.store import MetaStore
from stratum.service.user_secrets import KEY_FILE
from stratum.service.users import canonical_id_for
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


def test_delete_buckets_removes_them_with_the_user(server: RunningServer) -> None:
    assert stratum(server, "user", "add", *ALICE).returncode == 0
    alice = client(server, *ALICE)
    alice.create_bucket(Bucket="alices")
    for key in ("a", "b/c", "d" * 600):  # the last in a list record with its neighbours
        alice.put_object(Bucket="alices", Key=key, Body=os.urandom(200_000))
    upload = alice.create_multipart_upload(Bucket="alices", Key="big")["UploadId"]
    alice.upload_part(Bucket="alices", Key="big", UploadId=upload, PartNumber=1, Body=b"p" * 99)

    removed = stratum(server, "user", "remove", ALICE[0], "--delete-buckets")
    assert removed.returncode == 0, removed.stderr
    assert "deleted 1 bucket(s) and 3 object(s): alices" in removed.stdout
    root = server.client()
    assert "alices" not in [b["Name"] for b in root.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as gone:
        alice.list_objects_v2(Bucket="alices")
    assert gone.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    root.create_bucket(Bucket="alices")  # the name is free again, and empty
    assert root.list_objects_v2(Bucket="alices")["KeyCount"] == 0
    assert root.list_multipart_uploads(Bucket="alices").get("Uploads", []) == []
    root.delete_bucket(Bucket="alices")


def test_secrets_stored_in_plaintext_are_sealed_when_the_server_starts(tmp_path: Path) -> None:
    """A store written before secrets were sealed: the user keeps its secret and its id."""
    data_dir = tmp_path / "data"
    old_id = canonical_id_for(ALICE[0])  # how ids were made then
    store = MetaStore(data_dir / "meta")
    store.open()
    try:
        record = UserRecord(ALICE[0], ALICE[1], old_id, "alice", 1.0)
        store.write_sync(lambda tx: catalog.put_user(tx, record))
        store.write_sync(lambda tx: catalog.put_bucket(tx, BucketRecord("old-bucket", old_id, 1.0)))
    finally:
        store.close()
    server = start_server(data_dir)
    try:
        alice = client(server, *ALICE)
        assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["old-bucket"]
        listed = stratum(server, "user", "list", "--json")
        assert {"access_key": ALICE[0], "display_name": "alice", "id": old_id} in json.loads(
            listed.stdout
        )
        key = data_dir / KEY_FILE
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        store.open()  # beside the server, as `stratum user` commands open it
        try:
            sealed = store.read(lambda tx: catalog.get_user(tx, ALICE[0]))
            assert sealed is not None and not sealed.secret_key and sealed.sealed_secret
            store.copy_to(tmp_path / "copy")  # what the metadata backups write to every disk
        finally:
            store.close()
        assert ALICE[1].encode() not in (tmp_path / "copy" / "data.mdb").read_bytes()
    finally:
        assert server.stop() == 0, "".join(server.output[-30:])
