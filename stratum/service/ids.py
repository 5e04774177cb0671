"""Volume ids: 32 hex characters, time-ordered.

The first 12 hex digits are milliseconds since the epoch, the other 20 random, so
ids sort by creation time: when metadata is rebuilt from disks, the newest volume
written for a key wins.
"""

from __future__ import annotations

import time

from stratum.util.prng import process_random

_random = process_random()  # not os.urandom: a system call per PUT (see stratum.util.prng)


def new_volume_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms & 0xFFFFFFFFFFFF:012x}{_random.getrandbits(80):020x}"
