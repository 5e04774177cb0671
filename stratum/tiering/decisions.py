"""The tiering decision log: every move the engine made or tried, and why.

Stored in LMDB's ``decisions`` database, layout version 2. One entry per decision (record
format version 1)::

    key    <time in ms, 13 hex digits><volume id><sequence, 8 hex digits>
    value  JSON: {"v": 1, "at": <clock seconds>, "volume_id", "bucket", "key",
                  "from": <tier>, "to": <tier>, "rule", "inputs": {...}, "outcome"}

and two index keys per entry, with empty values, so that one bucket's or one key's
decisions are read without walking the others::

    0xFE "b" <12-byte BLAKE2b of the bucket name, UTF-8> <the entry's key>
    0xFE "k" <12-byte BLAKE2b of the object key, UTF-8>  <the entry's key>

Entry keys start with a hex digit, so they sort before every index key. Layout version 1
had no index: ``0xFD "index"`` marks how far :func:`index_decisions` has indexed such a
log (value: the last entry key indexed), ``0xFD "index" = "done"`` that it is complete.

Keys sort by time, so the log is read newest first and pruned oldest first
(``[tiering] decision_log_keep``). ``stratum tier log`` and ``stratum explain`` read it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

from stratum.meta.records import VolumeRecord
from stratum.meta.store import Tx
from stratum.tiering.policy import Decision

DECISION_VERSION = 1
MAX_READ = 1000  # decisions one read returns at most
_SEQUENCE = itertools.count()
_INDEX = b"\xfe"
_BY_BUCKET = _INDEX + b"b"
_BY_KEY = _INDEX + b"k"
_INDEXED = b"\xfdindex"
_INDEX_DONE = b"done"


def _hashed(prefix: bytes, name: str) -> bytes:
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=12)
    return prefix + digest.digest()


def _index_keys(entry: bytes, record: dict[str, Any]) -> tuple[bytes, bytes]:
    return _hashed(_BY_BUCKET, record["bucket"]) + entry, _hashed(_BY_KEY, record["key"]) + entry


def append_decision(
    tx: Tx, now: float, volume: VolumeRecord, decision: Decision, outcome: str
) -> None:
    record = {
        "v": DECISION_VERSION,
        "at": now,
        "volume_id": volume.volume_id,
        "bucket": volume.bucket,
        "key": volume.key,
        "from": volume.tier,
        "to": decision.target,
        "rule": decision.rule,
        "inputs": decision.inputs,
        "outcome": outcome,
    }
    # time first (the log is read newest first), then a counter: two decisions on one
    # volume in the same millisecond must not overwrite each other
    key = f"{int(now * 1000):013x}{volume.volume_id}{next(_SEQUENCE) & 0xFFFFFFFF:08x}".encode()
    tx.put("decisions", key, json.dumps(record, separators=(",", ":")).encode())
    for index in _index_keys(key, record):
        tx.put("decisions", index, b"")


def prune_decisions(tx: Tx, before: float, limit: int) -> int:
    """Forget up to ``limit`` decisions made before ``before`` (clock seconds), oldest
    first; return how many (fewer than ``limit``: none older is left)."""
    cutoff = f"{int(before * 1000):013x}".encode()
    cur = tx.cursor("decisions")
    stale: list[tuple[bytes, bytes]] = []
    for key, raw in cur:
        if key >= cutoff or len(stale) >= limit:
            break
        stale.append((key, raw))
    for key, raw in stale:
        tx.delete("decisions", key)
        for index in _index_keys(key, json.loads(raw)):
            tx.delete("decisions", index)
    return len(stale)


def decisions_indexed(tx: Tx) -> bool:
    """Whether every entry of the log is indexed (see :func:`index_decisions`)."""
    return tx.get("decisions", _INDEXED) == _INDEX_DONE


def index_decisions(tx: Tx, limit: int) -> bool:
    """Index up to ``limit`` more entries of a log written before the index (layout 1);
    True once the whole log is indexed. Entries written meanwhile are indexed already."""
    if decisions_indexed(tx):
        return True
    mark = tx.get("decisions", _INDEXED)
    cur = tx.cursor("decisions")
    found = cur.set_range(mark + b"\x00") if mark else cur.first()
    last = b""
    count = 0
    while found and cur.key() < _INDEXED and count < limit:
        last = cur.key()
        for index in _index_keys(last, json.loads(cur.value())):
            tx.put("decisions", index, b"")
        count += 1
        found = cur.next()
    tx.put("decisions", _INDEXED, last if count == limit else _INDEX_DONE)
    return count < limit


def read_decisions(
    tx: Tx, *, bucket: str | None = None, key: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest decisions first, optionally for one bucket or object key, at most
    ``limit`` (itself at most :data:`MAX_READ`). Reads about as many entries as it returns."""
    limit = min(limit, MAX_READ)
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    if key is not None:
        entries = _newest_indexed(tx, _hashed(_BY_KEY, key))
    elif bucket is not None:
        entries = _newest_indexed(tx, _hashed(_BY_BUCKET, bucket))
    else:
        entries = _newest_entries(tx)
    for raw in entries:
        record = json.loads(raw)
        if (bucket is None or record["bucket"] == bucket) and (key is None or record["key"] == key):
            out.append(record)
            if len(out) >= limit:
                break
    return out


def decisions_after(tx: Tx, after: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Every decision logged after the entry key ``after`` (b"": from the oldest), oldest
    first, with its entry key (the ``after`` of the next call)."""
    cur = tx.cursor("decisions")
    found = cur.set_range(after + b"\x00") if after else cur.first()
    while found and cur.key() < _INDEXED:
        yield bytes(cur.key()), json.loads(cur.value())
        found = cur.next()


def _newest_entries(tx: Tx) -> Iterator[bytes]:
    cur = tx.cursor("decisions")
    found = cur.prev() if cur.set_range(_INDEXED) else cur.last()
    while found and cur.key() < _INDEXED:
        yield cur.value()
        found = cur.prev()


def _newest_indexed(tx: Tx, prefix: bytes) -> Iterator[bytes]:
    cur = tx.cursor("decisions")
    found = cur.prev() if cur.set_range(prefix + b"\xff") else cur.last()
    while found and cur.key().startswith(prefix):
        raw = tx.get("decisions", cur.key()[len(prefix) :])
        if raw is not None:
            yield raw
        found = cur.prev()
