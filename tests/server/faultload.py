"""Helpers for the fault tests: multi-disk configs, kill -9, a concurrent load that records only
what the server acknowledged, a read-back check against that record, and bit flipping in the
on-disk files (parsed here from the formats documented in ``stratum.block.shardfile`` and
``stratum.block.segments_format``, independently of the code under test).

The load keeps one operation in flight per key at a time, so each key has a linear history:
its possible states are exactly one version after an acknowledged operation, plus the new
version of an operation whose outcome is unknown (in flight when the server died, or failed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server.conftest import ACCESS_KEY, SECRET_KEY, RunningServer

KiB = 1024
MiB = 1024 * KiB
SMALL_THRESHOLD = 128 * KiB  # the default storage.small_object_threshold
PART_SIZES = (5 * MiB, 1 * KiB)  # a multipart upload: one minimal part and a short last one
SEED_ENV = "STRATUM_FAULT_SEED"


def fault_seed() -> int:
    """The seed of a fault test: ``$STRATUM_FAULT_SEED`` to replay a failure, else random."""
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else random.SystemRandom().randrange(1 << 32)


def client_config() -> dict[str, Any]:
    return {"connect_timeout": 5, "read_timeout": 60, "max_pool_connections": 4}


# ---- configs and processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    root: Path
    config: Path
    data_dir: Path
    disks: tuple[Path, ...]


def write_config(root: Path, disks: int = 6, extra: str = "", access_log: bool = False) -> Layout:
    """A TOML config with ``disks`` hot disks under ``root`` (absolute paths)."""
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    disk_dirs = tuple(root / f"disk{i}" for i in range(disks))
    config = root / "stratum.toml"
    config.write_text(
        f"[server]\naccess_log = {str(access_log).lower()}\n\n"
        f"[storage]\ndata_dir = {json.dumps(str(data_dir))}\n\n"
        f"[tiers.hot]\ndisks = [{', '.join(json.dumps(str(d)) for d in disk_dirs)}]\n"
        f"{extra}"
    )
    return Layout(root, config, data_dir, disk_dirs)


def kill_hard(server: RunningServer) -> None:
    """SIGKILL the server's whole process group (it runs in a session of its own)."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait(30)


class KilledLoad(Protocol):
    """A load that runs until the server is killed (``Load``, ``versionload.VersionLoad``)."""

    killed: threading.Event

    def start(self) -> None: ...

    def join(self) -> None: ...


def kill_during(server: RunningServer, load: KilledLoad, delay: float) -> int | None:
    """Run ``load`` for ``delay`` seconds, then SIGKILL the server; return the server's exit
    code if it had exited by itself before the kill (None: it was running)."""
    load.start()
    try:
        time.sleep(delay)
        exited = server.process.poll()
        load.killed.set()
        kill_hard(server)
    finally:
        load.join()
    return exited


def stop_cleanly(server: RunningServer) -> None:
    code = server.stop()
    assert code == 0, "server did not stop cleanly:\n" + "".join(server.output[-40:])


def wait_for_log(server: RunningServer, needle: str, count: int, timeout: float = 10.0) -> None:
    """Wait until ``needle`` occurs in ``count`` lines of the server's output."""
    deadline = time.monotonic() + timeout
    while sum(needle in line for line in list(server.output)) < count:
        assert time.monotonic() < deadline, f"no {count} lines with {needle!r} in the server log"
        time.sleep(0.02)


def print_server_log(server: RunningServer, lines: int = 80) -> None:
    """The end of the server's output, for a failing test's report (pytest shows stdout)."""
    print(f"--- last {lines} lines of the server log ---")
    print("".join(server.output[-lines:]))


def tmp_leftovers(disks: Sequence[Path]) -> list[Path]:
    return [entry for disk in disks for entry in sorted((disk / "tmp").iterdir())]


# ---- what the server acknowledged ---------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One content of a key: MD5 and size of the bytes, and the ETag the server must give."""

    md5: str
    size: int
    etag: str  # unquoted
    label: str = field(default="", compare=False)  # how it was written, for messages

    @property
    def multipart(self) -> bool:
        return "-" in self.etag


UNREADABLE = Version("unreadable", -1, "unreadable", "unreadable")  # GET failed or cut short


def version_of(data: bytes, label: str) -> Version:
    md5 = hashlib.md5(data).hexdigest()
    return Version(md5, len(data), md5, label)


def multipart_version(parts: Sequence[bytes], label: str) -> Version:
    whole = hashlib.md5()
    digests = b""
    for part in parts:
        whole.update(part)
        digests += hashlib.md5(part).digest()
    etag = f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"
    return Version(whole.hexdigest(), sum(map(len, parts)), etag, label)


def describe(version: Version | None) -> str:
    if version is None:
        return "absent"
    return f"{version.label or 'object'} ({version.size} B, md5 {version.md5[:8]})"


class Tally:
    """What a load counts: operations acknowledged (by kind), outcomes unknown, failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked = 0
        self.unknown = 0  # operations in flight at the kill, or failed
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []  # failures while the server was supposed to be up

    def _count(self, op: str) -> None:
        """One more acknowledged; the caller holds ``lock``."""
        self.acked += 1
        self.counts[op] = self.counts.get(op, 0) + 1

    def unknown_outcome(self, key: str, op: str, exc: BaseException, expected: bool) -> None:
        with self.lock:
            self.unknown += 1
            if not expected:
                self.errors.append(f"{op} {key}: {exc!r}")
                self._forget(key)

    def _forget(self, key: str) -> None:
        """A failed operation's outcome, for a ledger that tracks it (the lock is held)."""


class Ledger(Tally):
    """Per key: the states the server may be in, from what it acknowledged.

    ``possible[key]`` holds the version after the last acknowledged operation and the new
    versions of operations whose outcome is unknown since (``None`` means absent).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.keys = list(keys)
        self.possible: dict[str, set[Version | None]] = {k: {None} for k in keys}
        self.history: dict[str, list[Version | None]] = {k: [None] for k in keys}
        self.last_acked: dict[str, Version | None] = dict.fromkeys(keys)
        self.reads = 0  # GETs racing with the writes, checked whole and written

    def begin(self, key: str, version: Version | None) -> None:
        with self.lock:
            self.possible[key].add(version)
            self.history[key].append(version)

    def ack(self, key: str, version: Version | None, op: str) -> None:
        with self.lock:
            self.possible[key] = {version}
            self.last_acked[key] = version
            self._count(op)

    def settle(self, key: str, found: Version | None) -> None:
        """After a check: the key is what was read back."""
        with self.lock:
            self.possible[key] = {found}
            self.last_acked[key] = found


# ---- the load -------------------------------------------------------------------------------


class Load:
    """Concurrent PUT/overwrite/DELETE/multipart traffic from a thread pool until stopped.

    A failure counts as "expected" once ``killed`` is set (the server is going down).
    """

    WEIGHTS = (("small", 40), ("large", 22), ("delete", 20), ("multipart", 6), ("get", 12))

    def __init__(
        self, server: RunningServer, bucket: str, ledger: Ledger, seed: int, workers: int = 6
    ) -> None:
        self.server = server
        self.bucket = bucket
        self.ledger = ledger
        self.seed = seed
        self.workers = workers
        self.stop = threading.Event()
        self.killed = threading.Event()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="faultload")
        self._futures: list[Any] = []

    def start(self) -> None:
        for n in range(self.workers):
            self._futures.append(self._pool.submit(self._worker, n))

    def join(self) -> None:
        self.stop.set()
        for fut in self._futures:
            fut.result()
        self._pool.shutdown()

    def _take_key(self, rng: random.Random) -> str | None:
        with self._busy_lock:
            free = [k for k in self.ledger.keys if k not in self._busy]
            if not free:
                return None
            key = rng.choice(free)
            self._busy.add(key)
            return key

    def _worker(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        client = self.server.client(**client_config())
        ops, weights = zip(*self.WEIGHTS, strict=True)
        while not self.stop.is_set():
            op = rng.choices(ops, weights)[0]
            if op == "get":  # reads do not take the key: they race with its writes
                self._get(client, rng.choice(self.ledger.keys))
                continue
            key = self._take_key(rng)
            if key is None:
                time.sleep(0.001)
                continue
            try:
                self._run(client, rng, op, key)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

    def _run(self, client: Any, rng: random.Random, op: str, key: str) -> None:
        ledger = self.ledger
        try:
            if op == "delete":
                ledger.begin(key, None)
                client.delete_object(Bucket=self.bucket, Key=key)
                ledger.ack(key, None, op)
                return
            if op == "multipart":
                self._multipart(client, rng, key)
                return
            size = (
                rng.randint(1 * KiB, 64 * KiB) if op == "small" else rng.randint(200 * KiB, 3 * MiB)
            )
            data = rng.randbytes(size)
            version = version_of(data, f"{op} PUT")
            ledger.begin(key, version)
            resp = client.put_object(Bucket=self.bucket, Key=key, Body=data)
            if resp["ETag"].strip('"') != version.etag:
                ledger.errors.append(f"PUT {key}: ETag {resp['ETag']} for md5 {version.md5}")
            ledger.ack(key, version, op)
        except Exception as exc:  # the server died (expected after a kill) or misbehaved
            ledger.unknown_outcome(key, op, exc, expected=self.killed.is_set())

    def _get(self, client: Any, key: str) -> None:
        """A read racing with writes of the key: whole, and one of the versions written."""
        ledger = self.ledger
        try:
            found, problems = read_key(client, self.bucket, key)
        except Exception as exc:  # connection refused, reset...
            found, problems = UNREADABLE, [f"GET {key}: {exc!r}"]
        if self.killed.is_set():
            return
        with ledger.lock:
            ledger.reads += 1
            if found is not UNREADABLE and found not in ledger.history[key]:
                problems.append(f"GET {key} during the load: {describe(found)} was never written")
            ledger.errors += problems

    def _multipart(self, client: Any, rng: random.Random, key: str) -> None:
        parts = [rng.randbytes(size) for size in PART_SIZES]
        version = multipart_version(parts, "multipart upload")
        upload, done = upload_parts(client, self.bucket, key, parts)
        self.ledger.begin(key, version)  # only the completion can change the key
        resp = client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
        )
        if resp["ETag"].strip('"') != version.etag:
            self.ledger.errors.append(f"complete {key}: ETag {resp['ETag']} != {version.etag}")
        self.ledger.ack(key, version, "multipart")


def upload_parts(
    client: Any, bucket: str, key: str, parts: Sequence[bytes]
) -> tuple[str, list[dict[str, Any]]]:
    """Start a multipart upload and upload ``parts``: its id and the parts to complete it."""
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for number, part in enumerate(parts, start=1):
        resp = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part
        )
        done.append({"PartNumber": number, "ETag": resp["ETag"]})
    return upload, done


# ---- reading everything back ----------------------------------------------------------------


def list_all(client: Any, bucket: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return out


def read_key(client: Any, bucket: str, key: str) -> tuple[Version | None, list[str]]:
    """What GET returns for ``key`` (None: NoSuchKey) and what is wrong with the response."""
    problems: list[str] = []
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
        data = resp["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchKey":
            return None, problems
        return UNREADABLE, [f"{key}: UNREADABLE: {exc!r}"]
    except Exception as exc:  # e.g. the body stops short: the server hit damage mid-stream
        return UNREADABLE, [f"{key}: UNREADABLE: {exc!r}"]
    etag = resp["ETag"].strip('"')
    md5 = hashlib.md5(data).hexdigest()
    if len(data) != resp["ContentLength"]:
        problems.append(f"{key}: partial body, {len(data)} of {resp['ContentLength']} bytes")
    if "-" not in etag and etag != md5:
        problems.append(f"{key}: body md5 {md5} does not match its ETag {etag}")
    return Version(md5, len(data), etag), problems


def check_against(client: Any, bucket: str, ledger: Ledger) -> tuple[list[str], dict[str, int]]:
    """Read every key back and compare with what may be there; settle the ledger.

    Returns the problems found and counts of what was seen (objects present, absent...).
    """
    problems: list[str] = []
    listed = list_all(client, bucket)
    seen = {"present": 0, "absent": 0, "in-flight op applied": 0, "in-flight op not applied": 0}
    for key in ledger.keys:
        found, issues = read_key(client, bucket, key)
        problems += issues
        if found is UNREADABLE:
            continue
        possible = ledger.possible[key]
        found = next((v for v in possible if v == found), found)  # keep its label
        if found not in possible:
            problems.append(_explain(key, found, possible, ledger.history[key]))
        elif len(possible) > 1:
            applied = found != ledger.last_acked[key]
            seen["in-flight op applied" if applied else "in-flight op not applied"] += 1
        if found is None:
            seen["absent"] += 1
            if key in listed:
                problems.append(f"{key}: listed {listed[key]} but GET says NoSuchKey")
        else:
            seen["present"] += 1
            if key not in listed:
                problems.append(f"{key}: GET returns {describe(found)} but it is not listed")
            elif listed[key] != (found.size, found.etag):
                problems.append(f"{key}: listed {listed[key]}, GET gives {found.size} {found.etag}")
        ledger.settle(key, found)
    for key in sorted(set(listed) - set(ledger.keys)):
        problems.append(f"{key}: listed but never written")
    return problems, seen


def _explain(
    key: str, found: Version | None, possible: set[Version | None], history: list[Version | None]
) -> str:
    wanted = " or ".join(sorted(describe(v) for v in possible))
    if found is None:
        what = "LOST: GET says NoSuchKey"
    elif found in history:
        what = f"ROLLED BACK to an earlier {describe(found)}"
    else:
        what = f"CORRUPT: {describe(found)} matches nothing ever written to it"
    return f"{key}: {what}; expected {wanted}"


def unreferenced_ec_volumes(client: Any, bucket: str, ledger: Ledger, disks: Sequence[Path]) -> int:
    """Erasure-coded volumes on disk that no object uses, once the collector has settled.

    Incomplete multipart uploads are aborted first. What is left are volumes a crash caught
    between their shards' rename and the metadata commit (the design leaves them to a future
    scrub): a leak of space, not of data.
    """
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    live = sum(
        1
        for key in ledger.keys
        for v in ledger.possible[key]
        if v is not None and (v.multipart or v.size > SMALL_THRESHOLD)
    )
    last, stable_since = -1, time.monotonic()
    while True:
        on_disk = len(shard_files(disks))
        now = time.monotonic()
        if on_disk != last:
            last, stable_since = on_disk, now
        if on_disk <= live or now - stable_since > 3.0:  # the collector runs every 2 s
            return on_disk - live
        time.sleep(0.25)


# ---- raw requests (bodies that lie) ---------------------------------------------------------


def signed_headers(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str],
    payload_hash: str = "UNSIGNED-PAYLOAD",
) -> dict[str, str]:
    """SigV4 headers for a request whose body we will send (or not) ourselves."""
    url = server.endpoint + path
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.headers["X-Amz-Content-SHA256"] = payload_hash
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    out = {k: str(v) for k, v in request.headers.items()}
    out["Host"] = urlsplit(url).netloc
    return out


def raw_request(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    close_early: bool,
    payload_hash: str = "UNSIGNED-PAYLOAD",
) -> bytes:
    """Send a signed request over a plain socket; with ``close_early`` close after the body
    (which may be shorter than Content-Length) without reading a reply. Returns the reply."""
    all_headers = signed_headers(server, method, path, headers, payload_hash)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    netloc = urlsplit(server.endpoint).netloc
    host, port = netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        if close_early:
            return b""
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# ---- on-disk files --------------------------------------------------------------------------

_REC_HEAD = struct.Struct("<4sBBH16sQIIIII")
RECORD_HEADER_SIZE = _REC_HEAD.size + 4
SEGMENT_HEADER_SIZE = 48


@dataclass(frozen=True)
class SegRecord:
    """One record of a segment file, as documented in ``stratum.block.segments_format``."""

    path: Path
    offset: int
    volume_id: str
    meta_size: int
    payload_size: int

    @property
    def payload_offset(self) -> int:
        return self.offset + RECORD_HEADER_SIZE + self.meta_size


def segment_records(disks: Sequence[Path]) -> Iterator[SegRecord]:
    """Every record with a valid header in every segment file of ``disks``. Past anything else
    (a freed record reads as zeros, damage) the next valid header is searched for, as the
    format documents: magic, header CRC, and the offset it stores being where it is found."""
    for disk in disks:
        for path in sorted((disk / "seg").glob("*.seg")):
            raw = path.read_bytes()
            offset = SEGMENT_HEADER_SIZE
            while offset + RECORD_HEADER_SIZE <= len(raw):
                head = raw[offset : offset + _REC_HEAD.size]
                (crc,) = struct.unpack_from("<I", raw, offset + _REC_HEAD.size)
                magic, _v, _k, _r, vol, at, psize, _pcrc, msize, _mcrc, _r2 = _REC_HEAD.unpack(head)
                if magic != b"SREC" or zlib.crc32(head) != crc or at != offset:
                    offset = raw.find(b"SREC", offset + 1)
                    if offset < 0:
                        break
                    continue
                yield SegRecord(path, offset, vol.hex(), msize, psize)
                offset += RECORD_HEADER_SIZE + msize + psize


def shard_files(disks: Sequence[Path]) -> dict[str, list[Path]]:
    """Committed shard files by volume id (``<disk>/ec/<xx>/<volume>.<i>.shard``)."""
    out: dict[str, list[Path]] = {}
    for disk in disks:
        for path in sorted((disk / "ec").glob("*/*.shard")):
            out.setdefault(path.name.split(".")[0], []).append(path)
    return out


def flip_bytes(
    path: Path, rng: random.Random, count: int, lo: int = 0, hi: int | None = None
) -> int:
    """XOR ``count`` random bytes of ``path`` in ``[lo, hi)`` with non-zero values, in place.

    Returns how many bytes were flipped: 0 if the file is gone.
    """
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:  # a running server's collector freed it meanwhile
        return 0
    size = os.fstat(f.fileno()).st_size
    hi = size if hi is None else hi
    if hi <= lo:
        f.close()
        return 0
    with f:
        for _ in range(count):
            at = rng.randrange(lo, hi)
            f.seek(at)
            old = f.read(1)[0]
            f.seek(at)
            f.write(bytes([old ^ rng.randrange(1, 256)]))
        f.flush()
        os.fsync(f.fileno())
    return count


def placement_problems(disks: Sequence[Path], copies: int = 3) -> list[str]:
    """Volumes whose shards or replicas share a disk, or with other than ``copies`` replicas:
    what would make the loss of ``copies - 1`` disks lose data."""
    problems = []
    for volume, paths in sorted(shard_files(disks).items()):
        holders = [p.parents[2] for p in paths]
        if len(set(holders)) != len(holders):
            problems.append(f"EC volume {volume} has two shards on one disk: {paths}")
    replicas: dict[str, list[Path]] = {}
    for record in segment_records(disks):
        replicas.setdefault(record.volume_id, []).append(record.path.parents[1])
    for volume, holders in sorted(replicas.items()):
        if len(holders) != copies or len(set(holders)) != copies:
            problems.append(f"small volume {volume} has replicas on {holders}")
    return problems
