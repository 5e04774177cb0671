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
