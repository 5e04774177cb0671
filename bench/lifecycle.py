"""``python -m bench.lifecycle``: what a lifecycle pass costs a serving Stratum.

    python -m bench.lifecycle [--objects N] [--seconds S] [--quick] [--work-dir DIR]

One bucket holds ``--objects`` keys (1,000,000) under a lifecycle rule that makes none of
them due (an Expiration of 100 years), so a pass examines every version and changes nothing:
its cost is the walk. The keys are written straight into the stopped server's metadata
store (records only, no data: the pass reads records alone), besides 256 real 4 KiB objects
that 16 clients GET (``bench.loadgen``) for ``--seconds`` (60):

* with the lifecycle worker off (``[lifecycle] enabled = false``): the idle figures;
* with it on and a pass running the whole time (``interval = 1``; a pass over 1,000,000
  versions at the default ``rate`` of 2,000 a second takes about 500 s).

The row: GET p50/p99 in both, their p99 ratio (target: at most 2x), and the server's peak
RSS and heap (``RssAnon``) in both (target: the pass adds no more than a page's worth).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Payloads
from bench.servers import start_stratum
from bench.versioning import AnonSampler
from bench.workloads import Clients, ClientStats, Get, Put, Run, make_client, measured, split
from stratum.meta import catalog
from stratum.meta.records import ObjectRecord
from stratum.meta.store import MetaStore, Tx

KiB = 1024
MiB = 1024 * KiB
BUCKET = "lifecycle-bench"
HOT = 256
BATCH = 20_000
RULES = {
    "Rules": [
        {
            "ID": "century",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Expiration": {"Days": 36500},
        }
    ]
}


def _fill(data_dir: Path, count: int) -> float:
    """Write ``count`` object records into the stopped server's store; seconds taken."""
    store = MetaStore(data_dir / "meta")
    store.open()
    started = time.perf_counter()
    try:
        now = time.time()

        def batch(first: int, tx: Tx) -> None:
            for i in range(first, min(first + BATCH, count)):
                record = ObjectRecord(
                    key=f"fill/{i:08d}",
                    volume_id=f"bench-{i:08d}",
                    size=4096,
                    etag='"00000000000000000000000000000000"',
                    last_modified=now,
                )
                catalog.put_object(tx, BUCKET, record)

        for first in range(0, count, BATCH):
            store.write_sync(lambda tx, first=first: batch(first, tx))
    finally:
        store.close()
    return time.perf_counter() - started


def _gets(server: Any, clients: Clients, ops: list[Get], seconds: float) -> tuple[Run, int]:
    """Rounds of GETs of the hot objects (16 clients, each object once a round) until
    ``seconds`` have passed; the run and the server's peak heap."""
    plans = split(ops, 16)

    def drive() -> list[ClientStats]:
        stats: list[ClientStats] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stats += clients.run(plans)  # type: ignore[arg-type]
        return stats

    with AnonSampler(server) as anon:
        run = measured(server, drive)
    return run, anon.peak


def run(work: Path, objects: int, seconds: float) -> dict[str, Any]:
    server = start_stratum(work, extra="[lifecycle]\nenabled = false\n")
    payloads = Payloads(4 * KiB, seed=3)
    puts = [Put(BUCKET, f"hot/{i:04d}", payloads.make()) for i in range(HOT)]
    admin = make_client(server)
    clients = Clients(server, 16)
    try:
        admin.create_bucket(Bucket=BUCKET)
        admin.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration=RULES)
        clients.run(split(puts, 16))  # type: ignore[arg-type]
    finally:
        admin.close()
        clients.close()
        server.stop()
    fill_s = _fill(work / "data", objects)
    print(f"  {objects:,} records written in {fill_s:.0f} s", flush=True)
    gets = [Get(p.bucket, p.key, p.body) for p in puts]
    rows: dict[str, Any] = {"objects": objects, "fill_s": fill_s}
    for name, extra in (
        ("idle", "[lifecycle]\nenabled = false\n"),
        ("pass", "[lifecycle]\ninterval = 1\n"),
    ):
        (work / "stratum.log").unlink()  # start_stratum reads the endpoint from the log
        server = start_stratum(work, extra=extra)
        clients = Clients(server, 16)
        try:
            time.sleep(3)  # the pass starts a second after start
            got, heap = _gets(server, clients, gets, seconds)
        finally:
            clients.close()
            server.stop()
        log = (work / "stratum.log").read_text()
        rows[name] = {
            # over the wall time: the per-client rates Run.ops_per_s sums are per round, and
            # this drive runs many rounds (their sum was a multiple of the real rate)
            "ops_per_s": got.wall_ops_per_s,
            "p50_ms": got.p50_ms,
            "p99_ms": got.p99_ms,
            "rss_peak_mib": got.rss_peak / MiB,
            "anon_peak_mib": heap / MiB,
            "errors": got.errors,
            "passes_done": log.count("lifecycle pass done"),
        }
        print(f"  {name}: {rows[name]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.objects, args.seconds = 50_000, 10.0
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        rows = run(Path(tmp), args.objects, args.seconds)
    idle, busy = rows["idle"], rows["pass"]
    ratio = busy["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else 0.0
    print(
        f"\nlifecycle pass over {rows['objects']:,} versions, 4 KiB GET from 16 clients: idle "
        f"{idle['ops_per_s']:.0f} ops/s p50 {idle['p50_ms']:.2f} ms p99 {idle['p99_ms']:.2f} ms; "
        f"during the pass {busy['ops_per_s']:.0f} ops/s p50 {busy['p50_ms']:.2f} ms p99 "
        f"{busy['p99_ms']:.2f} ms ({ratio:.2f}x, target <= 2x: {'PASS' if ratio <= 2 else 'MISS'});"
        f" RSS peak {idle['rss_peak_mib']:.0f} -> {busy['rss_peak_mib']:.0f} MiB, heap "
        f"{idle['anon_peak_mib']:.0f} -> {busy['anon_peak_mib']:.0f} MiB; passes finished "
        f"during the measurement: {busy['passes_done']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
