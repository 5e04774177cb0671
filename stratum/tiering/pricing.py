"""What storing, reading and moving bytes costs per tier, for the tier simulator.

Figures are per GB (10^9 bytes) and per month (30 days). The user writes them in the
configuration's ``[prices]`` table (:class:`~stratum.config.PricesConfig`, whose help says
where the defaults come from); :meth:`Prices.from_config` turns that table into the per-tier
form the simulator prices with, and :data:`DEFAULT_PRICES` is the table's defaults. How the
simulator adds them up is in :mod:`stratum.tiering.simulator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratum.config import PricesConfig, settings
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
    move: float = 0.0  # per GB moved from one tier to another
    slow_read: float = 0.0  # per 1000 GETs not served from the first tier (a weight, not spent)

    def __post_init__(self) -> None:
        if not self.storage:
            raise ValueError("prices: storage must name at least one tier")
        for name in ("move", "slow_read"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"prices: {name} must be a number >= 0")
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
    def from_config(cls, config: PricesConfig) -> Prices:
        """The configuration's ``[prices]``: local tiers cost storage only; the cold tier
        also ``cold_read`` per GB read out and ``cold_request`` per 1,000 requests, reads
        and writes alike."""
        return cls(
            storage={"hot": config.hot, "warm": config.warm, "cold": config.cold},
            egress={"cold": config.cold_read},
            get_requests={"cold": config.cold_request},
            put_requests={"cold": config.cold_request},
            currency=config.currency,
            move=config.move,
            slow_read=config.slow_read,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prices:
        """From a JSON/TOML-style table: {"storage": {"hot": 0.008, ...}, "egress": {...},
        "get_requests": {...}, "put_requests": {...}, "currency": "EUR", "move": 0.0002,
        "slow_read": 0.05}."""
        tables = {"storage", "egress", "get_requests", "put_requests"}
        known = tables | {"currency", "move", "slow_read"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"prices: unknown key {sorted(unknown)[0]!r}")
        return cls(
            **{name: dict(data[name]) for name in tables if name in data},
            currency=str(data.get("currency", "EUR")),
            move=data.get("move", 0.0),
            slow_read=data.get("slow_read", 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage": dict(self.storage),
            "egress": dict(self.egress),
            "get_requests": dict(self.get_requests),
            "put_requests": dict(self.put_requests),
            "currency": self.currency,
            "move": self.move,
            "slow_read": self.slow_read,
        }


#: ``[prices]``'s defaults: a home lab's SSDs and HDDs and a Backblaze B2-like cold tier.
_DEFAULTS: dict[str, Any] = {
    name.removeprefix("prices."): setting.default
    for name, setting in settings().items()
    if name.startswith("prices.")
}
DEFAULT_PRICES = Prices.from_config(PricesConfig(**_DEFAULTS))
