"""The cold backend (stratum.block.cold) against a real S3 server on loopback (moto_server)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from stratum.block.cold import (
    ColdObjectMissing,
    ColdStore,
    ColdStoreError,
    WrongColdKey,
    load_or_create_key,
)
from stratum.block.coldformat import ColdFormatError, decrypt_object
from stratum.config import ColdTierConfig, Credentials, load_config
from stratum.meta import catalog
from stratum.node import Node
from stratum.service.ids import new_volume_id
from stratum.service.objects import PutOptions
from stratum.tiering.policy import Decision
from stratum.util.clock import ManualClock

MIB = 1 << 20
BUCKET = "stratum-cold"
CREDENTIALS = Credentials("COLDTESTACCESSKEY", "cold-test-secret-key-do-not-log")
MARKER = b"PLAINTEXT-MARKER-c0ld-0123456789"
VID = "0191f0c2a3b4c5d6e7f8091a2b3c4d5e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with the cold bucket created."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    raw_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    process.terminate()
    process.wait(10)


def raw_client(endpoint: str) -> Any:
    """A plain client of the remote, to look at what the provider stores (it blocks: tests
    call it and its methods through ``asyncio.to_thread``)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def remote_bytes(endpoint: str, key: str) -> bytes:
    return bytes(raw_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield pool


def cold_config(endpoint: str, tmp_path: Path, bucket: str = BUCKET) -> ColdTierConfig:
    return ColdTierConfig(
        endpoint=endpoint,
        region="us-east-1",
        bucket=bucket,
        prefix="stratum/",
        credentials_file=None,
        encryption_key_file=tmp_path / "cold.key",
    )


@pytest.fixture
def store(
    remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> Iterator[ColdStore]:
    config = cold_config(remote, tmp_path)
    key = load_or_create_key(config.encryption_key_file)
    yield ColdStore(config, CREDENTIALS, key, executor)


async def pieces(data: bytes, sizes: tuple[int, ...] = (65536,)) -> AsyncIterator[bytes]:
    offset, turn = 0, 0
    while offset < len(data):
        step = sizes[turn % len(sizes)]
        yield data[offset : offset + step]
        offset += step
        turn += 1


async def read_all(store: ColdStore, location: dict[str, Any], start: int, end: int) -> bytes:
    return b"".join([piece async for piece in store.read(location, start, end)])


def make_data(size: int) -> bytes:
    block = MARKER + os.urandom(4096 - len(MARKER))
    return (block * (size // len(block) + 1))[:size]


META = {"bucket": "family-photos", "key": "holiday/very-secret-name.jpg", "md5": "00" * 16}


async def test_small_object_round_trip_ranges_and_delete(
    store: ColdStore, remote: str, tmp_path: Path
) -> None:
    sent: list[dict[str, str]] = []
    store._client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(dict(request.headers))
    )
    data = make_data(3 * MIB + 123)
    location = await store.put(VID, pieces(data, (1000, 70000, 1)), len(data), META)
    assert location["key"] == f"stratum/{VID}" and location["size"] == len(data)
    assert location["chunk_size"] == MIB and location["v"] == 1

    stored = await asyncio.to_thread(remote_bytes, remote, location["key"])
    assert len(stored) == location["stored_size"] == (await store.head(location)).stored_size
    for secret in (MARKER, b"very-secret-name", b"family-photos", META["md5"].encode()):
        assert secret not in stored
    assert decrypt_object(load_or_create_key(tmp_path / "cold.key"), stored) == (
        {**META, "volume_id": VID},
        data,
    )
    assert not [h for headers in sent for h in headers if "checksum" in h.lower()]

    assert await read_all(store, location, 0, len(data)) == data
    for start, end in [
        (0, 1),
        (MIB - 1, MIB + 1),
        (MIB, 2 * MIB),
        (len(data) - 5, len(data) + 100),
        (12345, 12345),
        (2 * MIB + 7, 3 * MIB + 50),
    ]:
        assert await read_all(store, location, start, end) == data[start:end], (start, end)

    await store.delete(location)
    with pytest.raises(ColdObjectMissing):
        await store.head(location)
    with pytest.raises(ColdObjectMissing):
        await read_all(store, location, 0, 10)
    await store.delete(location)  # already gone: fine


async def test_large_object_streams_as_multipart(
    remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    config = cold_config(remote, tmp_path)
    key = load_or_create_key(config.encryption_key_file)
    store = await asyncio.to_thread(ColdStore, config, CREDENTIALS, key, executor, get_span=3 * MIB)
    data = make_data(21 * MIB + 4321)
    vid = "0191f0c2a3b4c5d6e7f8091a2b3c4d5f"
    calls: list[str] = []
    store._client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    location = await store.put(vid, pieces(data, (MIB + 17, 5000)), len(data), META)
    assert calls.count("UploadPart") == 3 and "CompleteMultipartUpload" in calls
    assert "PutObject" not in calls

    calls.clear()
    assert await read_all(store, location, 0, len(data)) == data, "the round trip differs"
    assert calls.count("GetObject") == 11  # 22 chunks, 2 per 3 MiB span
    calls.clear()
    start, end = 10 * MIB - 3, 10 * MIB + 3
    assert await read_all(store, location, start, end) == data[start:end]
    assert calls == ["GetObject"]  # chunks 9 and 10 only

    described, meta = await store.describe(vid)
    assert described == location and meta == {**META, "volume_id": vid}
    listed = [info async for info in store.list_volumes()]
    assert vid in [info.volume_id for info in listed]
    await store.delete(location)


async def test_failed_upload_leaves_nothing(store: ColdStore, remote: str) -> None:
    vid = "0191f0c2a3b4c5d6e7f8091a2b3c4d60"
    data = make_data(12 * MIB)
    with pytest.raises(ValueError, match="declared"):
        await store.put(vid, pieces(data), len(data) + 1, META)
    with pytest.raises(ValueError, match="longer"):
        await store.put(vid, pieces(data), len(data) - 1, META)
    with pytest.raises(ValueError):
        await store.put(vid, pieces(b"abc"), 2, META)
    client = await asyncio.to_thread(raw_client, remote)
    uploads = await asyncio.to_thread(client.list_multipart_uploads, Bucket=BUCKET)
    assert not uploads.get("Uploads")
    listed = await asyncio.to_thread(client.list_objects_v2, Bucket=BUCKET, Prefix=f"stratum/{vid}")
    assert "Contents" not in listed


async def test_wrong_key_and_tampering_are_detected(
    store: ColdStore, remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    vid = "0191f0c2a3b4c5d6e7f8091a2b3c4d61"
    data = make_data(2 * MIB + 10)
    location = await store.put(vid, pieces(data), len(data), META)

    config = cold_config(remote, tmp_path)
    other = await asyncio.to_thread(ColdStore, config, CREDENTIALS, os.urandom(32), executor)
    with pytest.raises(WrongColdKey):
        await read_all(other, location, 0, 10)
    with pytest.raises(WrongColdKey):
        await other.describe(vid)

    client = await asyncio.to_thread(raw_client, remote)
    stored = bytearray(await asyncio.to_thread(remote_bytes, remote, location["key"]))
    stored[-10] ^= 0x40  # in the last chunk (10 bytes + tag)
    await asyncio.to_thread(
        client.put_object, Bucket=BUCKET, Key=location["key"], Body=bytes(stored)
    )
    assert await read_all(store, location, 0, MIB) == data[:MIB]  # untouched chunks still read
    with pytest.raises(ColdFormatError, match="chunk 2 fails authentication"):
        await read_all(store, location, 0, len(data))
    cut = bytes(stored[: 2 * MIB + 100])
    await asyncio.to_thread(client.put_object, Bucket=BUCKET, Key=location["key"], Body=cut)
    with pytest.raises(ColdFormatError, match="truncated"):
        await read_all(store, location, MIB, 2 * MIB)  # chunk 1 cut short
    with pytest.raises(ColdFormatError, match="truncated"):
        await read_all(store, location, 2 * MIB, 2 * MIB + 1)  # chunk 2 gone
    await store.delete(location)


async def test_probe_repr_and_errors(
    store: ColdStore, remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    await store.probe()
    assert CREDENTIALS.secret_key not in repr(store)
    assert "cold.key" not in repr(store)
    missing = await asyncio.to_thread(
        ColdStore,
        cold_config(remote, tmp_path, bucket="no-such-bucket"),
        CREDENTIALS,
        os.urandom(32),
        executor,
    )
    with pytest.raises(ColdStoreError) as caught:
        await missing.probe()
    assert CREDENTIALS.secret_key not in str(caught.value)
    with pytest.raises(ColdStoreError, match="no-such-bucket"):
        await missing.put(VID, pieces(b"x"), 1, META)


class RemoteProxy:
    """A TCP proxy to the remote on a port of its own. Once ``armed``, it breaks the connection
    carrying the ``cut_after``-th response byte: a body that stops mid-stream. :meth:`down`
    takes it away (connections refused, those open cut) until :meth:`up` brings it back on the
    same port: an endpoint that is unreachable for a while."""

    def __init__(self, upstream_port: int, cut_after: int = 0) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.armed = False
        self.cuts = 0
        self.open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self.accept, args=(self.listener,), daemon=True).start()

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.open += [client, upstream]
            threading.Thread(target=self.pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, True), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, responses: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if responses and self.armed:
                    sent += len(data)
                    if sent > self.cut_after:
                        self.armed = False
                        self.cuts += 1
                        break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def down(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        except OSError:
            pass
        self.listener.close()
        for sock in self.open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open.clear()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._serve()

    def close(self) -> None:
        self.down()


async def test_a_body_cut_mid_stream_is_resumed_from_the_next_chunk(
    remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    proxy = RemoteProxy(int(remote.rsplit(":", 1)[1]), cut_after=MIB + MIB // 2)
    try:
        config = cold_config(f"http://127.0.0.1:{proxy.port}", tmp_path)
        key = load_or_create_key(config.encryption_key_file)
        store = await asyncio.to_thread(
            ColdStore, config, CREDENTIALS, key, executor, get_span=4 * MIB
        )
        vid = "0191f0c2a3b4c5d6e7f8091a2b3c4d62"
        data = make_data(3 * MIB + 99)
        location = await store.put(vid, pieces(data), len(data), META)
        calls: list[str] = []
        store._client.meta.events.register(
            "before-call.s3", lambda model, **_: calls.append(model.name)
        )
        proxy.armed = True
        assert await read_all(store, location, 0, len(data)) == data
        assert proxy.cuts == 1 and calls == ["GetObject", "GetObject"]
        await store.delete(location)
    finally:
        proxy.close()


# ---- the cold tier of a node: deletes that fail, and the sweep --------------------------------


SWEEP_PREFIX = "node-test/"


@pytest.fixture
async def cold_node(
    remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Node, RemoteProxy]]:
    monkeypatch.setenv("STRATUM_COLD_ACCESS_KEY", CREDENTIALS.access_key)
    monkeypatch.setenv("STRATUM_COLD_SECRET_KEY", CREDENTIALS.secret_key)
    proxy = RemoteProxy(int(remote.rsplit(":", 1)[1]))
    config = load_config(
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.cold.endpoint": f"http://127.0.0.1:{proxy.port}",
            "tiers.cold.bucket": BUCKET,
            "tiers.cold.prefix": SWEEP_PREFIX,
            "tiers.cold.encryption_key_file": tmp_path / "cold.key",
        }
    )
    # Two days ahead of the remote's clock: what the remote holds is old enough to sweep.
    node = await asyncio.to_thread(Node.open, config, ManualClock(time.time() + 2 * 86400))
    await node.service.start(background=False)  # the test runs the collector itself
    await node.service.create_bucket("bkt", "owner", "us-east-1")
    try:
        yield node, proxy
    finally:
        if proxy.listener.fileno() < 0:
            proxy.up()  # the node's last garbage pass may want the remote
        await node.stop()
        node.close()
        proxy.down()


def remote_keys(endpoint: str) -> set[str]:
    listed = raw_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=SWEEP_PREFIX)
    return {item["Key"] for item in listed.get("Contents", [])}


async def _put_cold(node: Node, key: str, data: bytes) -> str:
    """Put an object and move it to the cold tier; its remote key."""
    await node.service.put_object("bkt", key, pieces(data), PutOptions(owner_id="owner"))
    volume = node.service.head_object("bkt", key, "owner").volume
    assert await node.tiering.mover.move(volume, Decision("cold", "test", {}))
    moved = node.service.head_object("bkt", key, "owner").volume
    assert moved.tier == "cold"
    return str(moved.location["key"])


def _garbage(node: Node) -> list[str]:
    return [key for key, _volume in node.meta.read(catalog.pending_garbage)]


async def test_a_failed_cold_delete_is_retried_and_the_sweep_removes_only_orphans(
    cold_node: tuple[Node, RemoteProxy],
    remote: str,
    tmp_path: Path,
    executor: concurrent.futures.Executor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stratum.objects")
    node, proxy = cold_node
    clock = node.clock
    assert isinstance(clock, ManualClock) and node.tiering.cold is not None
    kept_data = make_data(40_000)
    kept = await _put_cold(node, "kept", kept_data)
    doomed = await _put_cold(node, "doomed", make_data(50_000))
    await node.service.put_object("bkt", "hot", pieces(b"h" * 5000), PutOptions(owner_id="owner"))
    await node.service.collect_garbage()  # the moves' hot copies
    # An orphan: a move that wrote its cold object and died before its metadata commit.
    moved = {"moved_from": VID}
    orphan = await node.tiering.cold.put(new_volume_id(), pieces(b"o" * 3000), 3000, moved)
    # Not this store's: an object encrypted with another key, and one in no cold format.
    elsewhere = replace(cold_config(remote, tmp_path), prefix=SWEEP_PREFIX)
    stranger = await asyncio.to_thread(ColdStore, elsewhere, CREDENTIALS, os.urandom(32), executor)
    foreign = await stranger.put(new_volume_id(), pieces(b"f" * 100), 100, {})
    notes = f"{SWEEP_PREFIX}notes.txt"
    client = await asyncio.to_thread(raw_client, remote)
    await asyncio.to_thread(client.put_object, Bucket=BUCKET, Key=notes, Body=b"hi")
    everything = {kept, doomed, orphan["key"], foreign["key"], notes}
    assert await asyncio.to_thread(remote_keys, remote) == everything

    # The cold endpoint goes away while two objects are deleted.
    proxy.down()
    await node.service.delete_object("bkt", "doomed", "owner")
    await node.service.delete_object("bkt", "hot", "owner")
    assert await node.service.collect_garbage() == 1, "the hot one is freed all the same"
    assert len(_garbage(node)) == 1, "the cold delete that failed stays queued"
    assert any("could not free 1 garbage volume" in r.getMessage() for r in caplog.records)
    proxy.up()
    assert await node.service.collect_garbage() == 0, "not retried at once"
    assert doomed in await asyncio.to_thread(remote_keys, remote)

    # A sweep spares what a record names, even queued garbage; then what is too recent.
    assert node.maintenance.cold is node.tiering.cold
    node.maintenance.cold_min_age = 3 * 86400
    recent = (await node.maintenance.scrub()).cold_sweep
    assert recent == {**recent, "listed": 5, "deleted": 0, "recent": 3}, recent
    node.maintenance.cold_min_age = 86400
    swept = (await node.maintenance.scrub()).cold_sweep
    assert swept == {**swept, "listed": 5, "deleted": 1, "recent": 0, "foreign": 2}, swept
    assert await asyncio.to_thread(remote_keys, remote) == everything - {orphan["key"]}

    clock.advance(60)  # the failed delete's retry is due
    assert await node.service.collect_garbage() == 1
    assert _garbage(node) == []
    assert await asyncio.to_thread(remote_keys, remote) == everything - {orphan["key"], doomed}
    assert any("which could not be freed before" in r.getMessage() for r in caplog.records)
    view = node.service.head_object("bkt", "kept", "owner")
    data = b"".join([c async for c in node.service.read_volume(view.volume, 0, view.record.size)])
    assert data == kept_data
    for key in await asyncio.to_thread(remote_keys, remote):
        await asyncio.to_thread(client.delete_object, Bucket=BUCKET, Key=key)
