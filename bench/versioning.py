"""``python -m bench.versioning``: what versioning costs Stratum.

    python -m bench.versioning [--quick] [--rounds N] [--versions N] [--work-dir DIR]

Two rows, Stratum alone (4+2 over six hot disk directories, as ``python -m bench``):

* **PUT into a versioned bucket vs an unversioned one**: 4 KiB PUTs from 16 clients
  (``bench.loadgen``), new keys and overwrites of 64 keys, into a bucket never versioned and
  one with versioning Enabled, the runs interleaved (plain, versioned, plain, ...) so that
  whatever else the machine does falls on both alike; the medians of ``--rounds`` runs and
  their ratio. The target: within 10 %.
* **ListObjectVersions over one key with many versions**: ``--versions`` PUTs of one key in
  a versioned bucket (empty bodies, 16 clients), then pages of 1,000 versions: the whole
  walk page by page, and pages started at random versions (a marker is one seek), timed on
  the wire (boto3's parsing left out). The server's heap (``RssAnon``) while listing against
  before: the page, not the key's history, sets the memory (its RSS also counts the LMDB
  pages the walk maps in, see :class:`AnonSampler`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.loadgen import EMPTY, Payloads
from bench.servers import start_stratum
from bench.workloads import Clients, ClientStats, Put, Run, make_client, measured, split

KiB = 1024
MiB = 1024 * KiB


def _puts(server: Any, clients: Clients, bucket: str, keys: list[str], seed: int) -> Run:
    payloads = Payloads(4 * KiB, seed=seed)
    ops = [Put(bucket, key, payloads.make()) for key in keys]
    return measured(server, lambda: clients.run(split(ops, 16)))  # type: ignore[arg-type]


def put_rows(server: Any, clients: Clients, admin: Any, rounds: int, count: int) -> dict[str, Any]:
    admin.create_bucket(Bucket="plain")
    admin.create_bucket(Bucket="versioned")
    admin.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    seq = itertools.count()
    runs: dict[str, list[Run]] = {}
    for round_no in range(rounds):
        for shape in ("new", "overwrite"):
            for bucket in ("plain", "versioned"):
                if shape == "new":
                    keys = [f"n/{next(seq):08d}" for _ in range(count)]
                else:
                    keys = [f"o/{i % 64:02d}" for i in range(count)]
                run = _puts(server, clients, bucket, keys, seed=round_no)
                runs.setdefault(f"{shape} {bucket}", []).append(run)
                print(
                    f"  round {round_no}: {shape:9} keys, {bucket:9} {run.ops_per_s:7.0f} ops/s"
                    f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                    f"  errors {run.errors}  others {run.others_cpu:4.0%} CPU",
                    flush=True,
                )
    return {name: medians(found) for name, found in runs.items()}


def medians(found: list[Run]) -> dict[str, Any]:
    """One row of interleaved runs: the medians of the runs, and all their errors."""
    return {
        "ops_per_s": statistics.median(r.ops_per_s for r in found),
        "p50_ms": statistics.median(r.p50_ms for r in found),
        "p99_ms": statistics.median(r.p99_ms for r in found),
        "server_cpu_ms_per_op": statistics.median(
            r.server_cpu_s / r.ops * 1000 for r in found if r.ops
        ),
        "errors": sum(r.errors for r in found),
    }


def list_rows(server: Any, clients: Clients, admin: Any, versions: int) -> dict[str, Any]:
    admin.create_bucket(Bucket="history")
    admin.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
    counter = itertools.count()
    errors: list[str] = []

    async def put(index: int) -> None:
        conn = clients.conns[index]
        while next(counter) < versions:
            try:
                await conn.put("history", "one-key", EMPTY)
            except Exception as exc:
                errors.append(repr(exc))

    async def fill() -> None:
        await asyncio.gather(*(put(n) for n in range(16)))

    start = time.perf_counter()
    clients.loop.run_until_complete(fill())
    filled = time.perf_counter() - start
    print(f"  {versions:,} versions of one key in {filled:.0f} s, errors {len(errors)}", flush=True)
    idle = measured(server, lambda: [_pause(2.0)])

    def walk() -> list[ClientStats]:
        stats = ClientStats()
        marker: dict[str, str] = {}
        while True:
            page = admin.list_object_versions(Bucket="history", MaxKeys=1000, **marker)
            stats.latencies.append(_wire(admin))
            stats.ops += len(page.get("Versions", []))
            ids.extend(v["VersionId"] for v in page.get("Versions", []))
            if not page["IsTruncated"]:
                return [stats]
            marker = {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page["NextVersionIdMarker"],
            }

    ids: list[str] = []
    before = AnonSampler(server).now()
    with AnonSampler(server) as anon:
        whole = measured(server, walk)
    rng = random.Random(7)

    def jumps() -> list[ClientStats]:
        stats = ClientStats()
        for _ in range(50):
            vid = rng.choice(ids)
            page = admin.list_object_versions(
                Bucket="history", MaxKeys=1000, KeyMarker="one-key", VersionIdMarker=vid
            )
            stats.latencies.append(_wire(admin))
            stats.ops += len(page.get("Versions", []))
        return [stats]

    jumped = measured(server, jumps)
    return {
        "versions": versions,
        "listed": len(ids),
        "fill_s": filled,
        "fill_errors": len(errors),
        "walk_s": whole.wall,
        "walk_page_p50_ms": whole.p50_ms,
        "walk_page_p99_ms": whole.p99_ms,
        "jump_page_p50_ms": jumped.p50_ms,
        "jump_page_p99_ms": jumped.p99_ms,
        "anon_before_mib": before / MiB,
        "anon_walk_peak_mib": anon.peak / MiB,
        "rss_idle_mib": idle.rss_peak / MiB,
        "rss_walk_peak_mib": whole.rss_peak / MiB,
        "rss_jumps_peak_mib": jumped.rss_peak / MiB,
    }


class AnonSampler:
    """The peak of the server's anonymous memory (``RssAnon``: heap, stacks) while sampling.

    The server's RSS also counts the pages of LMDB's memory map a walk touches (``RssFile``,
    the page cache mapped in): hundreds of MiB for a key of 100,000 versions, shared with the
    kernel's cache and given back under pressure, so not what a page costs in memory."""

    def __init__(self, server: Any) -> None:
        self.pids = list(server.pids())
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("RssAnon:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> AnonSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wire(client: Any) -> float:
    """The last request's time on the wire, without boto3's parsing of the reply (which
    spends about a second of client CPU on 1,000 versions here)."""
    stamps = client.bench_stamps
    return float(stamps["received"] - stamps["sent"])


def _pause(seconds: float) -> ClientStats:
    time.sleep(seconds)
    return ClientStats()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versioning", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved PUT rounds (5)")
    parser.add_argument("--puts", type=int, default=3200, help="PUTs per run (3200)")
    parser.add_argument("--versions", type=int, default=100_000, help="versions of one key")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.puts, args.versions = 1, 400, 3000
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        server = start_stratum(Path(tmp))
        clients = Clients(server, 16)
        admin = make_client(server)
        try:
            print("PUT, 4 KiB, 16 clients: never-versioned vs versioned bucket", flush=True)
            puts = put_rows(server, clients, admin, args.rounds, args.puts)
            print("ListObjectVersions over one key", flush=True)
            listing = list_rows(server, clients, admin, args.versions)
        finally:
            clients.close()
            admin.close()
            server.stop()
    print()
    for shape in ("new", "overwrite"):
        plain, versioned = puts[f"{shape} plain"], puts[f"{shape} versioned"]
        ratio = versioned["ops_per_s"] / plain["ops_per_s"] if plain["ops_per_s"] else 0.0
        print(
            f"4 KiB PUT, 16 clients, {shape} keys: plain {plain['ops_per_s']:.0f} ops/s "
            f"(p50 {plain['p50_ms']:.2f} ms, {plain['server_cpu_ms_per_op']:.3f} ms CPU/op), "
            f"versioned {versioned['ops_per_s']:.0f} ops/s (p50 {versioned['p50_ms']:.2f} ms, "
            f"{versioned['server_cpu_ms_per_op']:.3f} ms CPU/op): {ratio:.1%}"
        )
    print(
        f"ListObjectVersions, one key of {listing['versions']:,} versions, 1,000 a page: "
        f"whole walk {listing['walk_s']:.1f} s ({listing['listed']:,} listed), page p50 "
        f"{listing['walk_page_p50_ms']:.1f} ms p99 {listing['walk_page_p99_ms']:.1f} ms; from "
        f"a random marker p50 {listing['jump_page_p50_ms']:.1f} ms p99 "
        f"{listing['jump_page_p99_ms']:.1f} ms; server heap (RssAnon) "
        f"{listing['anon_before_mib']:.0f} MiB before the walk, peak "
        f"{listing['anon_walk_peak_mib']:.0f} MiB during it; RSS with LMDB's mapped pages "
        f"{listing['rss_idle_mib']:.0f} MiB idle, {listing['rss_walk_peak_mib']:.0f} MiB "
        f"walking, {listing['rss_jumps_peak_mib']:.0f} MiB jumping (fill "
        f"{listing['fill_s']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
