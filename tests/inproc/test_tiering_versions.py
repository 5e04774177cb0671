"""The tier engine and versions: a noncurrent version is a volume of its own, moved down when
idle like any other, and ``explain`` says it is noncurrent and never read."""

from __future__ import annotations

import os

from stratum.meta.records import BucketRecord
from stratum.node import Node
from tests.inproc.test_tiering import DAY, _clock, _get, _put, node  # noqa: F401 - fixture


async def test_noncurrent_versions_move_down_on_their_own(node: Node) -> None:  # noqa: F811
    def enable(record: BucketRecord) -> bool:
        record.versioning = "Enabled"
        return True

    await node.service.configure_bucket("bkt", "owner", enable)
    old, new = os.urandom(300_000), os.urandom(300_000)
    await _put(node, "k", old)
    first = node.service.head_object("bkt", "k", "owner").record.version_id
    await _put(node, "k", new)
    _clock(node).advance(8 * DAY)
    await _get(node, "k")  # the current version is read: it stays hot
    await node.service.flush_access()
    report = await node.tiering.run_pass()
    assert report.moved == 1
    view = node.service.head_object("bkt", "k", "owner", first)
    assert view.volume.tier == "warm"
    assert node.service.head_object("bkt", "k", "owner").volume.tier == "hot"
    chunks = [c async for c in node.service.read_volume(view.volume, 0, view.record.size)]
    assert b"".join(chunks) == old
    explained = node.tiering.explain("bkt", "k", first)
    version = explained["version"]
    assert version["id"] == first and version["current"] is False
    assert version["never_read"] is True and version["noncurrent_since"] is not None
    current = node.tiering.explain("bkt", "k")["version"]
    assert current["current"] is True and current["never_read"] is False
    assert "error" in node.tiering.explain("bkt", "k", "not-an-id")
