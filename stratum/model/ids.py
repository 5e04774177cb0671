"""Volume ids: 32 hex characters, time-ordered.

The first 12 hex digits are milliseconds since the epoch, the other 20 random, so
ids sort by creation time: when metadata is rebuilt from disks, the newest volume
written for a key wins.
"""

from __future__ import annotations

import os
import random
import secrets
import time

# The 80 random bits come from a per-process generator seeded from the OS (and seeded anew in
# a forked worker, so processes never share a stream): os.urandom was a syscall per PUT,
# which drops the GIL and, under load, costs a thread switch to win it back.
_random = random.Random(secrets.randbits(128))
os.register_at_fork(after_in_child=lambda: _random.seed(secrets.randbits(128)))


def new_volume_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms & 0xFFFFFFFFFFFF:012x}{_random.getrandbits(80):020x}"
