"""The tiering decision log (stratum.tiering.decisions) in a real LMDB store: one object's or
one bucket's decisions are read without walking the others, pruning takes the index along,
and a log written before the index gets one."""

from __future__ import annotations

import functools
import json
from typing import Any

from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.tiering.decisions import (
    MAX_READ,
    append_decision,
    decisions_after,
    index_decisions,
    prune_decisions,
    read_decisions,
)
from stratum.tiering.policy import Decision

T0 = 1_800_000_000.0


class CountingTx(Tx):
    """A real transaction that counts the records it fetches by key."""

    fetched = 0

    def get(self, db: str, key: bytes) -> bytes | None:
        self.fetched += 1
        return super().get(db, key)


def read(store: MetaStore, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    def run(tx: Tx) -> tuple[list[dict[str, Any]], int]:
        counting = CountingTx(tx.txn, tx.dbs)
        return read_decisions(counting, **filters), counting.fetched

    return store.read(run)


def log(store: MetaStore, entries: list[tuple[float, str, str]]) -> None:
    """One decision per (time, bucket, key)."""

    def write(tx: Tx) -> None:
        for at, bucket, key in entries:
            volume = VolumeRecord(f"vol-{key}", "hot", "seg", {}, 1, "", T0, bucket=bucket, key=key)
            append_decision(tx, at, volume, Decision("warm", "idle", {"n": at}), "moved")

    store.write_sync(write)


def test_one_object_and_one_bucket_cost_what_they_return(store: MetaStore) -> None:
    busy = [(T0 + i, "b1", "busy") for i in range(3000)]
    quiet = [(T0 + 1000.5, "b1", "quiet"), (T0 + 2000.5, "b2", "quiet"), (T0 + 5, "b2", "x")]
    log(store, busy + quiet)

    records, fetched = read(store, bucket="b1", key="quiet")
    assert [(r["bucket"], r["key"], r["at"]) for r in records] == [("b1", "quiet", T0 + 1000.5)]
    assert fetched <= 2  # the key's two entries, not the 3,000 of another key

    records, fetched = read(store, key="quiet")  # in every bucket, newest first
    assert [r["at"] for r in records] == [T0 + 2000.5, T0 + 1000.5] and fetched == 2

    records, fetched = read(store, bucket="b2")
    assert [r["key"] for r in records] == ["quiet", "x"] and fetched == 2

    records, _ = read(store, limit=5)
    assert [r["at"] for r in records] == [T0 + i for i in range(2999, 2994, -1)]
    assert len(read(store, limit=10**9)[0]) == MAX_READ


def test_pruning_goes_a_page_at_a_time_and_takes_the_index_along(store: MetaStore) -> None:
    log(store, [(T0 + i, "b", f"k{i % 3}") for i in range(10)])
    prune = functools.partial(prune_decisions, before=T0 + 7, limit=4)
    assert [store.write_sync(prune) for _ in range(3)] == [4, 3, 0]
    assert [r["at"] for r in read(store)[0]] == [T0 + 9, T0 + 8, T0 + 7]
    assert [r["at"] for r in read(store, key="k0")[0]] == [T0 + 9]

    def keys(tx: Tx) -> list[bytes]:
        return [bytes(k) for k, _v in tx.cursor("decisions")]

    # three entries, two index keys each, and no index key left for a pruned entry
    assert len(store.read(keys)) == 3 * 3


def test_a_log_written_before_the_index_is_indexed_a_page_at_a_time(store: MetaStore) -> None:
    def write_unindexed(tx: Tx) -> None:  # layout 1: entries only
        for i in range(5):
            record = {"v": 1, "at": T0 + i, "volume_id": f"v{i}", "bucket": "b", "key": f"k{i % 2}"}
            record |= {
                "from": "hot",
                "to": "warm",
                "rule": "idle",
                "inputs": {},
                "outcome": "moved",
            }
            key = f"{int((T0 + i) * 1000):013x}v{i}{i:08x}".encode()
            tx.put("decisions", key, json.dumps(record).encode())

    store.write_sync(write_unindexed)
    assert read(store, key="k1")[0] == []
    assert len(read(store)[0]) == 5  # unfiltered reads need no index

    done = [store.write_sync(functools.partial(index_decisions, limit=2)) for _ in range(4)]
    assert done == [False, False, True, True]
    assert [r["at"] for r in read(store, key="k1")[0]] == [T0 + 3, T0 + 1]
    assert [r["at"] for r in read(store, bucket="b")[0]] == [T0 + i for i in range(4, -1, -1)]


def test_decisions_after_walks_entries_oldest_first_and_never_the_index(store: MetaStore) -> None:
    log(store, [(T0 + i, "b", f"k{i}") for i in range(5)])

    def after(cursor: bytes) -> list[tuple[bytes, dict[str, Any]]]:
        return store.read(lambda tx: list(decisions_after(tx, cursor)))

    everything = after(b"")
    assert [r["key"] for _k, r in everything] == [f"k{i}" for i in range(5)]
    assert [r["key"] for _k, r in after(everything[2][0])] == ["k3", "k4"]
    assert after(everything[-1][0]) == []
