"""A concurrent load on a versioned bucket for the kill -9 storms, and its check.

Each key has one operation in flight at a time, so its history is a chain: the versions the
server acknowledged, oldest first (delete markers included, versions deleted for good left
out), plus at most the one operation whose outcome is unknown (in flight at the kill). After
a restart every key's listed versions must be that chain, newest first, with or without the
unknown operation applied; the current version (GET without a version id) must be the newest
of them; and every acknowledged version must read back by its id.
"""

from __future__ import annotations

import random
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer
from tests.server.faultload import (
    PART_SIZES,
    KiB,
    MiB,
    Tally,
    Version,
    client_config,
    describe,
    multipart_version,
    read_key,
    upload_parts,
    version_of,
)
from tests.server.test_s3_objects import signed


@dataclass(frozen=True)
class Entry:
    """A version of a key: its id and content (None for a delete marker)."""

    version_id: str
    content: Version | None


@dataclass
class Pending:
    """The operation on a key whose outcome is unknown: a new version (``adds``), or the
    removal of version ``removes``."""

    adds: Version | None = None
    marker: bool = False
    removes: str | None = None


class VersionLedger(Tally):
    """Per key: the chain of acknowledged versions and the operation in doubt, if any."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = keys
        self.chains: dict[str, list[Entry]] = {k: [] for k in keys}  # oldest first
        self.pending: dict[str, Pending] = {}

    def begin(self, key: str, pending: Pending) -> None:
        with self.lock:
            self.pending[key] = pending

    def ack_added(self, key: str, entry: Entry, op: str) -> None:
        with self.lock:
            self.pending.pop(key, None)
            self.chains[key].append(entry)
            self._count(op)

    def ack_removed(self, key: str, version_id: str) -> None:
        with self.lock:
            self.pending.pop(key, None)
            self.chains[key] = [e for e in self.chains[key] if e.version_id != version_id]
            self._count("remove")

    def _forget(self, key: str) -> None:
        self.pending.pop(key, None)


class VersionLoad:
    """PUTs (small, large, multipart), DELETEs (markers), DELETEs of a version and GETs."""

    WEIGHTS = (("small", 40), ("large", 14), ("delete", 16), ("remove", 12), ("multipart", 4))

    def __init__(
        self, server: RunningServer, bucket: str, ledger: VersionLedger, seed: int, workers: int = 6
    ) -> None:
        self.server, self.bucket, self.ledger, self.seed = server, bucket, ledger, seed
        self.workers = workers
        self.stop = threading.Event()
        self.killed = threading.Event()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._worker, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(120)

    def _worker(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        client = self.server.client(**client_config())
        ops, weights = zip(*self.WEIGHTS, strict=True)
        while not self.stop.is_set():
            with self._busy_lock:
                # A key whose last operation's outcome is in doubt (the server was killed
                # under it) takes no other: a new one would replace the doubt in the ledger
                # while the server may have applied the first (a worker still running just
                # after the kill once started a PUT on a key whose DELETE had been applied).
                with self.ledger.lock:
                    doubt = set(self.ledger.pending)
                free = [k for k in self.ledger.keys if k not in self._busy and k not in doubt]
                key = rng.choice(free) if free else None
                if key is not None:
                    self._busy.add(key)
            if key is None:
                time.sleep(0.001)
                continue
            try:
                self._run(client, rng, rng.choices(ops, weights)[0], key)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

    def _run(self, client: Any, rng: random.Random, op: str, key: str) -> None:
        ledger, bucket = self.ledger, self.bucket
        try:
            if op == "delete":
                ledger.begin(key, Pending(marker=True))
                response = client.delete_object(Bucket=bucket, Key=key)
                ledger.ack_added(key, Entry(response["VersionId"], None), op)
            elif op == "remove":
                chain = ledger.chains[key]
                if not chain:
                    return
                target = rng.choice(chain).version_id
                ledger.begin(key, Pending(removes=target))
                client.delete_object(Bucket=bucket, Key=key, VersionId=target)
                ledger.ack_removed(key, target)
            elif op == "multipart":
                self._multipart(client, rng, key)
            else:
                low, high = (1 * KiB, 64 * KiB) if op == "small" else (200 * KiB, 1 * MiB)
                data = rng.randbytes(rng.randint(low, high))
                version = version_of(data, f"{op} PUT")
                ledger.begin(key, Pending(adds=version))
                response = client.put_object(Bucket=bucket, Key=key, Body=data)
                ledger.ack_added(key, Entry(response["VersionId"], version), op)
        except Exception as exc:  # the server died (expected after a kill) or misbehaved
            ledger.unknown_outcome(key, op, exc, expected=self.killed.is_set())

    def _multipart(self, client: Any, rng: random.Random, key: str) -> None:
        parts = [rng.randbytes(size) for size in PART_SIZES]
        version = multipart_version(parts, "multipart upload")
        upload, done = upload_parts(client, self.bucket, key, parts)
        self.ledger.begin(key, Pending(adds=version))
        response = client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
        )
        self.ledger.ack_added(key, Entry(response["VersionId"], version), "multipart")


def listed_versions(
    server: RunningServer, bucket: str, **params: str
) -> tuple[list[tuple[str, str, bool, bool, str, int]], ET.Element]:
    """One ListObjectVersions page as the server wrote it, versions and delete markers in
    document order (boto3 parses them into two lists): (key, version id, is latest, is a
    delete marker, etag, size) each, and the document's root."""
    query = urlencode({"versions": "", **params}, quote_via=quote)
    response = signed(server, "GET", f"/{bucket}?{query}")
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    out = []
    for entry in root:
        tag = entry.tag.rpartition("}")[2]
        if tag not in ("Version", "DeleteMarker"):
            continue
        field_of = {child.tag.rpartition("}")[2]: child.text or "" for child in entry}
        out.append(
            (
                field_of["Key"],
                field_of["VersionId"],
                field_of["IsLatest"] == "true",
                tag == "DeleteMarker",
                field_of.get("ETag", "").strip('"'),
                int(field_of.get("Size", "0")),
            )
        )
    return out, root


def every_version(
    server: RunningServer, bucket: str, page: int = 300
) -> list[tuple[str, str, bool, bool, str, int]]:
    """Every version of the bucket, page after page (see :func:`listed_versions`)."""
    out = []
    params: dict[str, str] = {"max-keys": str(page)}
    while True:
        entries, root = listed_versions(server, bucket, **params)
        out += entries
        ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
        if root.findtext(f"{ns}IsTruncated") != "true":
            return out
        params["key-marker"] = root.findtext(f"{ns}NextKeyMarker") or ""
        params["version-id-marker"] = root.findtext(f"{ns}NextVersionIdMarker") or ""


def _listed(server: RunningServer, bucket: str) -> dict[str, list[tuple[str, bool, str, int]]]:
    """Every key's versions, newest first: (version id, delete marker, etag, size)."""
    out: dict[str, list[tuple[str, bool, str, int]]] = {}
    for key, vid, _latest, is_marker, etag, size in every_version(server, bucket):
        out.setdefault(key, []).append((vid, is_marker, etag, size))
    return out


def _matches(listed: tuple[str, bool, str, int], entry: Entry) -> bool:
    vid, is_marker, etag, size = listed
    if vid != entry.version_id or is_marker != (entry.content is None):
        return False
    return entry.content is None or (etag, size) == (entry.content.etag, entry.content.size)


def _fits(listed: list[tuple[str, bool, str, int]], chain: list[Entry]) -> bool:
    return len(listed) == len(chain) and all(
        _matches(got, want) for got, want in zip(listed, reversed(chain), strict=True)
    )


def check_versions(
    server: RunningServer, client: Any, bucket: str, ledger: VersionLedger, *, read_all: bool
) -> list[str]:
    """Compare every key's versions with the ledger (see the module docstring) and settle the
    ledger to what was found. ``read_all``: GET every version by id, not only the newest."""
    listed = _listed(server, bucket)
    problems = [
        f"{key}: listed but never written" for key in sorted(set(listed) - set(ledger.keys))
    ]
    for key in ledger.keys:
        chain, got = ledger.chains[key], listed.get(key, [])
        pending = ledger.pending.pop(key, None)
        settled = list(chain)
        if _fits(got, chain):
            pass
        elif pending is not None and pending.removes is not None:
            without = [e for e in chain if e.version_id != pending.removes]
            if not _fits(got, without):
                problems.append(f"{key}: versions {got} fit neither {chain} nor {without}")
            settled = without
        elif pending is not None and got and _fits(got[1:], chain):
            vid, is_marker, etag, size = got[0]
            new = pending.adds
            if pending.marker != is_marker or (
                new is not None and (etag, size) != (new.etag, new.size)
            ):
                problems.append(f"{key}: newest {got[0]} is not the operation in flight")
            settled = [*chain, Entry(vid, None if is_marker else new)]
        else:
            problems.append(
                f"{key}: LOST or BROKEN chain: listed {got}, acknowledged (oldest first) "
                f"{[(e.version_id, describe(e.content)) for e in chain]}"
            )
            continue
        ledger.chains[key] = settled
        problems += _read_back(client, bucket, key, settled, read_all)
    return problems


def _read_back(client: Any, bucket: str, key: str, chain: list[Entry], read_all: bool) -> list[str]:
    problems: list[str] = []
    newest = chain[-1] if chain else None
    found, issues = read_key(client, bucket, key)
    problems += issues
    want = newest.content if newest is not None else None
    if found is not None and want is not None:
        if (found.etag, found.size) != (want.etag, want.size):
            problems.append(f"{key}: current is {describe(found)}, the newest is {describe(want)}")
    elif (found is None) != (want is None):
        problems.append(f"{key}: current is {describe(found)}, the newest is {describe(want)}")
    for entry in chain if read_all else []:
        if entry.content is None:
            continue
        try:
            response = client.get_object(Bucket=bucket, Key=key, VersionId=entry.version_id)
            data = response["Body"].read()
        except ClientError as exc:
            problems.append(f"{key} version {entry.version_id}: {exc!r}")
            continue
        if version_of(data, "").md5 != entry.content.md5:
            problems.append(f"{key} version {entry.version_id}: content differs")
    return problems
