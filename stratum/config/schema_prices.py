"""The schema of ``[prices]``: what storing, reading and moving a GB costs (the tier
simulator's and placement's prices)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.config import checks
from stratum.config.kinds import FLOAT, STRING
from stratum.config.setting import key


def _price(default: float, help: str) -> dict[str, object]:
    return key(default, FLOAT, help, checks.not_negative)


@dataclass(frozen=True, kw_only=True)
class PricesConfig:
    """``[prices]``: what storing, reading and moving a GB costs, in one currency."""

    hot: float = field(
        metadata=_price(
            0.008,
            "Storing one GB (10^9 bytes of object data) for a month (30 days) in the hot tier:"
            " NVMe SSDs at about 60 EUR/TB worn out in 3 years, half full, times 1.5 for"
            " erasure coding 4+2, plus power and spare capacity.",
        )
    )
    warm: float = field(
        metadata=_price(
            0.002,
            "One GB-month in the warm tier: HDDs at about 20 EUR/TB over 5 years, half full,"
            " times 1.5, plus about 6 W per disk at 0.30 EUR/kWh.",
        )
    )
    cold: float = field(
        metadata=_price(
            0.006,
            "One GB-month in the cold tier: Backblaze B2's list price (USD taken at par).",
        )
    )
    cold_read: float = field(
        metadata=_price(
            0.01,
            "Each GB read out of the cold tier (retrieval and egress), by a client's GET or by"
            " a move back to a local tier.",
        )
    )
    cold_request: float = field(
        metadata=_price(
            0.0004,
            "Every 1,000 requests to the cold tier: GETs of clients and the writes and reads"
            " of moves.",
        )
    )
    move: float = field(
        metadata=_price(
            0.0002,
            "Each GB moved between two tiers (the writes' wear on the disks), on top of"
            " cold_read and cold_request when the move involves cold.",
        )
    )
    slow_read: float = field(
        metadata=_price(
            0.05,
            "What 1,000 GETs not served from the hot tier are worth avoiding: the knob between"
            " cost and speed. Not money spent: the simulator reports it beside the cost, and"
            " placement that weighs reads against storage counts it. Higher keeps more in hot.",
        )
    )
    currency: str = field(
        metadata=key(
            "EUR",
            STRING,
            "The currency of the prices above, as reports name it.",
            checks.currency,
        )
    )
