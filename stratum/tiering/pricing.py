"""What storing, reading and moving bytes costs per tier, for the tier simulator.

Figures are per GB (10^9 bytes) and per month (30 days); :data:`DEFAULT_PRICES` are a home
lab's (its comment says where they come from). How the simulator adds them up is in
:mod:`stratum.tiering.simulator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratum.tiering.traces import DAY

MONTH = 30 * DAY
GB = 1e9


@dataclass(frozen=True)
class Prices:
    """What storing and moving bytes costs, per tier. The tiers are the keys of ``storage``,
    fastest first; the first one receives new objects and is "hot" for the hit ratio."""

    storage: Mapping[str, float]  # per GB-month
    egress: Mapping[str, float] = field(default_factory=dict)  # per GB read out of the tier
    get_requests: Mapping[str, float] = field(default_factory=dict)  # per 1000 GETs to it
    put_requests: Mapping[str, float] = field(default_factory=dict)  # per 1000 PUTs to it
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if not self.storage:
            raise ValueError("prices: storage must name at least one tier")
        for table in ("storage", "egress", "get_requests", "put_requests"):
            for tier, price in getattr(self, table).items():
                if tier not in self.storage:
                    raise ValueError(f"prices: {table}.{tier}: not a tier of storage")
                if not isinstance(price, int | float) or not price >= 0:
                    raise ValueError(f"prices: {table}.{tier} must be a number >= 0")

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(self.storage)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prices:
        """From a JSON/TOML-style table: {"storage": {"hot": 0.008, ...}, "egress": {...},
        "get_requests": {...}, "put_requests": {...}, "currency": "EUR"}."""
        known = {"storage", "egress", "get_requests", "put_requests", "currency"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"prices: unknown key {sorted(unknown)[0]!r}")
        tables = {name: dict(data[name]) for name in known - {"currency"} if name in data}
        return cls(**tables, currency=str(data.get("currency", "EUR")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage": dict(self.storage),
            "egress": dict(self.egress),
            "get_requests": dict(self.get_requests),
            "put_requests": dict(self.put_requests),
            "currency": self.currency,
        }


#: A home lab's costs, per GB of object data (erasure coding 4+2 stores 1.5 bytes per byte):
#: hot: NVMe SSDs at ~60 EUR/TB worn out in 3 years, half full on average, x1.5: ~0.005, plus
#: power and spare capacity: 0.008 EUR/GB-month. warm: HDDs at ~20 EUR/TB over 5 years, half
#: full, x1.5 (0.001), plus ~6 W per disk at 0.30 EUR/kWh: 0.002 EUR/GB-month. cold: Backblaze
#: B2's list prices (USD taken at par): 0.006 per GB-month, 0.01 per GB downloaded, 0.004 per
#: 10,000 GETs, uploads free. Reads from local disks cost nothing extra.
DEFAULT_PRICES = Prices(
    storage={"hot": 0.008, "warm": 0.002, "cold": 0.006},
    egress={"cold": 0.01},
    get_requests={"cold": 0.0004},
    put_requests={"cold": 0.0},
)
