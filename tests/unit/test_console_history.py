"""The console's records in LMDB: the census, the rings of samples, the access history."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from stratum.config import load_config
from stratum.console import accesses, history, whatif
from stratum.console.history import TierFigures
from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.s3.server import FinishedRequest
from stratum.tiering.pricing import DEFAULT_PRICES, Prices
from stratum.tiering.traces import TraceRow
from stratum.util.clock import ManualClock

KiB = 1024


def volume(
    vid: str, tier: str, layout: str, size: int, bucket: str = "b", **location: object
) -> VolumeRecord:
    return VolumeRecord(vid, tier, layout, dict(location), size, "", 0.0, bucket=bucket, key=vid)


def test_raw_bytes_follow_each_layout() -> None:
    ec = {"data_shards": 4, "parity_shards": 2, "block_size": 256 * KiB}
    assert history.raw_bytes(volume("a", "hot", "ec", 4 * 256 * KiB, **ec)) == 6 * 256 * KiB
    # a short last stripe: blocks of ceil(rest / k) bytes, six of them
    assert history.raw_bytes(volume("b", "hot", "ec", 300_000, **ec)) == 6 * 75_000
    assert history.raw_bytes(volume("c", "hot", "seg", 1000, replicas=[1, 2, 3])) == 3000
    assert history.raw_bytes(volume("d", "cold", "cold", 5000)) == 5000
    assert history.raw_bytes(volume("e", "hot", "multi", 5000, parts=[{}, {}])) == 0


def test_census_counts_objects_bytes_and_buckets(store: MetaStore) -> None:
    ec = {"data_shards": 4, "parity_shards": 2, "block_size": 256 * KiB}

    def fill(tx: Tx) -> None:
        catalog.put_volume(tx, volume("v1", "hot", "seg", 100, "photos", replicas=[1, 2, 3]))
        catalog.put_volume(tx, volume("v2", "warm", "ec", 1 << 20, "photos", **ec))
        # a multipart object: its two parts and the object itself, one object in all
        catalog.put_volume(tx, volume("p1", "hot", "ec", 1 << 20, "docs", **ec))
        catalog.put_volume(tx, volume("p2", "hot", "ec", 1 << 20, "docs", **ec))
        catalog.put_volume(tx, volume("m1", "hot", "multi", 2 << 20, "docs", parts=[{}, {}]))

    store.write_sync(fill)
    census = history.count(store, page=2)  # several pages
    hot, warm = census.tiers["hot"], census.tiers["warm"]
    assert (hot.objects, hot.bytes, hot.raw) == (2, 100 + (2 << 20), 300 + 2 * (1536 * KiB))
    assert (warm.objects, warm.bytes, warm.raw) == (1, 1 << 20, 1536 * KiB)
    assert census.buckets == {"photos": (2, 100 + (1 << 20)), "docs": (1, 2 << 20)}


def test_census_stops_at_a_page_when_asked(store: MetaStore) -> None:
    """A server stopping must not wait for a walk of every volume (minutes at millions)."""
    store.write_sync(
        lambda tx: [catalog.put_volume(tx, volume(f"v{n}", "hot", "seg", 1, "b")) for n in range(5)]
    )
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # the first page, then stop

    with pytest.raises(history.CensusStopped):
        history.count(store, page=2, stop=stop)
    assert len(asked) == 2
    assert history.count(store, page=2).tiers["hot"].objects == 5


def test_rings_keep_one_sample_per_step_and_count_moves(store: MetaStore) -> None:
    day = 86400.0
    tiers = {"hot": TierFigures(objects=1, bytes=10, raw=15, used=100, total=1000)}

    def decide(tx: Tx, at: float, source: str, target: str, outcome: str) -> None:
        record = {"v": 1, "at": at, "from": source, "to": target, "outcome": outcome}
        tx.put("decisions", f"{int(at * 1000):013x}x".encode(), json.dumps(record).encode())

    start = 1_800_000_000.0 - 1_800_000_000.0 % day
    for i in range(30):  # a sample every 10 minutes for five hours
        at = start + i * 600
        store.write_sync(lambda tx, at=at: decide(tx, at - 1, "hot", "warm", "moved"))
        store.write_sync(lambda tx, at=at: decide(tx, at - 2, "hot", "warm", "failed"))
        store.write_sync(lambda tx, at=at: history.store_sample(tx, at, tiers))
    minutes = store.read(lambda tx: history.read_ring(tx, "m"))
    hours = store.read(lambda tx: history.read_ring(tx, "h"))
    days = store.read(lambda tx: history.read_ring(tx, "d"))
    assert len(minutes) == 30 and len(hours) == 5 and len(days) == 1
    assert [s["moves"] for s in minutes[:3]] == [{"hot->warm": n} for n in (1, 2, 3)]
    assert minutes[-1]["moves"] == {"hot->warm": 30}  # failed moves are not moves
    assert minutes[-1]["tiers"]["hot"] == {
        "objects": 1,
        "bytes": 10,
        "raw": 15,
        "used": 100,
        "total": 1000,
    }
    since = store.read(lambda tx: history.read_ring(tx, "m", since=start + 6000))
    assert [s["at"] for s in since] == [start + i * 600 for i in range(10, 30)]


def test_a_ring_is_pruned_to_its_length(store: MetaStore) -> None:
    keep = history.RINGS["m"][1]
    tiers = {"hot": TierFigures()}
    for i in range(keep + 7):
        store.write_sync(lambda tx, i=i: history.store_sample(tx, 1000.0 + i, tiers))
    minutes = store.read(lambda tx: history.read_ring(tx, "m"))
    assert len(minutes) == keep and minutes[0]["at"] == 1007.0


def finished(op: str, key: str, status: int = 200, into: int = 0, out: int = 0) -> FinishedRequest:
    return FinishedRequest(op, status, 0.01, into, out, bucket="b", key=key)


async def test_access_history_keeps_the_newest_rows(store: MetaStore) -> None:
    clock = ManualClock(1000.0)
    recorder = accesses.AccessRecorder(store, clock, keep=5)
    for i in range(4):
        recorder.note(finished("PutObject", f"k{i}", into=100 + i))
        clock.advance(1)
    recorder.note(finished("GetObject", "k0", out=100))
    recorder.note(finished("GetObject", "missing", status=404))  # refused: not recorded
    recorder.note(finished("ListObjectsV2", ""))  # not an object request
    recorder.note(finished("UploadPart", "big", into=5 << 20))
    recorder.note(finished("UploadPart", "big", into=1 << 20))
    clock.advance(1)
    recorder.note(finished("CompleteMultipartUpload", "big", into=300))
    recorder.note(finished("DeleteObject", "k1", status=204))
    await recorder.flush()
    rows = accesses.recorded(store)
    assert rows == [
        TraceRow(1002.0, "PUT", "b", "k2", 102),
        TraceRow(1003.0, "PUT", "b", "k3", 103),
        TraceRow(1004.0, "GET", "b", "k0", 100),
        TraceRow(1005.0, "PUT", "b", "big", 6 << 20),
        TraceRow(1005.0, "DELETE", "b", "k1", 0),
    ]


def test_whatif_replays_the_history_with_other_settings() -> None:
    config = load_config(None).tiering
    hour = 3600.0
    rows = [TraceRow(0.0, "PUT", "b", f"k{i}", 10 << 20) for i in range(10)]
    rows += [TraceRow(3 * 86400.0 + i * hour, "GET", "b", f"k{i}", 10 << 20) for i in range(10)]
    proposed = whatif.changed_config(config, {"hot_idle_before_warm": "1d"})
    now, then = whatif.compare(rows, config, proposed, {"hot", "warm"}, DEFAULT_PRICES)
    assert now.hot_hit_ratio == 1.0 and now.moves == 0  # default: hot for 30 days
    assert then.hot_hit_ratio == 0.0 and then.moves_by_path == {"hot->warm": 10}
    assert then.settings["hot_idle_before_warm"] == "1d"
    assert then.cost_per_month < now.cost_per_month  # warm is cheaper per GB
    # The configuration's [prices], not the defaults: ten times the hot price, ten times the cost
    defaults = DEFAULT_PRICES.to_dict()
    storage = {**defaults["storage"], "hot": 10 * defaults["storage"]["hot"]}
    dearer = Prices.from_dict({**defaults, "currency": "CHF", "storage": storage})
    again, _ = whatif.compare(rows, config, proposed, {"hot", "warm"}, dearer)
    assert again.currency == "CHF"
    assert again.cost_per_month == pytest.approx(now.cost_per_month * 10, rel=0.01)
    with pytest.raises(ValueError, match="Hot to warm"):
        whatif.changed_config(config, {"hot_idle_before_warm": "soon"})


def test_a_large_history_is_replayed_by_a_sample_of_its_keys() -> None:
    rows = [TraceRow(float(i), "PUT", "b", f"k{i}", 1000) for i in range(25_000)]
    rows += [TraceRow(30_000.0 + i, "GET", "b", f"k{i}", 1000) for i in range(0, 25_000, 5)]
    kept, n = whatif.sample(rows)
    assert n == 5
    keys = {r.key for r in kept}
    assert 4_000 < len(keys) < 6_000  # about a fifth
    gets = [r for r in kept if r.op == "GET"]
    assert {r.key for r in gets} <= keys and 700 < len(gets) < 1_300  # whole stories
    assert whatif.sample(rows[:5000]) == (rows[:5000], 1)
    config = load_config(None).tiering
    now, _ = whatif.compare(rows, config, config, {"hot", "warm"}, DEFAULT_PRICES)
    assert now.sampled == 5 and now.hot_hit_ratio == 1.0


async def test_a_large_store_is_counted_after_start_and_its_walks_are_paced(
    store: MetaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past QUICK_WALK volumes the first census waits (the figures meanwhile the last stored
    sample's), and a walk never follows the last sooner than WALK_SHARE times its length;
    samples in between keep their cadence with the last walk's counts."""
    monkeypatch.setattr(history, "QUICK_WALK", 3)

    def put(first: int, count: int) -> None:
        def fill(tx: Tx) -> None:
            for i in range(first, first + count):
                catalog.put_volume(tx, volume(f"v{i}", "hot", "seg", 10, replicas=[1]))

        store.write_sync(fill)

    put(0, 5)
    before = {"hot": TierFigures(objects=4, bytes=40)}
    store.write_sync(lambda tx: history.store_sample(tx, at=900.0, tiers=before))
    node = SimpleNamespace(meta=store, clock=ManualClock(1000.0), tiers={})
    census = history.History(node, 3600.0)  # type: ignore[arg-type]
    census.start()
    try:
        assert census.census.tiers["hot"].objects == 4 and census.counted_at == 900.0
        await census.sample()  # within the first minute: no walk
        assert census.census.tiers["hot"].objects == 4
        await census.sample(force=True)
        assert census.census.tiers["hot"].objects == 5 and census.counted_at == 1000.0
        put(5, 2)
        node.clock.advance(300)
        stored = await census.sample()  # the walk was just now: the sample keeps its counts
        assert stored["tiers"]["hot"]["objects"] == 5 and census.counted_at == 1000.0
        census._next_walk = 0.0  # as if WALK_SHARE times the last walk had passed
        await census.sample()
        assert census.census.tiers["hot"].objects == 7 and census.counted_at == 1300.0
    finally:
        await census.stop()
