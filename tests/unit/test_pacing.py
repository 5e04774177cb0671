"""Background walks give way to requests (stratum.util.pacing): the pauses a pacer asks for,
and a real walk over LMDB that pauses while requests arrive and gives the same answer."""

from __future__ import annotations

import asyncio

import pytest

from stratum.console import history
from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.util import pacing
from stratum.util.pacing import LONGEST_PAUSE, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_server_walks_flat_out_and_a_busy_one_a_tenth_of_the_time() -> None:
    clock, requests = Clock(), [0]
    pacer = Pacer(
        busy_share=0.1, requests=lambda: requests[0], monotonic=clock, ledger=pacing.Ledger()
    )
    clock.now += 0.010  # a 10 ms stretch with no request since the pacer began
    assert pacer.due() == 0.0
    pacer.begin()
    clock.now += 0.010
    requests[0] += 3  # requests arrived during this stretch
    assert pacer.due() == pytest.approx(0.090)  # 10 ms of work in every 100
    pacer.begin()
    clock.now += 0.004
    assert pacer.due() == 0.0  # none since: flat out again
    assert pacer.worked == pytest.approx(0.024)


def test_one_long_stretch_never_parks_the_walk_for_long() -> None:
    clock, requests = Clock(), [0]
    pacer = Pacer(
        busy_share=0.1, requests=lambda: requests[0], monotonic=clock, ledger=pacing.Ledger()
    )
    clock.now += 5.0  # a stretch that waited on a slow disk
    requests[0] += 1
    assert pacer.due() == LONGEST_PAUSE


def test_shares_out_of_range_are_refused() -> None:
    for busy, idle in ((0.0, 1.0), (0.5, 0.2), (0.1, 1.5)):
        with pytest.raises(ValueError):
            Pacer(busy_share=busy, idle_share=idle)


def test_requests_the_s3_server_notes_are_what_a_pacer_sees() -> None:
    before = pacing.requests_started()
    pacing.note_request()
    assert pacing.requests_started() == before + 1


async def test_a_pause_on_the_loop_yields_and_counts_what_it_slept() -> None:
    requests = [0]
    pacer = Pacer(busy_share=0.5, requests=lambda: requests[0], ledger=pacing.Ledger())
    requests[0] += 1
    await asyncio.sleep(0.002)  # the stretch: time passes, as work would take it
    slept = await pacer.pause()
    assert slept >= 0.002 * 0.99  # half the time asleep: at least as long as it worked
    assert pacer.slept == slept


def _volumes(tx: Tx) -> None:
    for n in range(50):
        vid = f"v{n:03d}"
        catalog.put_volume(
            tx, VolumeRecord(vid, "hot", "rep", {}, 10, "", 0.0, bucket="b", key=vid)
        )


def test_a_census_paced_under_requests_pauses_and_counts_the_same(store: MetaStore) -> None:
    store.write_sync(_volumes)
    unpaced = history.count(store, page=10)
    requests = [0]

    def busy() -> int:  # a request arrives between every two pages
        requests[0] += 1
        return requests[0]

    pacer = Pacer(busy_share=0.5, requests=busy, ledger=pacing.Ledger())
    paced = history.count(store, page=10, pacer=pacer)
    assert paced == unpaced
    assert paced.tiers["hot"].objects == 50
    assert pacer.slept > 0  # it gave way after each page
    idle = Pacer(busy_share=0.5, requests=lambda: 0)
    assert history.count(store, page=10, pacer=idle) == unpaced
    assert idle.slept == 0.0  # nobody waiting: no pause


def test_forked_processes_count_into_one_shared_page() -> None:
    """A walk in the primary sees the requests its forked workers serve."""
    import os

    saved = (pacing._shared, pacing._slot, pacing._requests)
    try:
        pacing.share_between(3)
        before = pacing.requests_started()
        pacing.note_request()  # the primary's
        children = []
        for index in (1, 2):
            pid = os.fork()
            if pid == 0:  # a worker: count 5 requests into its slot and leave
                pacing.use_slot(index)
                for _ in range(5):
                    pacing.note_request()
                os._exit(0)
            children.append(pid)
        for pid in children:
            assert os.waitpid(pid, 0)[1] == 0
        assert pacing.requests_started() - before == 1 + 5 + 5
    finally:
        pacing._shared, pacing._slot, pacing._requests = saved


def test_walks_share_one_budget_while_requests_arrive() -> None:
    """Three walks at once work a tenth of the time together, not three tenths."""
    clock, requests, ledger = Clock(), [0], pacing.Ledger()

    def busy() -> int:
        requests[0] += 1
        return requests[0]

    walks = [
        Pacer(busy_share=0.1, requests=busy, monotonic=clock, ledger=ledger, longest=60.0)
        for _ in range(3)
    ]
    began, worked = clock.now, 0.0
    wake = [clock.now] * 3
    for _ in range(300):  # each walk: wait for its turn, work 10 ms, ask how long to pause
        turn = min(range(3), key=lambda i: wake[i])
        clock.now = max(clock.now, wake[turn])
        walks[turn].begin()
        clock.now += 0.010
        worked += 0.010
        wake[turn] = clock.now + walks[turn].due()
    assert worked / (clock.now - began) == pytest.approx(0.1, rel=0.15)


def test_one_walk_alone_keeps_its_share() -> None:
    clock, requests, ledger = Clock(), [0], pacing.Ledger()
    pacer = Pacer(busy_share=0.1, requests=lambda: requests[0], monotonic=clock, ledger=ledger)
    for _ in range(5):
        pacer.begin()
        clock.now += 0.010
        requests[0] += 1
        wait = pacer.due()
        assert wait == pytest.approx(0.090)
        clock.now += wait
