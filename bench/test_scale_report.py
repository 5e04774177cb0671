"""The scale series' table and plot (``bench.scale``): pure functions over measured rows.

Not a benchmark: run with ``.venv/bin/pytest bench/test_scale_report.py``.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from typing import Any

from bench.scale import _count_label, _grid_steps, svg, table

SVG = "{http://www.w3.org/2000/svg}"


def row(objects: int, anon: float, put: float, get: float, **more: Any) -> dict[str, Any]:
    return {
        "objects": objects,
        "ready_s": 0.6,
        "first_get_s": 0.7,
        "anon_idle_mib": anon,
        "anon_peak_mib": anon + 5,
        "file_idle_mib": 25.0,
        "put_per_s": put,
        "get_per_s": get,
        "list_p50_ms": 12.0,
        "errors": 0,
        **more,
    }


def step(objects: int, anon: float, put: float, get: float) -> dict[str, Any]:
    return row(objects, anon, put, get, fill_s=10.0, fill_added=objects, meta_bytes=objects * 1600)


ROWS = [
    row(0, 65, 1000, 3000),
    step(100_000, 70, 1100, 2900),
    step(1_000_000, 75, 900, 3100),
    step(10_000_000, 90, 700, 2000),
]


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in polyline.attrib["points"].split())
    return [(float(x), float(y)) for x, y in pairs]


def test_plot_draws_each_series_over_every_step_in_order() -> None:
    root = ET.fromstring(svg(ROWS))
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 4  # RssAnon idle and peak; PUT/s and GET/s
    for line in lines:
        xs = [x for x, _ in points(line)]
        assert len(xs) == len(ROWS)
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        # a log axis: each decade takes the same width (the empty store one decade left)
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        assert max(gaps) - min(gaps) < 0.5
    idle, peak, put, get = (points(line) for line in lines)
    assert all(p[1] < i[1] for i, p in zip(idle, peak, strict=True))  # higher is further up
    assert put[-1][1] > put[0][1]  # 700/s is drawn below 1,000/s
    assert get[-1][1] > get[-2][1]  # 2,000/s below 3,100/s
    assert root.attrib["width"] == "800"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"empty", "100k", "1M", "10M", "200 MiB"} <= set(texts)


def test_table_gives_each_step_as_a_share_of_the_empty_store() -> None:
    lines = table(ROWS)
    assert len(lines) == 2 + len(ROWS)
    assert "| 0 | - | - |" in lines[2]
    assert "1,000 (100 %)" in lines[2]
    last = lines[-1]
    assert last.startswith("| 10,000,000 | 10 s (1,000,000/s) | 15,259 MiB (1,600 B) |")
    assert "700 (70 %)" in last and "2,000 (67 %)" in last and "12.0 ms (100 %)" in last


def test_labels_and_grid_are_round() -> None:
    assert [_count_label(n) for n in (0, 500, 10_000, 1e6, 2.5e7)] == [
        "0",
        "500",
        "10k",
        "1M",
        "25M",
    ]
    assert [_grid_steps(top) for top in (250, 200, 5000, 2000)] == [5, 4, 5, 4]
