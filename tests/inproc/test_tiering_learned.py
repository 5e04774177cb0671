"""The learned policy in the real engine (a real node, real LMDB, an injected clock): the same
decisions as the simulator on the same trace, statistics that survive a restart, and pins and
lifecycle transitions that still win."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratum.cli.tiering import render_classes, render_explanation
from stratum.config import load_config
from stratum.node import Node
from stratum.s3.lifecycle_ops import parse_lifecycle
from stratum.service import lifecycle
from stratum.service.objects import PutOptions
from stratum.tiering.decisions import read_decisions
from stratum.tiering.learned import MIN_EVIDENCE, Learner
from stratum.tiering.policy import LearnedPolicy, SimulatedStratumPolicy, Usage
from stratum.tiering.pricing import DEFAULT_PRICES
from stratum.tiering.simulator import simulate
from stratum.tiering.traces import DAY, HOUR, TraceRow
from stratum.util.clock import ManualClock

START = 1_800_000_000.0  # a whole number of hours: the simulator's rounds fall on the engine's
SIZE = 200_000


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "storage.data_dir": tmp_path / "data",
        "tiers.hot.disks": [tmp_path / f"h{i}" for i in range(3)],
        "tiers.warm.disks": [tmp_path / f"w{i}" for i in range(3)],
        "tiers.hot.data_shards": 2,
        "tiers.hot.parity_shards": 1,
        "tiers.warm.data_shards": 2,
        "tiers.warm.parity_shards": 1,
        "tiering.policy": "learned",
    }


async def _open(tmp_path: Path, clock: ManualClock) -> Node:
    n = Node.open(load_config(overrides=_overrides(tmp_path)), clock)
    n.tiering._capacity = lambda tier: Usage(used=1, capacity=100)  # not the host's fill
    await n.service.start()
    await n.tiering.load_learner()
    return n


async def _close(n: Node) -> None:
    await n.tiering.stop()
    await n.service.stop()
    for tier in n.tiers.values():
        await tier.close()
    n.close()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await _open(tmp_path, ManualClock(START))
    await n.service.create_bucket("b", "owner", "us-east-1")
    yield n
    await _close(n)


def _clock(node: Node) -> ManualClock:
    assert isinstance(node.clock, ManualClock)
    return node.clock


def _trace() -> list[TraceRow]:
    """Log files of one class: each read once 5 minutes after its write, then deleted (every
    third one replaced first) a day later: after 8 such ends the class says "not read again
    after its read", and the later files go to warm at the first round after their read.
    Beside them a document read every 3 hours (another class, too little evidence to learn
    beyond its idle time: the fixed rules keep it hot)."""
    rows: list[TraceRow] = [TraceRow(START, "PUT", "b", "docs/report.odt", SIZE)]
    for index in range(14):
        t = START + index * 6 * HOUR
        key = f"logs/day-{index:03d}.log"
        rows += [TraceRow(t, "PUT", "b", key, SIZE), TraceRow(t + 300, "GET", "b", key, SIZE)]
        if index % 3 == 0:
            rows.append(TraceRow(t + DAY - 600, "PUT", "b", key, SIZE))  # replaced
        rows.append(TraceRow(t + DAY, "DELETE", "b", key, SIZE))
    rows += [
        TraceRow(START + k * 3 * HOUR + 60, "GET", "b", "docs/report.odt", SIZE) for k in range(40)
    ]
    return sorted(rows, key=lambda r: r.time)


async def _replay_on_engine(
    node: Node, rows: list[TraceRow], end: float
) -> list[tuple[float, str, str]]:
    """The trace through the real service and engine: a pass at every whole hour (before the
    requests of that instant, as the simulator's rounds), reads recorded and garbage freed
    at once (the learner hears of them at the request's time). Returns the moves."""
    service, engine, clock = node.service, node.tiering, _clock(node)
    moves: list[tuple[float, str, str]] = []
    live: set[str] = set()
    next_pass = START + HOUR

    def tiers() -> dict[str, str]:
        return {k: service.head_object("b", k, "owner").volume.tier for k in live}

    async def passes_until(t: float) -> None:
        nonlocal next_pass
        while next_pass <= t:
            clock.set(next_pass)
            before = tiers()
            await engine.run_pass()
            after = tiers()
            moves.extend((next_pass, k, after[k]) for k in sorted(after) if after[k] != before[k])
            next_pass += HOUR

    for row in rows:
        await passes_until(row.time)
        clock.set(row.time)
        if row.op == "PUT":
            data = _chunks(os.urandom(row.size))
            await service.put_object("b", row.key, data, PutOptions("owner"))
            live.add(row.key)
        elif row.op == "GET":
            service.record_access(service.head_object("b", row.key, "owner").volume.volume_id)
            await service.flush_access()
        else:
            await service.delete_object("b", row.key, "owner")
            live.discard(row.key)
        await service.collect_garbage()
    await passes_until(end)
    return sorted(moves)


def _simulated(rows: list[TraceRow], end: float) -> tuple[list[tuple[float, str, str]], Learner]:
    config = load_config(None).tiering
    learner = Learner(DEFAULT_PRICES)
    fallback = SimulatedStratumPolicy(config, {"hot", "warm"})
    policy = LearnedPolicy(learner, fallback, config.cold_min_size)
    report = simulate(rows, policy, DEFAULT_PRICES, start=START, end=end)
    return sorted((m.time, m.key, m.target) for m in report.move_log), learner


async def test_the_engine_and_the_simulator_make_the_same_decisions(node: Node) -> None:
    rows = _trace()
    end = START + 5 * DAY
    simulated, sim_learner = _simulated(rows, end)
    moved = await _replay_on_engine(node, rows, end)
    assert moved == simulated
    # the learner moved them within a day of their last request (most at the first round
    # after it), not after the fixed rule's 7 days
    learned = [m for m in moved if m[1].startswith("logs/")]
    assert len(learned) >= 3 and all(target == "warm" for _, _, target in learned)
    waits = [t - max(r.time for r in rows if r.key == k and r.time < t) for t, k, _ in learned]
    assert max(waits) < DAY and sum(w <= HOUR for w in waits) >= 3
    assert node.tiering.learner.table() == sim_learner.table()
    log = node.meta.read(lambda tx: read_decisions(tx, bucket="b", limit=100))
    assert {d["rule"] for d in log} == {"learned"}
    inputs = log[0]["inputs"]
    assert inputs["class"].startswith("b/logs/") and set(inputs["expected_costs"]) == {
        "hot",
        "warm",
    }
    assert inputs["expected_costs"]["warm"] < inputs["expected_costs"]["hot"]


async def _train_logs(node: Node, count: int = 10) -> None:
    """``count`` log files read once soon after their write, deleted a day later."""
    service, clock = node.service, _clock(node)
    for index in range(count):
        key = f"logs/day-{index:03d}.log"
        await service.put_object("b", key, _chunks(os.urandom(SIZE)), PutOptions("owner"))
        clock.advance(300)
        service.record_access(service.head_object("b", key, "owner").volume.volume_id)
        await service.flush_access()
        clock.advance(DAY)
        await service.delete_object("b", key, "owner")
        await service.collect_garbage()


async def test_explain_and_classes_show_the_learned_statistics_and_costs(node: Node) -> None:
    await _train_logs(node)
    await node.service.put_object(
        "b", "logs/day-100.log", _chunks(os.urandom(SIZE)), PutOptions("owner")
    )
    _clock(node).advance(HOUR)
    explained = node.tiering.explain("b", "logs/day-100.log")
    learned = explained["learned"]
    assert learned["policy"] == "learned"
    assert learned["gaps"]["class"] == "b/logs/ 65536B+ put"
    assert 15 < learned["gaps"]["evidence"] < 20  # 10 reads and 10 ends, decayed over 10 days
    assert learned["gaps"]["reread_ratio"] == pytest.approx(0.5, abs=0.01)
    assert learned["gaps"]["evidence_beyond_idle"] >= MIN_EVIDENCE
    assert learned["expected_costs"]["warm"] < learned["expected_costs"]["hot"]
    assert learned["decision"] == "-> warm"
    assert explained["pending"]["rule"] == "learned"
    classes = node.tiering.classes(10)
    assert classes["count"] == 1 and classes["classes"][0]["class"] == "b/logs/ 65536B+ put"
    # docs/tiering.md shows this very object and class table
    assert _doc_example("stratum explain b/logs/day-100.log") == render_explanation(explained)
    assert _doc_example("stratum tier classes") == render_classes(classes)
    # reads learned since are in the next explanation (no answer is kept between passes):
    # objects of the class read again 2 hours after their previous read, many times: at an
    # hour idle it is likely read again soon, and stays hot
    now = _clock(node).now()
    for _ in range(60):
        node.tiering.learner.reads(learned["gaps"]["class"], now - 2 * HOUR, 1, now)
    again = node.tiering.explain("b", "logs/day-100.log")["learned"]
    assert again["expected_costs"]["hot"] < again["expected_costs"]["warm"]
    assert again["decision"] == "stay"
    # a class never seen: its bucket's objects of its size band decide for it
    await node.service.put_object("b", "new/x", _chunks(b"x" * SIZE), PutOptions("owner"))
    related = node.tiering.explain("b", "new/x")["learned"]
    assert related["gaps"]["decided_by"] == "b/* 65536B+"
    assert related["expected_costs"] is not None
    # in a bucket never seen: the fixed rules decide, and explain says so
    await node.service.create_bucket("c", "owner", "us-east-1")
    await node.service.put_object("c", "new/x", _chunks(b"x" * SIZE), PutOptions("owner"))
    fresh = node.tiering.explain("c", "new/x")["learned"]
    assert fresh["gaps"]["decided_by"] is None
    assert fresh["expected_costs"] is None and fresh["decision"].startswith("too little evidence")


def _doc_example(command: str) -> str:
    text = (Path(__file__).parents[2] / "docs" / "tiering.md").read_text()
    start = text.index(f"$ {command}\n") + len(command) + 3
    return text[start : text.index("\n```", start)]


async def test_a_restart_keeps_what_was_learned(tmp_path: Path) -> None:
    first = await _open(tmp_path, ManualClock(START))
    await first.service.create_bucket("b", "owner", "us-east-1")
    await _train_logs(first)
    await first.tiering.run_pass()
    table = first.tiering.learner.table()
    last_round = first.tiering.learner.last_round
    assert table and table[0]["evidence"] > 0 and last_round is not None
    await _close(first)  # the engine's stop() saves
    again = await _open(tmp_path, ManualClock(START + 30 * DAY))
    try:
        assert again.tiering.learner.table() == table
        assert again.tiering.learner.last_round == last_round
    finally:
        await _close(again)


async def test_pins_and_lifecycle_transitions_win_over_the_learned_policy(node: Node) -> None:
    """A class read every 10 minutes: the learner keeps it hot; a lifecycle transition still
    moves one of its objects to warm. A class never read again: the learner sends it to warm;
    an object pinned hot stays."""
    service, engine, clock = node.service, node.tiering, _clock(node)
    await _train_logs(node)
    keys = ("busy/a", "busy/b", "logs/pinned.log", "logs/free.log")
    for key in keys:
        sc = "STANDARD" if key == "logs/pinned.log" else ""
        data = _chunks(os.urandom(SIZE))
        await service.put_object("b", key, data, PutOptions("owner", storage_class=sc))
    body = (
        b"<LifecycleConfiguration><Rule><ID>to-warm</ID><Filter><Prefix>busy/a</Prefix>"
        b"</Filter><Status>Enabled</Status><Transition><Days>1</Days>"
        b"<StorageClass>STANDARD_IA</StorageClass></Transition></Rule></LifecycleConfiguration>"
    )
    await service.set_bucket_setting("b", "owner", lifecycle.SETTING, parse_lifecycle(body))
    for _ in range(6 * 24 * 3):  # three days of a read every 10 minutes, a pass every hour
        clock.advance(600)
        for key in ("busy/a", "busy/b"):
            service.record_access(service.head_object("b", key, "owner").volume.volume_id)
        await service.flush_access()
        if round(clock.now()) % 3600 == 0:
            await engine.run_pass()
    tiers = {k: service.head_object("b", k, "owner").volume.tier for k in keys}
    assert tiers == {
        "busy/a": "warm",
        "busy/b": "hot",
        "logs/pinned.log": "hot",
        "logs/free.log": "warm",
    }
    decisions = node.meta.read(lambda tx: read_decisions(tx, bucket="b"))
    assert {d["key"]: d["rule"] for d in decisions} == {
        "busy/a": "pin:lifecycle:to-warm",
        "logs/free.log": "learned",
    }
    assert engine.explain("b", "busy/b")["learned"]["decision"] == "stay"
    assert (
        engine.explain("b", "busy/a")["learned"]["decision"]
        == "-> hot (overridden: pinned by lifecycle:to-warm)"
    )
    pinned = engine.explain("b", "logs/pinned.log")["learned"]
    assert pinned["decision"] == "-> warm (overridden: pinned by object)"
