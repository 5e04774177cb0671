"""bench.report's tables from a results dict: the large objects' CPU per byte."""

from __future__ import annotations

from typing import Any

from bench import report


def _bytes_row(mb_per_s: float, ops_per_s: float, ops: int, cpu_s: float) -> dict[str, Any]:
    median = {"mb_per_s": mb_per_s, "ops_per_s": ops_per_s, "ops": ops, "server_cpu_s": cpu_s}
    return {"title": "64 MiB PUT, 4 clients", "kind": "bytes", "runs": [median], "median": median}


def test_cpu_per_byte_is_the_servers_cpu_over_every_operations_bytes() -> None:
    results: Any = {
        # 4 ops of 67,108,864 bytes at 2 ops/s; 1.342 s of CPU: 5.0 ns per byte
        "Stratum": {"put_64m_c4": _bytes_row(134.217728, 2.0, 4, 1.34217728)},
        "moto": {"put_64m_c4": {**_bytes_row(1, 1, 1, 1), "runs": []}},  # did not run
    }
    lines = report.per_byte_table(results, ["Stratum", "moto"])
    assert lines[2] == "| 64 MiB PUT, 4 clients | 134 | 5.00 | - | - |"


def test_no_large_object_rows_no_table() -> None:
    ops = {"title": "4 KiB PUT", "kind": "ops", "runs": [{}], "median": {}}
    assert report.per_byte_table({"Stratum": {"put_4k_c1": ops}}, ["Stratum"]) == []


def test_pi4_budget_scales_each_pass_by_its_own_published_figure() -> None:
    from bench import cpu_budget

    here = {"md5": 1.4, "sha256": 0.5, "zfec encode": 0.8, "copy": 0.1, "crc32c": 0.05}
    lines = cpu_budget.report(here, put_ns=4.5, get_ns=0.66)
    table = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    # SHA-256 on a Pi 4: 100.5-135 MB/s published, so 7.4-10.0 ns/B
    assert "| sha256 | 0.50 | 7.4-10.0 |" in table["sha256"]
    # one signed stream is held to the Pi's SHA-256 at its slowest: 100.5 MB/s, shown rounded
    stream = table["one stream at most (PUT: its slowest pass; GET: all of it)"]
    assert stream.split(" | ")[1] == "101 MB/s"
    cores = table["Pi 4 cores at 117 MB/s"].split(" | ")[1:]
    low, high = (float(x) for x in cores[0].split(" of ")[0].split("-"))
    assert 0 < low < high  # signed PUT: a range, from the figures' ranges
    assert cores[2].startswith("0.")  # a GET needs under one core
