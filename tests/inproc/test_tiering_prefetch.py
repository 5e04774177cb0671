"""Group-aware promotion in the real engine (a real node, real LMDB, an injected clock): reads
of an album's photos from warm bring the photos that follow them to hot ahead of their
reads, logged and explained as ``prefetch``; the rules policy never promotes ahead."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.cli.tiering import render_classes
from stratum.config import load_config
from stratum.node import Node
from stratum.service.objects import PutOptions
from stratum.tiering.decisions import read_decisions
from stratum.tiering.policy import Decision
from stratum.tiering.prefetch import RULE
from stratum.util.clock import ManualClock
from tests.inproc.test_tiering_learned import START, _chunks, _clock, _close, _open, _overrides

PHOTOS = [f"library/album/IMG_{i:04d}.jpg" for i in range(20)]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await _open(tmp_path, ManualClock(START))  # policy = "learned"
    await n.service.create_bucket("b", "owner", "us-east-1")
    yield n
    await _close(n)


async def _album_in_warm(node: Node) -> None:
    service = node.service
    for key in [*PHOTOS, "other/readme.txt"]:
        await service.put_object("b", key, _chunks(os.urandom(150_000)), PutOptions("owner"))
        volume = service.head_object("b", key, "owner").volume
        assert await node.tiering.mover.move(volume, Decision("warm", "test", {}))


async def _read(node: Node, key: str) -> None:
    service = node.service
    service.record_access(service.head_object("b", key, "owner").volume.volume_id)
    await service.flush_access()
    if node.tiering._prefetching is not None:
        await node.tiering._prefetching


def _tiers(node: Node) -> dict[str, str]:
    return {k: node.service.head_object("b", k, "owner").volume.tier for k in PHOTOS}


async def test_reads_from_warm_promote_the_photos_that_follow(node: Node) -> None:
    clock = _clock(node)
    await _album_in_warm(node)
    clock.advance(60)
    await _read(node, PHOTOS[0])
    assert set(_tiers(node).values()) == {"warm"}  # one read from warm is not a pattern
    clock.advance(20)
    await _read(node, PHOTOS[1])
    tiers = _tiers(node)
    assert [k for k in PHOTOS if tiers[k] == "hot"] == PHOTOS[2:10]  # the next 8
    assert node.service.head_object("b", "other/readme.txt", "owner").volume.tier == "warm"
    clock.advance(20)
    await _read(node, PHOTOS[2])  # a promoted photo read: the pattern goes on
    tiers = _tiers(node)
    assert [k for k in PHOTOS if tiers[k] == "hot"] == PHOTOS[2:18]
    explained = node.tiering.explain("b", PHOTOS[5])
    assert explained["placed_by"]["rule"] == RULE, explained
    assert explained["placed_by"]["inputs"]["after_read_of"] == PHOTOS[1]
    assert "held in hot" in explained["learned"]["decision"]
    logged = node.meta.read(lambda tx: read_decisions(tx, bucket="b"))
    assert sum(1 for d in logged if d["rule"] == RULE) == 16
    classes = node.tiering.classes(10)["prefetch"]
    assert classes["promoted"] == 16 and classes["used"] == 1
    assert classes["scopes"][0]["scope"] == "b/library/"
    shown = render_classes(node.tiering.classes(10))
    assert "promoted ahead of reads since start: 16, read 1" in shown
    assert "     16.0     1.0  yes        b/library/" in shown
    # a pass right after keeps them hot (held for the read they were promoted for; the two
    # read from warm may go either way, as the class's few gaps say)
    clock.advance(60)
    await node.tiering.run_pass()
    assert [_tiers(node)[k] for k in PHOTOS[2:]] == [tiers[k] for k in PHOTOS[2:]]


async def test_the_rules_policy_does_not_promote_ahead(tmp_path: Path) -> None:
    overrides = {**_overrides(tmp_path), "tiering.policy": "rules"}
    n = Node.open(load_config(overrides=overrides), ManualClock(START))
    await n.service.start()
    try:
        await n.service.create_bucket("b", "owner", "us-east-1")
        assert not n.tiering.prefetcher.enabled
        await _album_in_warm(n)
        for key in PHOTOS[:3]:
            n.clock.advance(20)  # type: ignore[attr-defined]
            await _read(n, key)
        assert set(_tiers(n).values()) == {"warm"}
    finally:
        await _close(n)
