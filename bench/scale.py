"""``python -m bench.scale``: what the number of objects costs a serving Stratum.

    python -m bench.scale [--objects N | --quick | --series N,N,...] [--work-dir DIR]

Issue 22 asks that memory not grow with the number of objects, that start-up stay under 5 s,
and that PUT and GET rates at 10,000,000 objects stay within 20 % of an empty store's, LIST
of 1,000 keys unchanged. This measures each on the same server setup as ``python -m bench``
(default ``server.workers``, 4+2 over six hot disk directories), first with an empty store,
then with ``--objects`` more (1,000,000 by default; 10,000,000 is the long run), or, with
``--series 100000,1000000,10000000``, the same store filled step by step to each count and
measured after each step, written to ``bench/results/scale.md`` with a plot of memory and
request rates against the number of objects (``scale.svg``, drawn here: no plotting library):

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
import math
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

from bench.__main__ import _data_fs as filesystem
from bench.loadgen import Payloads
from bench.procstat import _sum_kib, machine, process_tree
from bench.report import machine_line
from bench.servers import Server, start_stratum
from bench.workloads import Clients, Get, List, Put, make_client, run_lists, run_ops, split
from stratum.console.charts import _nice_top
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


def _measure(
    server: Server, ready_s: float, label: str, seed: int, settle: float = 10.0
) -> dict[str, Any]:
    s3 = make_client(server)
    started = time.perf_counter()
    s3.get_object(Bucket=BUCKET, Key="real")["Body"].read()
    first_get = ready_s + time.perf_counter() - started
    time.sleep(settle)  # what start-up leaves running (the sweep, a first pass) settles a little
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
        "put_max_ms": put.max_ms,
        "get_max_ms": get.max_ms,
        "list_p50_ms": lists.p50_ms,
        "errors": put.errors + get.errors + lists.errors,
    }


def run(
    work: Path, steps: list[int], storage: str = "", settle: float = 10.0
) -> list[dict[str, Any]]:
    """Measure an empty store, then fill it to each of ``steps`` objects in turn (cumulative:
    each step adds to the last one's records) and measure again after a restart."""
    server, ready = _start(work, storage)
    admin = make_client(server)
    try:
        admin.create_bucket(Bucket=BUCKET)
        admin.put_object(Bucket=BUCKET, Key="real", Body=b"x" * 1000)
    finally:
        admin.close()
    rows = []
    try:
        rows.append({"objects": 0, **_measure(server, ready, "empty", 1, settle)})
    finally:
        server.stop()
    print(f"  empty: {rows[-1]}", flush=True)
    filled = 0
    for seed, objects in enumerate(steps, start=2):
        step_started = time.perf_counter()
        fill_s = _fill(work / "data", filled, objects - filled)
        added, filled = objects - filled, objects
        # allocated blocks: LMDB's file may be longer than what it wrote
        meta_bytes = sum(f.stat().st_blocks * 512 for f in (work / "data" / "meta").iterdir())
        print(f"  {added:,} objects' records written in {fill_s:.0f} s ({objects:,})", flush=True)
        server, ready = _start(work, storage)
        try:
            row = _measure(server, ready, f"at{objects}", seed, settle)
        finally:
            server.stop()
        rows.append(
            {
                "objects": objects,
                "fill_s": fill_s,
                "fill_added": added,
                "meta_bytes": meta_bytes,
                "step_s": time.perf_counter() - step_started,
                **row,
            }
        )
        print(f"  {objects:,}: {rows[-1]}", flush=True)
    return rows


def _share(value: float, empty: float) -> str:
    return f"{value / empty * 100:.0f} %" if empty else "-"


def _slowest(row: dict[str, Any]) -> str:
    if "get_max_ms" not in row:  # a row from before the slowest requests were kept
        return "-"
    return f"{row['put_max_ms']:,.0f} / {row['get_max_ms']:,.0f} ms"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown table of an empty store (the first row) and every fill step after it."""
    empty = rows[0]
    lines = [
        "| objects | fill (records/s) | LMDB on disk (per object) | ready | first GET "
        "| RssAnon idle / peak | RssFile idle | PUT/s (of empty) | GET/s (of empty) "
        "| LIST 1,000 p50 (of empty) | slowest PUT / GET |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["objects"]:
            rate = row["fill_added"] / max(row["fill_s"], 1e-9)
            fill = f"{row['fill_s']:,.0f} s ({rate:,.0f}/s)"
            per_object = row["meta_bytes"] / row["objects"]
            meta = f"{row['meta_bytes'] / MiB:,.0f} MiB ({per_object:,.0f} B)"
        else:
            fill = meta = "-"
        lines.append(
            f"| {row['objects']:,} | {fill} | {meta} | {row['ready_s']:.2f} s "
            f"| {row['first_get_s']:.2f} s "
            f"| {row['anon_idle_mib']:.0f} / {row['anon_peak_mib']:.0f} MiB "
            f"| {row['file_idle_mib']:,.0f} MiB "
            f"| {row['put_per_s']:,.0f} ({_share(row['put_per_s'], empty['put_per_s'])}) "
            f"| {row['get_per_s']:,.0f} ({_share(row['get_per_s'], empty['get_per_s'])}) "
            f"| {row['list_p50_ms']:.1f} ms ({_share(row['list_p50_ms'], empty['list_p50_ms'])}) "
            f"| {_slowest(row)} |"
        )
    return lines


# The plot: two panels side by side, objects on a log axis (the empty store a decade left of
# the first step), drawn as plain SVG: no plotting library is a dependency of the project.
PANEL_W, PANEL_H = 400, 290
PLOT_L, PLOT_R, PLOT_T, PLOT_B = 56, 14, 48, 240
COLOURS = ("#1f6fb4", "#d0412b")
HALO = 'stroke="white" stroke-width="3" paint-order="stroke"'  # a label stays legible over a line


def _count_label(n: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:g}{suffix}"
    return f"{n:g}"


def _grid_steps(top: float) -> int:
    """5 or 4 grid steps up to ``top``, whichever step is a round number (250: five of 50;
    200: four of 50; 5,000: five of 1,000)."""
    for steps in (5, 4):
        step = top / steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        if any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)):
            return steps
    return 4


def _decades(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """The decades the axis spans: the first's tick is where the empty store is drawn."""
    counts = [row["objects"] for row in rows if row["objects"] > 0] or [10]
    return math.floor(math.log10(min(counts))) - 1, math.ceil(math.log10(max(counts)))


def _panel(
    rows: list[dict[str, Any]],
    left: float,
    title: str,
    series: list[tuple[str, str]],
    goals: list[tuple[str, float, str]],
) -> list[str]:
    """One chart: ``series`` are (label, row field), ``goals`` (label, value, colour) dashed."""
    low, high = _decades(rows)
    values = [row[field] for _, field in series for row in rows] + [v for _, v, _ in goals]
    top = _nice_top(max(values) * 1.05)
    steps = _grid_steps(top)
    width = PANEL_W - PLOT_L - PLOT_R

    def x(objects: float) -> float:
        at = math.log10(objects) if objects > 0 else low
        return left + PLOT_L + (at - low) / max(high - low, 1) * width

    def y(value: float) -> float:
        return PLOT_B - value / top * (PLOT_B - PLOT_T)

    out = [f'<text x="{left + PANEL_W / 2:.0f}" y="16" text-anchor="middle" '
           f'font-weight="bold">{escape(title)}</text>']  # fmt: skip
    for i in range(steps + 1):
        value = top * i / steps
        out.append(
            f'<line x1="{left + PLOT_L}" x2="{left + PLOT_L + width}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="#ddd"/><text x="{left + PLOT_L - 4}" '
            f'y="{y(value) + 4:.1f}" text-anchor="end">{value:,.0f}</text>'
        )
    for decade in range(low, high + 1):
        at = x(10**decade if decade > low else 0)
        label = _count_label(10**decade) if decade > low else "empty"
        out.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{PLOT_T}" y2="{PLOT_B}" stroke="#eee"/>'
            f'<text x="{at:.1f}" y="{PLOT_B + 16}" text-anchor="middle">{label}</text>'
        )
    out.append(
        f'<text x="{left + PLOT_L + width / 2:.0f}" y="{PLOT_B + 34}" text-anchor="middle">'
        "objects in the store (log scale)</text>"
    )
    out.extend(
        f'<line x1="{left + PLOT_L}" x2="{left + PLOT_L + width}" y1="{y(value):.1f}" '
        f'y2="{y(value):.1f}" stroke="{colour}" stroke-dasharray="5,4" opacity="0.6"/>'
        for _, value, colour in goals
    )
    for i, ((label, field), colour) in enumerate(zip(series, COLOURS, strict=False)):
        points = " ".join(f"{x(row['objects']):.1f},{y(row[field]):.1f}" for row in rows)
        out.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{points}"/>')  # fmt: skip
        out.extend(
            f'<circle cx="{x(row["objects"]):.1f}" cy="{y(row[field]):.1f}" r="3" fill="{colour}"/>'
            for row in rows
        )
        legend = left + PLOT_L + i * width / 2
        out.append(
            f'<line x1="{legend:.0f}" x2="{legend + 18:.0f}" y1="30" y2="30" stroke="{colour}" '
            f'stroke-width="2"/><text x="{legend + 22:.0f}" y="34">{escape(label)}</text>'
        )
    out.extend(  # the goals' labels last: over the series' lines
        f'<text x="{left + PLOT_L + width - 2}" y="{y(value) - 4:.1f}" text-anchor="end" '
        f'fill="{colour}" {HALO}>{escape(label)}</text>'
        for label, value, colour in goals
    )
    return out


def svg(rows: list[dict[str, Any]]) -> str:
    """Memory (RssAnon idle and peak, MiB) and PUT/GET rates against the number of objects;
    dashed: 200 MiB and 80 % of the empty store's rates (the goals)."""
    empty = rows[0]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * PANEL_W}" height="{PANEL_H}" '
        f'viewBox="0 0 {2 * PANEL_W} {PANEL_H}" font-family="sans-serif" font-size="12">'
        f'<rect width="{2 * PANEL_W}" height="{PANEL_H}" fill="white"/>',
        *_panel(
            rows, 0, "Anonymous memory, all server processes (MiB)",
            [("RssAnon idle", "anon_idle_mib"), ("RssAnon peak", "anon_peak_mib")],
            [("200 MiB", 200.0, "#777")],
        ),
        *_panel(
            rows, PANEL_W, "4 KiB requests per second, 16 clients",
            [("PUT/s", "put_per_s"), ("GET/s", "get_per_s")],
            [("80 % of empty", 0.8 * empty["put_per_s"], COLOURS[0]),
             ("80 % of empty", 0.8 * empty["get_per_s"], COLOURS[1])],
        ),
        "</svg>\n",
    ]  # fmt: skip
    return "\n".join(parts)


def _load() -> str:
    """The time (UTC) and the load averages over 1, 5 and 15 minutes."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{stamp}, load average {', '.join(Path('/proc/loadavg').read_text().split()[:3])}"


def report(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """``bench/results/scale.md``: the run's conditions, the table, the plot, the goals."""
    empty = rows[0]
    lines = [
        "# What the number of objects costs (`python -m bench.scale --series`)",
        "",
        f"Command: `{info['command']}`  ",
        f"Started {info['start']}; ended {info['end']} ({info['seconds'] / 60:,.1f} minutes).  ",
        machine_line(info),
        "",
        "One store, filled step by step (records written straight into the stopped server's "
        "metadata, all sharing one 1,000-byte object's data; each measurement also adds 3,200 "
        "4 KiB objects through S3), restarted and measured after each step: the first GET, "
        "anonymous memory summed over the server's processes (idle "
        f"{info['settle']:g} s after start, peak "
        "during the requests), 3,200 PUTs of new keys and 3,200 GETs from 16 clients, 20 LISTs "
        "of 1,000 keys. The share in brackets is of the empty store's figure.",
        "",
        *table(rows),
        "",
        "![memory and request rates against the number of objects](scale.svg)",
        "",
        "Against the goals (start-up under 5 s; PUT and GET at least 80 % of the empty store's "
        "rate; LIST of 1,000 keys unchanged; anonymous memory within 200 MiB idle and serving):",
        "",
    ]
    lines.extend(
        f"- {row['objects']:,}: ready in {row['ready_s']:.2f} s, "
        f"PUT {_share(row['put_per_s'], empty['put_per_s'])} and "
        f"GET {_share(row['get_per_s'], empty['get_per_s'])} of empty, "
        f"LIST p50 {_share(row['list_p50_ms'], empty['list_p50_ms'])} of empty's time, "
        f"RssAnon {row['anon_idle_mib']:.0f} / {row['anon_peak_mib']:.0f} MiB; "
        f"step (fill, restart, measure) {row['step_s'] / 60:,.1f} minutes"
        for row in rows[1:]
    )
    errors = sum(row["errors"] for row in rows)
    lines += ["", f"Errors: {errors}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 objects")
    parser.add_argument(
        "--series",
        help="fill one store step by step to these counts, e.g. 100000,1000000,10000000, "
        "and write scale.md and scale.svg to --out",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds idle after start before measuring"
    )
    parser.add_argument(
        "--storage", default="", help="more [storage] settings, TOML lines (\\n between)"
    )
    args = parser.parse_args(argv)
    if args.series:
        steps = sorted(int(part.replace("_", "")) for part in args.series.split(","))
    else:
        steps = [100_000 if args.quick else args.objects]
    storage = args.storage.replace("\\n", "\n") + ("\n" if args.storage else "")
    info: dict[str, Any] = {"machine": machine(), "start": _load(), "settle": args.settle}
    started = time.perf_counter()
    print(f"start: {info['start']}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        info["data_fs"] = filesystem(Path(tmp))
        rows = run(Path(tmp), steps, storage, args.settle)
    info.update(end=_load(), seconds=time.perf_counter() - started)
    info["command"] = " ".join(["python -m bench.scale", *(argv or sys.argv[1:])])
    print(f"end: {info['end']}\n")
    print("\n".join(table(rows)))
    if args.series:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.md").write_text(report(rows, info))
        (args.out / "scale.svg").write_text(svg(rows))
        print(f"\nwrote {args.out / 'scale.md'} and {args.out / 'scale.svg'}")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
