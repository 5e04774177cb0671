"""The simulator's per-object placement log (``stratum tier simulate --placements FILE``).

Every PUT, move and DELETE the simulator replays, for every policy, one CSV line each (RFC 4180
quoting), in time order within a policy. Format 1: a first line ``# stratum placements 1``,
then the header ``policy,time,event,bucket,key,size,from,to``::

    policy  the policy's name, as the report names it ("stratum", "offline-optimal", ...)
    time    seconds since the start of the trace (3 decimals)
    event   PUT | MOVE | DELETE
    bucket  bucket name
    key     object key
    size    bytes
    from    the tier the object leaves (MOVE, DELETE); empty for a PUT
    to      the tier the object is in afterwards (PUT, MOVE); empty for a DELETE

Nothing is left out: the file has as many MOVE lines as the report counts moves.
"""

from __future__ import annotations

import csv
from typing import TextIO

FORMAT = 1
HEADER = ("policy", "time", "event", "bucket", "key", "size", "from", "to")


class PlacementLog:
    """Writes the lines of the module docstring to an open text file."""

    def __init__(self, file: TextIO) -> None:
        self._writer = csv.writer(file, lineterminator="\n")
        file.write(f"# stratum placements {FORMAT}\n")
        self._writer.writerow(HEADER)
        self.policy = ""

    def event(
        self, time: float, event: str, bucket: str, key: str, size: int, source: str, target: str
    ) -> None:
        when = f"{time:.3f}"
        self._writer.writerow((self.policy, when, event, bucket, key, size, source, target))
