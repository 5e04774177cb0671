"""The cold backend (stratum.block.cold) against a real S3 server on loopback (moto_server)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
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
from stratum.config import ColdTierConfig, Credentials

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
    """A plain client of the remote, to look at what the provider stores."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


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

    stored = raw_client(remote).get_object(Bucket=BUCKET, Key=location["key"])["Body"].read()
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
    store = ColdStore(config, CREDENTIALS, key, executor, get_span=3 * MIB)
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
    assert hashlib.sha256(await read_all(store, location, 0, len(data))).digest() == (
        hashlib.sha256(data).digest()
    )
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
    client = raw_client(remote)
    assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=f"stratum/{vid}")


async def test_wrong_key_and_tampering_are_detected(
    store: ColdStore, remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    vid = "0191f0c2a3b4c5d6e7f8091a2b3c4d61"
    data = make_data(2 * MIB + 10)
    location = await store.put(vid, pieces(data), len(data), META)

    other = ColdStore(cold_config(remote, tmp_path), CREDENTIALS, os.urandom(32), executor)
    with pytest.raises(WrongColdKey):
        await read_all(other, location, 0, 10)
    with pytest.raises(WrongColdKey):
        await other.describe(vid)

    client = raw_client(remote)
    stored = bytearray(client.get_object(Bucket=BUCKET, Key=location["key"])["Body"].read())
    stored[-10] ^= 0x40  # in the last chunk (10 bytes + tag)
    client.put_object(Bucket=BUCKET, Key=location["key"], Body=bytes(stored))
    assert await read_all(store, location, 0, MIB) == data[:MIB]  # untouched chunks still read
    with pytest.raises(ColdFormatError, match="chunk 2 fails authentication"):
        await read_all(store, location, 0, len(data))
    client.put_object(Bucket=BUCKET, Key=location["key"], Body=bytes(stored[: 2 * MIB + 100]))
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
    missing = ColdStore(
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


class CuttingProxy:
    """A TCP proxy to the remote that, once armed, breaks the connection carrying the
    ``cut_after``-th response byte: a body that stops mid-stream."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.armed = False
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
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

    def close(self) -> None:
        self.listener.close()


async def test_a_body_cut_mid_stream_is_resumed_from_the_next_chunk(
    remote: str, tmp_path: Path, executor: concurrent.futures.Executor
) -> None:
    proxy = CuttingProxy(int(remote.rsplit(":", 1)[1]), cut_after=MIB + MIB // 2)
    try:
        config = cold_config(f"http://127.0.0.1:{proxy.port}", tmp_path)
        key = load_or_create_key(config.encryption_key_file)
        store = ColdStore(config, CREDENTIALS, key, executor, get_span=4 * MIB)
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
