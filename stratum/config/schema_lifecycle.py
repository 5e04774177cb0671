"""The schema of ``[lifecycle]``: the worker that applies buckets' lifecycle rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.config import checks
from stratum.config.kinds import BOOL, DURATION, FLOAT, INT
from stratum.config.setting import key


@dataclass(frozen=True, kw_only=True)
class LifecycleConfig:
    """``[lifecycle]``: the worker that applies buckets' lifecycle rules."""

    enabled: bool = field(
        metadata=key(
            True,
            BOOL,
            "Apply buckets' lifecycle rules (expirations, aborted uploads). false: rules are"
            " stored and shown (x-amz-expiration) but nothing expires; transitions still move"
            " objects, as the tier engine applies them.",
        )
    )
    day_seconds: float = field(
        metadata=key(
            86400,
            FLOAT,
            "Seconds in a lifecycle rule's day. Shorten it only to watch rules act in a test"
            " (as Ceph's rgw_lc_debug_interval): with 10, an object of a 1-day expiration rule"
            " goes after 10 to 20 seconds, and transitions count the same days. Dates in rules"
            " stay real dates, and x-amz-expiration keeps telling real days.",
            checks.positive,
        )
    )
    interval: float = field(
        metadata=key(
            "1h",
            DURATION,
            "How often the worker walks the buckets that have rules; a pass interrupted by a"
            " restart resumes where it stopped. Shorten it with day_seconds.",
            checks.positive,
        )
    )
    rate: int = field(
        metadata=key(
            2000,
            INT,
            "Versions the worker examines per second, at most: a pass over many objects stays"
            " in the background of serving.",
            checks.positive,
        )
    )
