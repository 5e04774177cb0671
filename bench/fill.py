"""``python -m bench.fill``: a serving Stratum's memory while clients fill a bucket at full speed.

    python -m bench.fill [--objects N] [--work-dir DIR]

The same server setup as ``python -m bench.scale`` (default ``server.workers``, 4+2 over six
hot disk directories). 16 clients (``bench.loadgen``) PUT ``--objects`` (100,000) empty
objects into one bucket, 20,000 at a time; every 0.5 s a thread samples the server's
anonymous resident memory (``RssAnon``: heap, stacks) and its file-backed memory
(``RssFile``: mostly LMDB's mapped pages, which are page cache the kernel can reclaim),
each summed over the server's processes. Printed: the rate and p99 of each 20,000, the
anonymous memory before, at its peak during the fill and 30 s after, and the file-backed
peak.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from bench.loadgen import Body
from bench.scale import BUCKET, MiB, _anon, _file, _start
from bench.workloads import Clients, Put, make_client, run_ops, split

CHUNK = 20_000


def fill(work: Path, objects: int) -> dict[str, float]:
    server, _ready = _start(work)
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket=BUCKET)
        s3.close()
        time.sleep(12)  # what start-up runs settles
        samples: list[tuple[int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append((_anon(server), _file(server)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        before = _anon(server)
        clients = Clients(server, 16)
        started = time.perf_counter()
        try:
            for first in range(0, objects, CHUNK):
                last = min(objects, first + CHUNK)
                puts = [Put(BUCKET, f"fill/{i:08d}", Body.of(b"")) for i in range(first, last)]
                run = run_ops(server, clients, split(puts, 16))  # type: ignore[arg-type]
                print(
                    f"{last:,} PUTs: {run.ops_per_s:,.0f}/s, p99 {run.p99_ms:.0f} ms,"
                    f" {run.errors} errors",
                    flush=True,
                )
        finally:
            clients.close()
        seconds = time.perf_counter() - started
        during = list(samples)
        time.sleep(30)
        stop.set()
        sampler.join()
        return {
            "objects": objects,
            "seconds": seconds,
            "anon_before_mib": before / MiB,
            "anon_peak_mib": max((a for a, _ in during), default=before) / MiB,
            "anon_after_mib": _anon(server) / MiB,
            "file_peak_mib": max((f for _, f in during), default=0) / MiB,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fill", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        row = fill(Path(work), args.objects)
    print(
        f"{row['objects']:,} empty objects in {row['seconds']:.0f} s: RssAnon"
        f" {row['anon_before_mib']:.0f} MiB before, {row['anon_peak_mib']:.0f} at the peak,"
        f" {row['anon_after_mib']:.0f} 30 s after; RssFile peak {row['file_peak_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
