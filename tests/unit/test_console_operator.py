"""The root user's overview and tiers pages, their figures without a server: days until a
tier is full from the growth the history saw, which disks need attention (a disk offline, or
its ZFS pool not ONLINE), the tiers' monthly cost, and the overview as rendered from them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stratum.console.app import templates
from stratum.console.history import TierFigures
from stratum.console.operator import (
    DAY,
    days_until_full,
    growth_per_day,
    least_squares_slope,
    monthly_costs,
    needing_attention,
)
from stratum.tiering.pricing import DEFAULT_PRICES, GB

GiB = 1 << 30


def test_the_slope_is_the_least_squares_line() -> None:
    assert least_squares_slope([(0, 10), (10, 30)]) == pytest.approx(2.0)
    # noise around 5 per second: the line, not the last two points (which give 1)
    points = [(0.0, 0.0), (1.0, 6.0), (2.0, 9.0), (3.0, 16.0), (4.0, 17.0)]
    assert least_squares_slope(points) == pytest.approx(4.4)
    assert least_squares_slope([(0, 5), (1, 3)]) == pytest.approx(-2.0)
    assert least_squares_slope([(7, 1)]) is None  # one sample: no line
    assert least_squares_slope([(7, 1), (7, 9)]) is None  # no time between them


def test_days_until_full_at_the_growth_seen() -> None:
    half_full = TierFigures(used=100 * GiB, total=200 * GiB)
    assert days_until_full(half_full, 10 * GiB) == pytest.approx(10.0)
    assert days_until_full(half_full, 0.0) is None  # not growing
    assert days_until_full(half_full, -GiB) is None  # shrinking
    assert days_until_full(half_full, None) is None  # no growth known yet
    assert days_until_full(TierFigures(used=5), GiB) is None  # capacity unknown (cold)
    over = TierFigures(used=250 * GiB, total=200 * GiB)
    assert days_until_full(over, GiB) == 0.0


def test_growth_per_day_from_the_history_samples() -> None:
    """A tier that gains 2 GiB a day over a week of hourly samples, one that stays put."""
    samples = [
        {
            "at": 1_000_000.0 + hour * 3600,
            "tiers": {"hot": {"used": 50 * GiB + hour * 2 * GiB // 24}, "warm": {"used": GiB}},
        }
        for hour in range(7 * 24)
    ]
    growth = growth_per_day(samples)
    assert growth["hot"] == pytest.approx(2 * GiB, rel=1e-6)
    assert growth["warm"] == pytest.approx(0.0, abs=1e-6)
    assert growth_per_day(samples[:1]) == {}  # one sample: nothing to extrapolate
    # a tier added since (only in the latest samples) gets its own line
    samples[-1]["tiers"]["cold"] = {"used": 0}
    samples[-2]["tiers"]["cold"] = {"used": 0}
    assert growth_per_day(samples)["cold"] == 0.0
    assert DAY == 86400.0


def disk(ident: str, state: str = "online", **backing: Any) -> dict[str, Any]:
    """One disk as the admin API's status lists it."""
    described = {"backing": "directory", "dataset": "", "zpool": "", "health": "ONLINE"}
    return {
        "tier": "hot",
        "path": f"/srv/{ident}",
        "id": ident,
        "state": state,
        "used_bytes": 10 * GiB,
        "free_bytes": 90 * GiB,
        "errors": 0,
        **described,
        **backing,
    }


def test_disks_needing_attention_include_an_unhealthy_pool() -> None:
    zfs = {"backing": "zfs", "dataset": "tank/stratum/d2", "zpool": "tank"}
    disks = [
        disk("d1"),
        disk("d2", **zfs, health="DEGRADED"),  # online, but its pool lost a device
        disk("d3", state="offline: read errors"),
        disk("d4", state="offline: missing", health="UNAVAIL"),  # counted once
        disk("d5", state="rebuilding"),
        disk("d6", **zfs, health="ONLINE"),
        disk("d7", health="-"),  # no health known: not a problem by itself
    ]
    assert needing_attention(disks) == {"d2", "d3", "d4", "d5"}
    assert needing_attention([disk("d1"), disk("d6", **zfs)]) == set()


def test_monthly_costs_include_the_cold_tier() -> None:
    tiers = {
        "cold": TierFigures(objects=10, bytes=2000 * GB),
        "hot": TierFigures(objects=5, bytes=50 * GB),
        "warm": TierFigures(objects=1, bytes=0),
    }
    costs = monthly_costs(tiers, DEFAULT_PRICES)
    assert list(costs) == ["hot", "warm", "cold"]  # the table's order, hot to cold
    assert costs["cold"] == pytest.approx(2000 * DEFAULT_PRICES.storage["cold"])
    assert costs["hot"] == pytest.approx(50 * DEFAULT_PRICES.storage["hot"])
    assert costs["warm"] == 0.0
    assert DEFAULT_PRICES.storage["cold"] > 0


def render_overview(disks: list[dict[str, Any]], days_left: float | None) -> str:
    figures = TierFigures(objects=3, bytes=GiB, raw=GiB * 3 // 2, used=40 * GiB, total=100 * GiB)
    tier = {"name": "hot", "f": figures, "overhead": 1.5, "fill": 0.4, "days_left": days_left}
    problems = needing_attention(disks)
    return templates().get_template("overview.html").render(
        who=None,
        csrf="",
        path="/overview",
        tiers=[tier],
        disks=disks,
        scrub={"running": False, "current": None, "last_pass": None,
               "interval_seconds": 7 * DAY, "rate_bytes_per_second": 50 << 20},
        heal={"queued": 0, "healed": 0},
        healthy=not problems,
        problems=len(problems),
        counted_at=1_000_000.0,
    )  # fmt: skip


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_overview_shows_days_until_full_and_pool_health() -> None:
    zfs = {"backing": "zfs", "dataset": "tank/stratum/d2", "zpool": "tank"}
    healthy = render_overview([disk("d1"), disk("d2", **zfs)], days_left=12.5)
    assert "Healthy: every disk online." in text_of(healthy)
    assert "Full in 12.5 d at the growth seen" in text_of(healthy)
    assert "zfs tank/stratum/d2 (tank) ONLINE" in text_of(healthy)

    degraded = render_overview([disk("d1"), disk("d2", **zfs, health="DEGRADED")], None)
    assert "1 disk(s) need attention" in text_of(degraded)
    assert '<span class="bad">DEGRADED</span>' in degraded
    assert "Not growing" in text_of(degraded)
