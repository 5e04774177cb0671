"""The schema of ``[tiering]``: automatic movement of objects between tiers (the engine's
rules and policy, :mod:`stratum.tiering.policy`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.config import checks
from stratum.config.kinds import BOOL, DURATION, FLOAT, INT, SIZE, STRING
from stratum.config.setting import key


@dataclass(frozen=True, kw_only=True)
class TieringConfig:
    """``[tiering]``: automatic movement of objects between tiers."""

    enabled: bool = field(metadata=key(True, BOOL, "Move objects between tiers automatically."))
    policy: str = field(
        metadata=key(
            "rules",
            STRING,
            '"rules": the idle thresholds below decide when an object leaves hot. "learned":'
            " per class of objects (bucket, key directory, size band, how written) the engine"
            " learns how soon objects are read again and places each where its expected cost"
            " at the [prices] is lowest; a class with too little evidence uses the thresholds."
            " Both learn (stratum tier classes), pins and lifecycle transitions win over both.",
            checks.one_of("rules", "learned"),
        )
    )
    interval: float = field(
        metadata=key(
            "1m",
            DURATION,
            "How often the tiering engine looks for objects to move.",
            checks.positive,
        )
    )
    hot_idle_before_warm: float = field(
        metadata=key("7d", DURATION, "An object not read for this long moves from hot to warm.")
    )
    warm_idle_before_cold: float = field(
        metadata=key("30d", DURATION, "An object not read for this long moves from warm to cold.")
    )
    cold_min_size: int = field(
        metadata=key(
            "128KiB",
            SIZE,
            "Smaller objects never go to cold (per-request cost and latency would dominate).",
        )
    )
    promote_reads: int = field(
        metadata=key(
            3,
            INT,
            "An object read this many times within promote_window moves back to hot; 0 = never.",
            checks.between(0, 1_000_000),
        )
    )
    promote_window: float = field(
        metadata=key(
            "1d",
            DURATION,
            "Window in which promote_reads reads promote an object.",
            checks.positive,
        )
    )
    prefetch_budget: int = field(
        metadata=key(
            "1GiB",
            SIZE,
            'With policy = "learned": bytes that group-aware promotion may bring to hot per'
            " prefetch_window and key scope (bucket and first key segment) when the scope's"
            " reads from warm or cold show a bulk or sequential pattern (a restore, an album"
            " opened): the objects that follow the read keys move ahead of their reads;"
            " 0 = never.",
        )
    )
    prefetch_after: int = field(
        metadata=key(
            2,
            INT,
            "Reads from warm or cold within prefetch_window in one scope that make a pattern.",
            checks.between(1, 1000),
        )
    )
    prefetch_count: int = field(
        metadata=key(
            8,
            INT,
            "Objects promoted ahead per read of a pattern (the keys that follow it).",
            checks.between(0, 1000),
        )
    )
    prefetch_window: float = field(
        metadata=key(
            "1h",
            DURATION,
            "Window of a pattern's reads and of prefetch_budget; a promoted object is kept"
            " hot this long for the read it was promoted for.",
            checks.positive,
        )
    )
    hot_high_watermark: float = field(
        metadata=key(
            0.85,
            FLOAT,
            "When the hot tier is fuller than this fraction of its capacity, the least recently"
            " used objects move down, idle or not, until it is below hot_low_watermark.",
            checks.fraction,
        )
    )
    hot_low_watermark: float = field(
        metadata=key(
            0.70,
            FLOAT,
            "Fill level that hot_high_watermark moves bring hot back down to.",
            checks.fraction,
        )
    )
    warm_high_watermark: float = field(
        metadata=key(
            0.90,
            FLOAT,
            "When the warm tier is fuller than this fraction, the least recently used objects move"
            " to cold until it is below warm_low_watermark.",
            checks.fraction,
        )
    )
    warm_low_watermark: float = field(
        metadata=key(
            0.80,
            FLOAT,
            "Fill level that warm_high_watermark moves bring warm back down to.",
            checks.fraction,
        )
    )
    move_rate: int = field(
        metadata=key(
            "50MiB",
            SIZE,
            "Bytes per second that tier moves may transfer, so clients keep their bandwidth.",
            checks.positive,
        )
    )
    decision_log_keep: float = field(
        metadata=key(
            "90d",
            DURATION,
            "How long the log of tiering decisions (what moved, when and why) is kept.",
            checks.positive,
        )
    )
