"""The tiering decision log: every move the engine made or tried, and why.

Stored in LMDB's ``decisions`` database, one entry per decision (format version 1)::

    key    <time in ms, 13 hex digits><volume id><sequence, 8 hex digits>
    value  JSON: {"v": 1, "at": <clock seconds>, "volume_id", "bucket", "key",
                  "from": <tier>, "to": <tier>, "rule", "inputs": {...}, "outcome"}

Keys sort by time, so the log is read newest first and pruned oldest first
(``[tiering] decision_log_keep``). ``stratum tier log`` and ``stratum explain`` read it.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from stratum.meta.records import VolumeRecord
from stratum.meta.store import Tx
from stratum.tiering.policy import Decision

DECISION_VERSION = 1
_SEQUENCE = itertools.count()


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


def prune_decisions(tx: Tx, before: float) -> None:
    """Forget the decisions made before ``before`` (clock seconds)."""
    cutoff = f"{int(before * 1000):013x}".encode()
    cur = tx.cursor("decisions")
    stale = []
    for key, _raw in cur:
        if bytes(key) >= cutoff:
            break
        stale.append(bytes(key))
    for key in stale:
        tx.delete("decisions", key)


def read_decisions(
    tx: Tx, *, bucket: str | None = None, key: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest decisions first, optionally for one bucket or object."""
    out: list[dict[str, Any]] = []
    cur = tx.cursor("decisions")
    if not cur.last():
        return out
    while True:
        record = json.loads(bytes(cur.value()))
        if (bucket is None or record["bucket"] == bucket) and (key is None or record["key"] == key):
            out.append(record)
            if len(out) >= limit:
                break
        if not cur.prev():
            break
    return out
