"""Per-process pseudo-random generators for identifiers that guard nothing.

Request ids and the random part of volume ids need to be unique, not secret. Drawing them
from the OS (``os.urandom``, ``secrets``) costs a system call each, which drops the GIL and,
under load, a thread switch to win it back. :func:`process_random` gives a generator seeded
from the OS once, and seeded anew in every forked child, so server processes never share a
stream (two workers drawing the same ids would collide).
"""

from __future__ import annotations

import os
import random
import secrets


def process_random() -> random.Random:
    """A generator seeded from the OS now and again after every fork."""
    rng = random.Random(secrets.randbits(128))
    os.register_at_fork(after_in_child=lambda: rng.seed(secrets.randbits(128)))
    return rng
