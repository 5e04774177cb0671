"""The comparison table, the targets, ``latest.json``/``latest.md`` and the plot."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

Results = dict[str, dict[str, dict[str, Any]]]  # server -> workload id -> Workload.as_dict()


@dataclass(frozen=True)
class Row:
    label: str
    workload: str
    attr: str  # a key of the workload's "median" summary
    unit: str
    higher_is_better: bool
    scale: float = 1.0

    def value(self, results: Results, server: str) -> float | None:
        found = results.get(server, {}).get(self.workload)
        if not found or not found["runs"]:
            return None
        return float(found["median"][self.attr]) / self.scale


def _rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    for wid, label in (
        ("put_4k_c1", "4 KiB PUT, 1 client"),
        ("get_4k_c1", "4 KiB GET, 1 client"),
        ("put_4k_c16", "4 KiB PUT, 16 clients"),
        ("get_4k_c16", "4 KiB GET, 16 clients"),
        ("mixed_4k_c16", "4 KiB 80/20 GET/PUT, 16 clients"),
    ):
        rows.append(Row(f"{label}: ops/s", wid, "ops_per_s", "ops/s", True))
        rows.append(Row(f"{label}: p50", wid, "p50_ms", "ms", False))
        rows.append(Row(f"{label}: p99", wid, "p99_ms", "ms", False))
    for wid, label in (
        ("put_1m_c4", "1 MiB PUT, 4 clients"),
        ("get_1m_c4", "1 MiB GET, 4 clients"),
        ("put_64m_c4", "64 MiB PUT, 4 clients"),
        ("get_64m_c4", "64 MiB GET, 4 clients"),
        ("put_64m_c16", "64 MiB PUT, 16 clients"),
    ):
        rows.append(Row(f"{label}: MB/s", wid, "mb_per_s", "MB/s", True))
    keys = sorted(
        {int(r["list_fill"]["runs"][0]["ops"]) for r in results.values() if r.get("list_fill")}
    )
    of = " / ".join(f"{k:,}" for k in keys) or "?"
    rows += [
        Row(f"LIST 1,000 keys (prefix) from a bucket of {of}: p50", "list_1000", "p50_ms", "ms",
            False),
        Row(f"LIST 1,000 keys (prefix) from a bucket of {of}: p99", "list_1000", "p99_ms", "ms",
            False),
        Row("LIST 1,000 keys incl. boto3 parsing the reply: p50", "list_1000", "e2e_p50_ms", "ms",
            False),
        Row("filling that bucket (PUT of empty objects, 16 clients): ops/s", "list_fill",
            "ops_per_s", "ops/s", True),
        Row("RSS idle after start", "idle_start", "rss_peak", "MiB", False, MiB),
        Row("PSS idle after start", "idle_start", "pss_peak", "MiB", False, MiB),
        Row("peak RSS, 16 clients PUT 64 MiB", "put_64m_c16", "rss_peak", "MiB", False, MiB),
        Row("peak PSS, 16 clients PUT 64 MiB", "put_64m_c16", "pss_peak", "MiB", False, MiB),
        Row("RSS idle after the workloads", "idle_end", "rss_peak", "MiB", False, MiB),
    ]  # fmt: skip
    return rows


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[Results, str], tuple[float | None, bool | None]]
    workload: str = ""  # for a ratio target: also show the server CPU per op ratio
    peer: str = "moto"  # for a ratio target: the peer it compares with


def _ratio_target(wid: str, attr: str, factor: float) -> Callable[..., Any]:
    def check(results: Results, peer: str) -> tuple[float | None, bool | None]:
        ours = results.get("Stratum", {}).get(wid)
        theirs = results.get(peer, {}).get(wid)
        if not ours or not theirs or not theirs["median"][attr]:
            return None, None
        ratio = ours["median"][attr] / theirs["median"][attr]
        clean = not ours["median"]["errors"]
        return ratio, clean and ratio >= factor

    return check


def _cpu_ratio(results: Results, wid: str, peer: str) -> str:
    """How many times more server CPU per operation the peer spends than Stratum."""
    ours = results.get("Stratum", {}).get(wid)
    theirs = results.get(peer, {}).get(wid)
    if not ours or not theirs or not ours["median"]["server_cpu_ms_per_op"]:
        return ""
    ratio = theirs["median"]["server_cpu_ms_per_op"] / ours["median"]["server_cpu_ms_per_op"]
    return f" (server CPU per op: {peer} spends {ratio:.2f}x Stratum's)"


def _limit_target(wid: str, attr: str, limit: float, scale: float = 1.0) -> Callable[..., Any]:
    def check(results: Results, peer: str) -> tuple[float | None, bool | None]:
        ours = results.get("Stratum", {}).get(wid)
        if not ours or not ours["runs"]:
            return None, None
        value = ours["median"][attr] / scale
        return value, not ours["median"]["errors"] and value <= limit

    return check


TARGETS = [
    Target("4 KiB PUT, 1 client >= 4x moto ops/s", _ratio_target("put_4k_c1", "ops_per_s", 4),
           "put_4k_c1"),
    Target("4 KiB PUT, 16 clients >= 4x moto ops/s",
           _ratio_target("put_4k_c16", "ops_per_s", 4), "put_4k_c16"),
    Target("4 KiB PUT, 1 client >= 1.5x radosgw ops/s",
           _ratio_target("put_4k_c1", "ops_per_s", 1.5), "put_4k_c1", "radosgw"),
    Target("4 KiB PUT, 16 clients >= 1.5x radosgw ops/s",
           _ratio_target("put_4k_c16", "ops_per_s", 1.5), "put_4k_c16", "radosgw"),
    Target("4 KiB GET, 1 client >= 6x moto ops/s", _ratio_target("get_4k_c1", "ops_per_s", 6),
           "get_4k_c1"),
    Target("4 KiB GET, 16 clients >= 6x moto ops/s",
           _ratio_target("get_4k_c16", "ops_per_s", 6), "get_4k_c16"),
    Target("64 MiB PUT (4 clients) >= 2x moto MB/s", _ratio_target("put_64m_c4", "mb_per_s", 2),
           "put_64m_c4"),
    Target("64 MiB GET (4 clients) >= 1.5x moto MB/s",
           _ratio_target("get_64m_c4", "mb_per_s", 1.5), "get_64m_c4"),
    Target("peak RSS <= 200 MiB while 16 clients PUT 64 MiB",
           _limit_target("put_64m_c16", "rss_peak", 200, MiB)),
    Target("peak memory (PSS) <= 200 MiB while 16 clients PUT 64 MiB",
           _limit_target("put_64m_c16", "pss_peak", 200, MiB)),
    Target("RSS <= 80 MiB idle (after start)", _limit_target("idle_start", "rss_peak", 80, MiB)),
    Target("memory (PSS) <= 80 MiB idle (after start)",
           _limit_target("idle_start", "pss_peak", 80, MiB)),
    Target("LIST of 1,000 keys <= 20 ms (p50)", _limit_target("list_1000", "p50_ms", 20)),
]  # fmt: skip


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    if unit == "MB/s":
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def table(results: Results, servers: list[str]) -> list[str]:
    """Markdown lines: workload | Stratum | peer | ratio ... (medians of the runs)."""
    peers = [s for s in servers if s != "Stratum"]
    head = ["workload (unit)", "Stratum"]
    for peer in peers:
        head += [peer, f"Stratum/{peer}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in _rows(results):
        ours = row.value(results, "Stratum")
        cells = [f"{row.label} ({row.unit})", _fmt(ours, row.unit) + _flag(results, "Stratum", row)]
        for peer in peers:
            theirs = row.value(results, peer)
            cells += [_fmt(theirs, row.unit) + _flag(results, peer, row), _ratio(ours, theirs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _flag(results: Results, server: str, row: Row) -> str:
    found = results.get(server, {}).get(row.workload)
    return " (errors!)" if found and found["median"]["errors"] else ""


def secondary_table(results: Results, servers: list[str]) -> list[str]:
    """Per workload: peak RSS and server CPU time per operation, for every server."""
    head = ["workload"]
    for server in servers:
        head += [f"{server} peak RSS (MiB)", f"{server} CPU ms/op", "client CPU ms/op",
                 "others' CPU"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order: list[str] = []
    for per in results.values():
        order += [w for w in per if w not in order]
    for wid in order:
        title = next(r[wid]["title"] for r in results.values() if wid in r)
        cells = [title]
        for server in servers:
            found = results.get(server, {}).get(wid)
            if not found or not found["runs"]:
                cells += ["-"] * 4
                continue
            median = found["median"]
            cells.append(f"{median['rss_peak'] / MiB:,.0f}")
            if found["kind"] == "idle":
                cells += ["-", "-", "-"]
                continue
            cells.append(f"{median['server_cpu_ms_per_op']:.2f}")
            cells.append(f"{median['client_cpu_ms_per_op']:.2f}")
            cells.append(f"{median['others_cpu']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_byte_table(results: Results, servers: list[str]) -> list[str]:
    """Large objects: MB/s beside the server's CPU time per byte moved (ns/B, its processes'
    user and system time over the bytes of every operation), for every server."""
    head = ["workload"]
    for server in servers:
        head += [f"{server} MB/s", f"{server} CPU ns/B"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order: list[str] = []
    for per in results.values():
        order += [w for w, found in per.items() if found["kind"] == "bytes" and w not in order]
    for wid in order:
        cells = [next(r[wid]["title"] for r in results.values() if wid in r)]
        for server in servers:
            found = results.get(server, {}).get(wid)
            median = found["median"] if found and found["runs"] else None
            if not median or not median["ops_per_s"] or not median["ops"]:
                cells += ["-", "-"]
                continue
            per_op = median["mb_per_s"] * 1e6 / median["ops_per_s"]  # bytes per operation
            ns_per_byte = median["server_cpu_s"] * 1e9 / (per_op * median["ops"])
            cells += [f"{median['mb_per_s']:,.0f}", f"{ns_per_byte:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if order else []


_SCALING = re.compile(r"^scale_(put|get)_4k_c16_w(\d+)$")


def scaling_table(results: Results) -> list[str]:
    """Stratum's 4 KiB PUT and GET at 16 clients by ``server.workers`` (medians), with the
    speed-up over one worker; a value the server refused shows its note."""
    ours = results.get("Stratum", {})
    counts = sorted({int(m.group(2)) for wid in ours if (m := _SCALING.match(wid))})
    if not counts:
        return []
    lines = [
        "| server.workers | 4 KiB PUT ops/s | PUT p99 (ms) | 4 KiB GET ops/s | GET p99 (ms) "
        "| server CPU ms/op PUT / GET |",
        "|---|---|---|---|---|---|",
    ]
    base = {op: ours.get(f"scale_{op}_4k_c16_w1") for op in ("put", "get")}
    for workers in counts:
        found = {op: ours.get(f"scale_{op}_4k_c16_w{workers}") for op in ("put", "get")}
        if not all(w and w["runs"] for w in found.values()):
            note = next((w["note"] for w in found.values() if w and w["note"]), "no runs")
            lines.append(f"| {workers} | {note} | | | | |")
            continue
        cells = [str(workers)]
        for op in ("put", "get"):
            median = found[op]["median"]  # type: ignore[index]
            one = base[op]
            speedup = ""
            if one and one["runs"] and one["median"]["ops_per_s"] and workers != 1:
                speedup = f" ({median['ops_per_s'] / one['median']['ops_per_s']:.2f}x)"
            cells += [f"{median['ops_per_s']:,.0f}{speedup}", _fmt(median["p99_ms"], "ms")]
        cpu = [found[op]["median"]["server_cpu_ms_per_op"] for op in ("put", "get")]  # type: ignore[index]
        cells.append(f"{cpu[0]:.2f} / {cpu[1]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(results: Results) -> list[str]:
    lines = []
    for target in TARGETS:
        value, ok = target.check(results, target.peer)
        verdict = "n/a " if ok is None else "PASS" if ok else "MISS"
        shown = "-" if value is None else f"{value:.2f}" + ("x" if target.workload else "")
        hint = _cpu_ratio(results, target.workload, target.peer) if target.workload else ""
        lines.append(f"{verdict}  {target.text}: {shown}{hint}")
    return lines


def errors(results: Results) -> list[str]:
    out = []
    for server, per in results.items():
        for wid, found in per.items():
            for i, run in enumerate(found["runs"]):
                if run["errors"]:
                    out.append(f"{server} {wid} run {i + 1}: {run['errors']} errors, first: "
                               f"{run['first_error']}")  # fmt: skip
            if found.get("note", "").startswith("fill failed"):
                out.append(f"{server} {wid}: {found['note']}")
    return out


def machine_line(info: dict[str, Any]) -> str:
    m = info["machine"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"Linux {m['kernel']} ({m['os']}); data on {info['data_fs']}"
    )


def versions_line(info: dict[str, Any]) -> str:
    return "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())


def markdown(info: dict[str, Any], results: Results, servers: list[str]) -> str:
    out = [
        f"# Stratum vs peers ({info['mode']} run, {info['started']})",
        "",
        machine_line(info) + "  ",
        versions_line(info),
        "",
        "Medians of " + str(info["repeats"]) + " runs per row. Ratios above 1 are better for "
        "Stratum in ops/s and MB/s rows, below 1 in ms and MiB rows. One server ran at a time, "
        "on loopback, sharing the cores with the load generator (bench.loadgen: one asyncio "
        "process, one keep-alive connection per client, SigV4-signed requests, path-style).",
        "",
        *table(results, servers),
        "",
        *_scaling_section(results),
        "## Targets",
        "",
        *(f"- {line}" for line in targets(results)),
        "",
        "## Peak RSS and CPU per operation, every workload",
        "",
        "Server CPU: the server's processes; client CPU: the load generator's thread (every "
        "client's requests, user and system time); "
        "others': what the rest of the machine used during the runs, as a share of all cores "
        "(more than a few per cent means the numbers are disturbed).",
        "",
        *secondary_table(results, servers),
        "",
        *_per_byte_section(results, servers),
        "## Setup",
        "",
        *(f"- {name}: {setup}" for name, setup in info["setups"].items()),
        *(f"- {note}" for note in info["notes"]),
    ]
    errs = errors(results)
    if errs:
        out += ["", "## Errors", "", *(f"- {e}" for e in errs)]
    return "\n".join(out) + "\n"


def _per_byte_section(results: Results, servers: list[str]) -> list[str]:
    lines = per_byte_table(results, servers)
    if not lines:
        return []
    return [
        "## Large objects: server CPU per byte",
        "",
        "The server's processes' CPU time (user and system) over the bytes of every operation "
        "of the row, medians of the runs; what a slower CPU would need per byte is this times "
        "its slowdown (docs/benchmarks.md, Raspberry Pi 4).",
        "",
        *lines,
        "",
    ]


def _scaling_section(results: Results) -> list[str]:
    lines = scaling_table(results)
    if not lines:
        return []
    return [
        "## Stratum: ops/s by server.workers",
        "",
        "4 KiB PUT, then GET of the same objects, 16 clients, a fresh server per run "
        "(medians; in brackets: times the ops/s with one worker).",
        "",
        *lines,
        "",
    ]


def plot(results: Results, servers: list[str], path: Path) -> str | None:
    """Throughput by object size, PUT and GET; returns a note if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib cannot be imported (pip install matplotlib into the venv)"
    points = [(4 * 1024, "4k_c16", "4 KiB\n16 clients"), (MiB, "1m_c4", "1 MiB\n4 clients"),
              (64 * MiB, "64m_c4", "64 MiB\n4 clients")]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, op in zip(axes, ("put", "get"), strict=True):
        for server in servers:
            xs, ys = [], []
            for size, suffix, _label in points:
                found = results.get(server, {}).get(f"{op}_{suffix}")
                if found and found["runs"]:
                    xs.append(size)
                    ys.append(found["median"]["mb_per_s"])
            if xs:
                ax.plot(xs, ys, marker="o", label=server)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([p[0] for p in points], [p[2] for p in points])
        ax.set_title(f"{op.upper()} throughput by object size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("MB/s (median of runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def save(
    out_dir: Path, info: dict[str, Any], results: Results, servers: list[str], stem: str
) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    note = plot(results, servers, out_dir / f"{stem}.png")
    if note:
        info["notes"].append(note)
    else:
        written.append(out_dir / f"{stem}.png")
    summary = {
        "info": info,
        "targets": targets(results),
        "results": results,
        "medians": {
            server: {wid: w["median"] for wid, w in per.items()} for server, per in results.items()
        },
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(info, results, servers))
    return [out_dir / f"{stem}.json", out_dir / f"{stem}.md", *written]
