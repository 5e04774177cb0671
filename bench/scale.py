"""``python -m bench.scale``: what the number of objects costs a serving Stratum.

    python -m bench.scale [--objects N] [--quick] [--work-dir DIR]

Issue 22 asks that memory not grow with the number of objects, that start-up stay under 5 s,
and that PUT and GET rates at 10,000,000 objects stay within 20 % of an empty store's, LIST
of 1,000 keys unchanged. This measures each on the same server setup as ``python -m bench``
(default ``server.workers``, 4+2 over six hot disk directories), first with an empty store,
then with ``--objects`` more (1,000,000 by default; 10,000,000 is the long run):

* **the fill** writes the records straight into the stopped server's metadata store, 20,000
  per transaction: each a real object (a key, its volume record and its object record) whose
  data is one 1,000-byte object PUT through S3 beforehand: every key reads back, all as the
  same bytes. That is honest for what is measured here (metadata of every size, the passes
  over it, the map) and not for the data's disk space, which is one record's;
* **start-up**: from ``stratum serve`` to its "serving S3" line, and to the first GET;
* **memory**: anonymous resident memory (``RssAnon``: heap, stacks) summed over the
  server's processes, idle for 10 s after start and at its peak during the PUTs and GETs;
  LMDB's mapped pages are page cache (``RssFile``), reported apart;
* **rates**: 3,200 4 KiB PUTs of new keys and 3,200 GETs of 256 objects from 16 clients
  (``bench.loadgen``), and 20 LISTs of 1,000 keys (wire time, p50).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Payloads
from bench.procstat import _sum_kib, process_tree
from bench.servers import Server, start_stratum
from bench.workloads import Clients, Get, List, Put, make_client, run_lists, run_ops, split
from stratum.meta import catalog
from stratum.meta.records import ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx

KiB, MiB = 1024, 1 << 20
BUCKET = "scale"
BATCH = 20_000


def _anon(server: Server) -> int:
    return _sum_kib(process_tree(server.pids()), "status", "RssAnon:")


def _file(server: Server) -> int:
    return _sum_kib(process_tree(server.pids()), "status", "RssFile:")


def _start(work: Path, storage: str = "") -> tuple[Server, float]:
    log = work / "stratum.log"
    if log.exists():
        log.unlink()  # start_stratum reads the endpoint from the log
    started = time.perf_counter()
    server = start_stratum(work, storage=storage)
    return server, time.perf_counter() - started


def _fill(data_dir: Path, first: int, count: int) -> float:
    """Write ``count`` objects' records that share the data of ``real`` (see above)."""
    store = MetaStore(data_dir / "meta")
    store.open()
    started = time.perf_counter()
    try:
        real = store.read(lambda tx: catalog.get_object(tx, BUCKET, "real"))
        assert real is not None
        volume = store.read(lambda tx: catalog.get_volume(tx, real.volume_id))
        assert volume is not None
        now = time.time()
        stamp = f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}"

        def batch(start: int, tx: Tx) -> None:
            for i in range(start, min(start + BATCH, first + count)):
                key = f"fill/{i:09d}"
                vid = f"{stamp}{i:020x}"
                record = VolumeRecord(
                    vid, volume.tier, volume.layout, volume.location, volume.size, volume.md5,
                    now, last_access=now, access_count=1, bucket=BUCKET, key=key,
                )  # fmt: skip
                catalog.put_volume(tx, record)
                obj = ObjectRecord(key, vid, real.size, real.etag, now, owner_id=real.owner_id)
                catalog.put_object(tx, BUCKET, obj)

        for start in range(first, first + count, BATCH):
            store.write_sync(functools.partial(batch, start))
    finally:
        store.close()
    return time.perf_counter() - started


def _measure(server: Server, ready_s: float, label: str, seed: int) -> dict[str, Any]:
    s3 = make_client(server)
    started = time.perf_counter()
    s3.get_object(Bucket=BUCKET, Key="real")["Body"].read()
    first_get = ready_s + time.perf_counter() - started
    time.sleep(10)  # what start-up leaves running (the sweep, a first pass) settles a little
    idle_anon, idle_file = _anon(server), _file(server)
    payloads = Payloads(4 * KiB, seed=seed)
    puts = [Put(BUCKET, f"{label}/{i:05d}", payloads.make()) for i in range(3200)]
    hot = puts[:256]
    clients = Clients(server, 16)
    peak = idle_anon
    try:
        put = run_ops(server, clients, split(puts, 16))  # type: ignore[arg-type]
        peak = max(peak, _anon(server))
        gets = [Get(p.bucket, p.key, p.body) for p in hot] * 12 + [
            Get(p.bucket, p.key, p.body) for p in hot[:128]
        ]
        get = run_ops(server, clients, split(gets, 16))  # type: ignore[arg-type]
        peak = max(peak, _anon(server))
        lists = run_lists(server, s3, [List(BUCKET, f"{label}/0", 1000)] * 20)
    finally:
        clients.close()
        s3.close()
    return {
        "ready_s": ready_s,
        "first_get_s": first_get,
        "anon_idle_mib": idle_anon / MiB,
        "file_idle_mib": idle_file / MiB,
        "anon_peak_mib": max(peak, _anon(server)) / MiB,
        "put_per_s": put.ops_per_s,
        "put_p99_ms": put.p99_ms,
        "get_per_s": get.ops_per_s,
        "get_p99_ms": get.p99_ms,
        "list_p50_ms": lists.p50_ms,
        "errors": put.errors + get.errors + lists.errors,
    }


def run(work: Path, objects: int, storage: str = "") -> list[dict[str, Any]]:
    server, ready = _start(work, storage)
    admin = make_client(server)
    try:
        admin.create_bucket(Bucket=BUCKET)
        admin.put_object(Bucket=BUCKET, Key="real", Body=b"x" * 1000)
    finally:
        admin.close()
    rows = []
    try:
        rows.append({"objects": 0, **_measure(server, ready, "empty", 1)})
    finally:
        server.stop()
    print(f"  empty: {rows[-1]}", flush=True)
    fill_s = _fill(work / "data", 0, objects)
    # allocated blocks: LMDB's file may be longer than what it wrote
    meta_bytes = sum(f.stat().st_blocks * 512 for f in (work / "data" / "meta").iterdir())
    print(f"  {objects:,} objects' records written in {fill_s:.0f} s", flush=True)
    server, ready = _start(work, storage)
    try:
        row = _measure(server, ready, "full", 2)
    finally:
        server.stop()
    rows.append({"objects": objects, "fill_s": fill_s, "meta_bytes": meta_bytes, **row})
    print(f"  {objects:,}: {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 objects")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument(
        "--storage", default="", help="more [storage] settings, TOML lines (\\n between)"
    )
    args = parser.parse_args(argv)
    objects = 100_000 if args.quick else args.objects
    storage = args.storage.replace("\\n", "\n") + ("\n" if args.storage else "")
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        rows = run(Path(tmp), objects, storage)
    empty, full = rows
    print()
    print(
        "| objects | ready | first GET | RssAnon idle / peak | RssFile idle | PUT/s | GET/s |"
        " LIST 1,000 p50 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['objects']:,} | {row['ready_s']:.2f} s | {row['first_get_s']:.2f} s | "
            f"{row['anon_idle_mib']:.0f} / {row['anon_peak_mib']:.0f} MiB | "
            f"{row['file_idle_mib']:.0f} MiB | {row['put_per_s']:,.0f} | {row['get_per_s']:,.0f} | "
            f"{row['list_p50_ms']:.1f} ms |"
        )
    per_object = full["meta_bytes"] / max(1, full["objects"])
    print(
        f"\nLMDB: {full['meta_bytes'] / MiB:,.0f} MiB for {full['objects']:,} objects "
        f"({per_object:.0f} bytes each on disk); PUT at "
        f"{full['objects']:,}: {full['put_per_s'] / empty['put_per_s']:.0%} of empty, GET "
        f"{full['get_per_s'] / empty['get_per_s']:.0%}"
    )
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
