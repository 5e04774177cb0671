"""The orphan sweep's set of volume ids: the answers of a set, in 8 bytes an id."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.service.idset import IdSet


@given(
    ids=st.lists(st.text(min_size=1, max_size=40), max_size=200),
    others=st.lists(st.text(min_size=1, max_size=40), max_size=50),
)
def test_answers_as_a_set_does(ids: list[str], others: list[str]) -> None:
    live = IdSet(ids).freeze()
    for volume_id in ids:
        assert volume_id in live
    for other in others:
        # 64-bit hashes: a collision among a few hundred ids does not happen in practice
        assert (other in live) == (other in set(ids))
    assert len(live) == len(set(ids))
    assert "" not in live and 5 not in live


def test_asked_only_when_frozen() -> None:
    live = IdSet(["a"])
    with pytest.raises(RuntimeError):
        _ = "a" in live
    live.freeze()
    with pytest.raises(RuntimeError):
        live.add("b")


def test_a_hundred_thousand_ids_take_eight_bytes_each() -> None:
    ids = [uuid.uuid4().hex for _ in range(100_000)]
    tracemalloc.start()
    try:
        live = IdSet(ids).freeze()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert live.nbytes() == 800_000
    # the arrays' spare room, their headers and one bucket sorted at a time: not 10 MB, as a
    # set of the strings would take
    assert peak < 2_000_000, peak
    assert all(volume_id in live for volume_id in ids[:1000])
    assert sum(uuid.uuid4().hex in live for _ in range(1000)) == 0
