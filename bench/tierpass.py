"""``python -m bench.tierpass``: what a tiering pass over a large store costs its process.

    python -m bench.tierpass [--objects N] [--policy rules|learned] [--work-dir DIR]

A real node (real LMDB, the engine and policy a server runs; no S3 front end) holds
``--objects`` objects (1,000,000), written straight into its metadata store: records only,
no data, since a pass reads records alone. Their keys fall into 676 directories (so into as
many learned classes), each object last read between 1 and 60 days ago on an injected
clock. The learner is first trained by a pass; then one more pass is measured, with the hot
tier reported at 50 % full so that no watermark moves data and the figures are the walk
and the decisions alone:

* the pass's wall time, volumes looked at per second, and how many it decided to move (the
  moves themselves are not made: the records have no data);
* the event loop: a heartbeat every 10 ms the whole time; the latest it came (p50, p99,
  worst), which is how long a request arriving then would have waited for the loop;
* memory: the process's anonymous resident memory (``RssAnon``) before and at its peak
  during the pass (sampled every 10 ms from a thread), and the learner's class count.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from stratum.config import load_config
from stratum.meta import catalog
from stratum.meta.records import ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.node import Node
from stratum.tiering.policy import Usage
from stratum.util import memory
from stratum.util.clock import ManualClock

DAY = 86400.0
START = 1_800_000_000.0
BATCH = 20_000


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) << 10
    return 0


def _directory(i: int) -> str:
    return f"{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}"


async def _fill(node: Node, count: int, now: float) -> None:
    def write(start: int, tx: Tx) -> None:
        for i in range(start, min(start + BATCH, count)):
            read_at = now - DAY * (1 + i % 60)
            volume = VolumeRecord(
                f"fill{i:012d}", "hot", "seg", {"segment": "none"}, 4096, "0" * 32,
                read_at - DAY, last_access=read_at, access_count=1, bucket="scale",
                key=f"{_directory(i)}/obj-{i:08d}",
            )  # fmt: skip
            catalog.put_volume(tx, volume)
            record = ObjectRecord(volume.key, volume.volume_id, 4096, '"e"', read_at - DAY)
            catalog.put_object(tx, "scale", record)

    for start in range(0, count, BATCH):
        await node.meta.write(functools.partial(write, start))


class _Heartbeat:
    """Lateness of a 10 ms sleep on the loop, each time."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            due = time.perf_counter() + 0.01
            await asyncio.sleep(0.01)
            self.late.append(max(0.0, time.perf_counter() - due))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class _RssPeak:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_anon())

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(objects: int, policy: str, work: Path) -> dict[str, Any]:
    overrides = {
        "storage.data_dir": work / "data",
        "tiers.hot.disks": [work / f"h{i}" for i in range(3)],
        "tiers.warm.disks": [work / f"w{i}" for i in range(3)],
        "tiers.hot.data_shards": 2,
        "tiers.hot.parity_shards": 1,
        "tiers.warm.data_shards": 2,
        "tiers.warm.parity_shards": 1,
        "tiering.policy": policy,
        "tiering.hot_idle_before_warm": "10000d",  # the fixed rules move nothing either
        "tiering.warm_idle_before_cold": "20000d",
    }
    clock = ManualClock(START)
    node = Node.open(load_config(overrides=overrides), clock)
    node.tiering._capacity = lambda tier: Usage(used=50, capacity=100)
    node.tiering._move = _count_only  # type: ignore[method-assign]
    await node.service.start()
    try:
        started = time.perf_counter()
        await _fill(node, objects, START)
        filled = time.perf_counter() - started
        await node.tiering.run_pass()  # trains the learner: every class's idle objects
        clock.advance(3600)
        memory.release()
        before = _rss_anon()
        beat = _Heartbeat()
        beat.start()
        with _RssPeak() as rss:
            started = time.perf_counter()
            report = await node.tiering.run_pass()
            seconds = time.perf_counter() - started
        await beat.stop()
        late = sorted(beat.late)
        return {
            "objects": objects,
            "policy": policy,
            "fill_s": filled,
            "pass_s": seconds,
            "volumes": report.volumes,
            "decided": report.decided,
            "per_s": report.volumes / seconds,
            "late_p50_ms": 1000 * statistics.median(late),
            "late_p99_ms": 1000 * late[int(0.99 * (len(late) - 1))],
            "late_max_ms": 1000 * late[-1],
            "rss_before_mib": before / (1 << 20),
            "rss_peak_mib": rss.peak / (1 << 20),
            "classes": len(node.tiering.learner.table()),
        }
    finally:
        await node.tiering.stop()
        await node.service.stop()
        for tier in node.tiers.values():
            await tier.close()
        node.close()


async def _count_only(_volume: VolumeRecord, _decision: Any, report: Any) -> None:
    report.decided += 1  # the records have no data: the bench measures the decisions only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tierpass", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--policy", default="learned", choices=("rules", "learned"))
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        row = asyncio.run(measure(args.objects, args.policy, Path(work)))
    print(row)
    print(
        f"| {row['objects']:,} | {row['policy']} | {row['pass_s']:.1f} s"
        f" | {row['per_s']:,.0f} | {row['late_p50_ms']:.1f} / {row['late_p99_ms']:.1f}"
        f" / {row['late_max_ms']:.0f} ms | {row['rss_before_mib']:.0f} / {row['rss_peak_mib']:.0f}"
        f" MiB | {row['classes']} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
