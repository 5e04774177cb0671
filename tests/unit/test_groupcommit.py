"""Group commit (stratum.util.groupcommit) with a real writer thread and recorded batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

import stratum.util.groupcommit as groupcommit
from stratum.util.groupcommit import GroupCommit, GroupCommitClosed


class Recorder:
    """Commits by recording each batch; answers each item with ("ok", item)."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.answers: dict[Any, Any] = {}
        self.failed_calls: list[BaseException] = []
        self.hold = threading.Event()  # cleared: the next commit waits until it is set
        self.hold.set()
        self.committing = threading.Event()
        self.failing: set[int] = set()  # numbers (from 1) of the batches whose commit raises

    def commit(self, batch: list[Any]) -> list[Any]:
        self.committing.set()
        self.hold.wait(5)
        self.batches.append(list(batch))
        if len(self.batches) in self.failing:
            raise OSError("disk on fire")
        return [("ok", item) for item in batch]

    def failed(self, exc: BaseException) -> Any:
        self.failed_calls.append(exc)
        return ("failed", str(exc))

    def deliver(self, batch: list[Any], outcomes: Sequence[Any]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            self.answers[item] = outcome


def make(rec: Recorder, **kwargs: Any) -> GroupCommit[Any, Any]:
    kwargs.setdefault("max_items", 100)
    return GroupCommit(rec.commit, rec.failed, rec.deliver, **kwargs)


@contextmanager
def running(gc: GroupCommit[Any, Any]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=gc.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        gc.stop()
        thread.join(5)
        assert not thread.is_alive()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_items_queued_during_a_commit_form_the_next_batch() -> None:
    rec = Recorder()
    gc = make(rec)
    with running(gc):
        rec.hold.clear()
        gc.submit("first")
        assert rec.committing.wait(5)
        for i in range(10):
            gc.submit(i)
        rec.hold.set()
        wait_for(lambda: len(rec.answers) == 11)
    assert rec.batches == [["first"], list(range(10))]
    assert all(rec.answers[i] == ("ok", i) for i in range(10))


def test_batches_stop_growing_at_max_items() -> None:
    rec = Recorder()
    gc = make(rec, max_items=4)
    for i in range(10):
        gc.submit(i)
    gc.stop()
    gc.run()  # everything queued before stop() is committed, then run() returns
    assert [len(b) for b in rec.batches] == [4, 4, 2]
    assert sorted(rec.answers) == list(range(10))


def test_batches_stop_growing_at_max_bytes_the_last_item_may_cross_it() -> None:
    rec = Recorder()
    gc = make(rec, max_bytes=10, size=len)
    for item in ["aaaa", "bbbb", "cccc", "dddd", "e" * 20, "ffff"]:
        gc.submit(item)
    gc.stop()
    gc.run()
    assert rec.batches == [["aaaa", "bbbb", "cccc"], ["dddd", "e" * 20], ["ffff"]]


def test_stop_met_inside_a_batch_commits_what_came_before_it() -> None:
    rec = Recorder()
    gc = make(rec)
    gc.submit("a")
    gc.submit("b")
    gc.stop()
    gc.stop()  # a second stop changes nothing
    gc.run()
    assert rec.batches == [["a", "b"]]
    with pytest.raises(GroupCommitClosed):
        gc.submit("late")


def test_a_failed_commit_answers_every_item_and_the_writer_goes_on() -> None:
    rec = Recorder()
    rec.failing = {1, 2}
    gc = make(rec)
    with running(gc):
        rec.hold.clear()
        gc.submit("block")
        assert rec.committing.wait(5)
        for item in ("x", "y", "z"):  # queued behind "block": the second batch
            gc.submit(item)
        rec.hold.set()
        wait_for(lambda: len(rec.answers) == 4)
        gc.submit("after")
        wait_for(lambda: "after" in rec.answers)
    assert rec.batches == [["block"], ["x", "y", "z"], ["after"]]
    assert [rec.answers[i] for i in ("block", "x", "y", "z")] == [("failed", "disk on fire")] * 4
    assert len(rec.failed_calls) == 2  # once per failed batch, not per item
    assert rec.answers["after"] == ("ok", "after")


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The gather waits of every writer from now on (they still sleep)."""
    sleeps: list[float] = []
    real_time = time

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            real_time.sleep(seconds)  # the real module's: only groupcommit's is patched

    monkeypatch.setattr(groupcommit, "time", Clock())
    return sleeps


def test_a_lone_item_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps = record_sleeps(monkeypatch)
    rec = Recorder()
    siblings = threading.Event()
    gc = make(rec, gather=lambda: 0.002 if siblings.is_set() else 0.0)
    with running(gc):
        for i in range(5):
            gc.submit(i)
            wait_for(lambda i=i: i in rec.answers)
        assert sleeps == []
        siblings.set()
        gc.submit("with siblings")
        wait_for(lambda: "with siblings" in rec.answers)
    assert sleeps == [0.002]


def test_the_gather_wait_lets_a_late_item_join_the_batch() -> None:
    def first_and_late(gather: float) -> list[list[Any]]:
        rec = Recorder()
        gc = make(rec, gather=lambda: gather)
        with running(gc):
            gc.submit("first")
            time.sleep(0.05)  # the writer has taken "first" by now
            gc.submit("late")
            wait_for(lambda: len(rec.answers) == 2)
        return rec.batches

    assert first_and_late(0.0) == [["first"], ["late"]]
    assert first_and_late(0.5) == [["first", "late"]]


def test_max_items_must_be_positive() -> None:
    rec = Recorder()
    with pytest.raises(ValueError):
        make(rec, max_items=0)
