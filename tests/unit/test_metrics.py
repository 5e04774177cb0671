"""Prometheus text rendering (what render() writes parses back to the same figures), and
the volume count behind the per-tier figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.web.observe import (
    LATENCY_BUCKETS,
    Counter,
    Family,
    Histogram,
    RequestMetrics,
    count_volumes,
    maintenance_families,
    move_families,
    render,
)

Labels = tuple[tuple[str, str], ...]
Parsed = dict[str, dict[Labels, float]]


def parse_text(text: str) -> Parsed:
    """A tiny parser of the text format 0.0.4: {sample name: {sorted labels: value}}.

    Also checks the shape: every sample belongs to the family of the last TYPE line.
    """
    out: Parsed = {}
    family = ""
    for line in text.split("\n"):  # the format's only line break (not splitlines')
        if line.startswith("# TYPE "):
            family = line.split()[2]
            continue
        if not line or line.startswith("#"):
            continue
        name, labels, value = _sample(line)
        assert name.startswith(family), (name, family)
        out.setdefault(name, {})[labels] = float(value)
    return out


def _sample(line: str) -> tuple[str, Labels, str]:
    brace = line.find("{")
    if brace < 0:
        name, _, value = line.partition(" ")
        return name, (), value
    labels: list[tuple[str, str]] = []
    i = brace + 1
    while line[i] != "}":
        eq = line.index("=", i)
        key = line[i:eq]
        assert line[eq + 1] == '"'
        i = eq + 2
        chars: list[str] = []
        while line[i] != '"':
            if line[i] == "\\":
                i += 1
                chars.append("\n" if line[i] == "n" else line[i])
            else:
                chars.append(line[i])
            i += 1
        labels.append((key, "".join(chars)))
        i += 1
        if line[i] == ",":
            i += 1
    assert line[i + 1] == " "
    return line[:brace], tuple(sorted(labels)), line[i + 2 :]


def sample(parsed: Parsed, name: str, **labels: str) -> float:
    return parsed[name][tuple(sorted(labels.items()))]


def test_counter_renders_and_increases() -> None:
    counter = Counter("stratum_things_total", "Things.", ("operation", "status"))
    counter.inc("PutObject", "200")
    first = parse_text(render([counter.family()]))
    assert sample(first, "stratum_things_total", operation="PutObject", status="200") == 1
    counter.inc("PutObject", "200", amount=2)
    counter.inc("GetObject", "404")
    second = parse_text(render([counter.family()]))
    assert sample(second, "stratum_things_total", operation="PutObject", status="200") == 3
    assert sample(second, "stratum_things_total", operation="GetObject", status="404") == 1


def test_help_and_type_lines() -> None:
    text = render([Family("x_total", "counter", "Line one\nback\\slash").add(1)])
    assert text.split("\n") == [
        "# HELP x_total Line one\\nback\\\\slash",
        "# TYPE x_total counter",
        "x_total 1",
        "",
    ]


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram("lat_seconds", "Latency.", ("operation",), (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0, 3.0):
        hist.observe(value, "GetObject")
    parsed = parse_text(render([hist.family()]))
    bucket = parsed["lat_seconds_bucket"]
    assert bucket[(("le", "0.1"), ("operation", "GetObject"))] == 2  # le is inclusive
    assert bucket[(("le", "1"), ("operation", "GetObject"))] == 3
    assert bucket[(("le", "+Inf"), ("operation", "GetObject"))] == 5
    assert sample(parsed, "lat_seconds_count", operation="GetObject") == 5
    assert math.isclose(sample(parsed, "lat_seconds_sum", operation="GetObject"), 5.65)


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=50))
def test_histogram_count_and_sum_match_observations(values: list[float]) -> None:
    hist = Histogram("h", "H.", ("op",), LATENCY_BUCKETS)
    for value in values:
        hist.observe(value, "x")
    if not values:
        assert parse_text(render([hist.family()])) == {}
        return
    parsed = parse_text(render([hist.family()]))
    assert sample(parsed, "h_count", op="x") == len(values)
    assert math.isclose(sample(parsed, "h_sum", op="x"), sum(values), rel_tol=1e-9, abs_tol=1e-9)
    counts = [v for k, v in sorted(parsed["h_bucket"].items(), key=lambda kv: _le(kv[0]))]
    assert counts == sorted(counts) and counts[-1] == len(values)


def _le(labels: Labels) -> float:
    return float(dict(labels)["le"].replace("+Inf", "inf"))


@given(st.text(max_size=30))
def test_label_values_round_trip(value: str) -> None:
    text = render([Family("g", "gauge", "G.").add(1.5, disk=value)])
    assert text.count("\n") == 3  # a newline in a value is escaped, not a line break
    assert parse_text(text) == {"g": {(("disk", value),): 1.5}}


def test_numbers() -> None:
    family = Family("n", "gauge", "N.")
    family.add(3.0, k="int").add(0.25, k="float").add(math.inf, k="inf").add(2**60, k="big")
    parsed = parse_text(render([family]))
    assert parsed["n"][(("k", "int"),)] == 3
    assert parsed["n"][(("k", "float"),)] == 0.25
    assert parsed["n"][(("k", "inf"),)] == math.inf
    assert parsed["n"][(("k", "big"),)] == 2**60
    assert 'n{k="int"} 3\n' in render([family])


def test_request_metrics() -> None:
    metrics = RequestMetrics()
    metrics.observe("PutObject", 200, 0.003, 1000, 0)
    metrics.observe("PutObject", 200, 0.2, 500, 0)
    metrics.observe("GetObject", 200, 0.001, 0, 700)
    metrics.observe("GetObject", 404, 0.001, 0, 250)
    parsed = parse_text(render(metrics.families()))
    requests = "stratum_s3_requests_total"
    assert sample(parsed, requests, operation="PutObject", status="200") == 2
    assert sample(parsed, requests, operation="GetObject", status="404") == 1
    latency = "stratum_s3_request_duration_seconds"
    assert sample(parsed, f"{latency}_count", operation="PutObject") == 2
    assert sample(parsed, f"{latency}_bucket", operation="PutObject", le="0.005") == 1
    assert sample(parsed, "stratum_s3_received_bytes_total", operation="PutObject") == 1500
    assert sample(parsed, "stratum_s3_sent_bytes_total", operation="GetObject") == 950


def test_maintenance_families() -> None:
    status = {
        "scrub": {
            "running": True,
            "current": {"volumes": 10, "bytes": 4096, "damaged": 1, "repaired": 1},
            "last_pass": {"volumes": 7, "finished": 1700000000.5, "failures": ["v: x"]},
        },
        "heal": {"queued": 2, "healed": 5},
        "disks": [
            {
                "tier": "hot",
                "path": "/srv/d1",
                "id": "0123456789abcdef",
                "state": "online",
                "used_bytes": 10,
                "free_bytes": 90,
                "errors": 0,
            },
            {
                "tier": "hot",
                "path": "/srv/d2",
                "id": "fedcba9876543210",
                "state": "offline: directory missing",
                "used_bytes": 0,
                "free_bytes": 0,
                "errors": 3,
            },
        ],
    }
    parsed = parse_text(render(maintenance_families(status, show_paths=True)))
    assert sample(parsed, "stratum_scrub_running") == 1
    assert sample(parsed, "stratum_scrub_pass", **{"pass": "current", "figure": "bytes"}) == 4096
    assert sample(parsed, "stratum_scrub_pass", **{"pass": "last", "figure": "volumes"}) == 7
    assert sample(parsed, "stratum_scrub_last_finished_timestamp_seconds") == 1700000000.5
    assert sample(parsed, "stratum_heal_queued") == 2
    assert sample(parsed, "stratum_healed_volumes_total") == 5
    d2 = {"tier": "hot", "disk": "/srv/d2", "id": "fedcba98"}
    assert sample(parsed, "stratum_disk_state", **d2, state="offline") == 1
    assert sample(parsed, "stratum_disk_state", **d2, state="online") == 0
    assert sample(parsed, "stratum_disk_errors_total", **d2) == 3
    d1 = {"tier": "hot", "disk": "/srv/d1", "id": "01234567"}
    assert sample(parsed, "stratum_disk_state", **d1, state="online") == 1
    assert sample(parsed, "stratum_disk_free_bytes", **d1) == 90
    # Without show_paths (a scrape without the metrics token): the ids, never a path.
    text = render(maintenance_families(status))
    assert "/srv/" not in text
    parsed = parse_text(text)
    assert sample(parsed, "stratum_disk_errors_total", tier="hot", id="fedcba98") == 3


@pytest.mark.parametrize("page", [1, 3, 5000])
def test_count_volumes_pages_through_every_volume(tmp_path: Path, page: int) -> None:
    store = MetaStore(tmp_path / "meta")
    store.open()
    try:
        volumes = [
            VolumeRecord(f"v{i:03d}", "hot" if i % 3 else "warm", "seg", {}, i * 10, "", 0.0)
            for i in range(10)
        ]

        def put_all(tx: Tx) -> None:
            for volume in volumes:
                catalog.put_volume(tx, volume)

        store.write_sync(put_all)
        counted = count_volumes(store, page=page)
        expected: dict[str, tuple[int, int]] = {}
        for volume in volumes:
            n, size = expected.get(volume.tier, (0, 0))
            expected[volume.tier] = (n + 1, size + volume.size)
        assert counted == expected == {"hot": (6, 270), "warm": (4, 180)}
    finally:
        store.close()


def test_move_families() -> None:
    moves = {("hot", "warm", "moved"): 3, ("hot", "warm", "failed"): 1, ("warm", "hot", "moved"): 2}
    text = render(move_families(moves, {("hot", "warm"): 300, ("warm", "hot"): 20}))
    assert "# TYPE stratum_tier_moves_total counter" in text
    assert 'stratum_tier_moves_total{from="hot",to="warm",outcome="moved"} 3' in text
    assert 'stratum_tier_moves_total{from="hot",to="warm",outcome="failed"} 1' in text
    assert 'stratum_tier_moved_bytes_total{from="warm",to="hot"} 20' in text


async def test_a_first_scrape_goes_without_tier_counts_a_slow_count_has_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large store's first count, paced behind requests, takes minutes: the first scrape
    must not wait past Prometheus's timeout for it; a later one gets it."""
    import asyncio
    import threading

    from stratum.web import observe

    store = MetaStore(tmp_path / "meta")
    store.open()
    try:
        store.write_sync(
            lambda tx: catalog.put_volume(tx, VolumeRecord("v1", "hot", "seg", {}, 5, "", 0.0))
        )
        release = threading.Event()
        real = observe.count_volumes

        def slow(meta: MetaStore, **kwargs: object) -> dict[str, tuple[int, int]]:
            release.wait(10)  # as a count of ten million volumes would take
            return real(meta)

        monkeypatch.setattr(observe, "count_volumes", slow)
        monkeypatch.setattr(observe, "FIRST_COUNT_WAIT", 0.05)
        totals = observe.TierTotals(store)
        assert await totals.get() == {}  # not waited for
        release.set()
        for _ in range(100):
            if totals.value is not None:
                break
            await asyncio.sleep(0.01)
        assert await totals.get() == {"hot": (1, 5)}
    finally:
        store.close()
