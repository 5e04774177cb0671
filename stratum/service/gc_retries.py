"""Garbage whose data could not be deleted: kept queued, tried again later and later.

The garbage queue (``gc`` in the metadata store) is durable: an entry is forgotten only once
its data is deleted, so a delete that fails (a cold tier out of reach, a disk refusing) leaves
the entry for a later pass rather than an orphan that keeps costing money. What this module
keeps, in memory, is when to try again:

- **Per entry.** An entry whose delete failed waits :data:`RETRY_FIRST` seconds, doubling with
  each failure up to :data:`RETRY_MAX` (:class:`~stratum.util.backoff.Backoff`, on the
  service's clock), while the entries after it go on being freed.
- **Per tier.** When :data:`OUTAGE_AFTER` deletes in a row fail in one tier within a pass and
  none succeeded, the tier is taken for unreachable: its entries are left alone for the rest
  of the pass, and the tier waits like an entry before it is tried again. So a long outage
  costs one attempt per wait, not one per queued volume, and remembers a few entries, not
  the whole queue.

After a restart everything is tried once more at once. A pass logs the failures it met first
(one WARNING line), and each entry freed after failing once at INFO.
"""

from __future__ import annotations

import logging
from collections import Counter

from stratum.util.backoff import Backoff
from stratum.util.clock import Clock

log = logging.getLogger("stratum.objects")

RETRY_FIRST = 30.0  # seconds before data that could not be deleted is tried again
RETRY_MAX = 3600.0  # the wait doubles with each failure, up to this
OUTAGE_AFTER = 3  # failed deletes in a row, and none that worked, before a tier waits


class DeleteRetries:
    """When each failing garbage entry, and each unreachable tier, may be tried again."""

    def __init__(self, clock: Clock) -> None:
        self.entries = Backoff(clock, first=RETRY_FIRST, cap=RETRY_MAX)
        self.tiers = Backoff(clock, first=RETRY_FIRST, cap=RETRY_MAX)
        self._begin()

    def _begin(self) -> None:
        self._in_a_row: Counter[str] = Counter()  # this pass: failures since a success
        self._worked: set[str] = set()  # this pass: tiers where a delete worked
        self._news: list[tuple[str, str]] = []  # this pass: (gc key, why) of first failures

    def may_try(self, gc_key: str, tier: str) -> bool:
        return not (self.tiers.waiting(tier) or self.entries.waiting(gc_key))

    def failed(self, gc_key: str, tier: str, exc: Exception) -> None:
        why = f"{type(exc).__name__}: {exc}"
        if self.entries.failed(gc_key, why).attempts == 1:
            self._news.append((gc_key, why))
        log.debug("freeing %s (tier %s) failed: %s", gc_key, tier, why)
        self._in_a_row[tier] += 1
        if self._in_a_row[tier] >= OUTAGE_AFTER and tier not in self._worked:
            outage = self.tiers.failed(tier, why)
            if outage.attempts == 1:
                log.warning(
                    "tier %s: %d deletes in a row failed (%s); its garbage waits, tried "
                    "again in %.0f s",
                    tier,
                    OUTAGE_AFTER,
                    why,
                    outage.retry_at - self.tiers.clock.now(),
                )

    def succeeded(self, gc_key: str, tier: str) -> None:
        self._in_a_row[tier] = 0
        self._worked.add(tier)
        if self.tiers.succeeded(tier) is not None:
            log.info("tier %s: deletes work again", tier)
        if self.entries.succeeded(gc_key) is not None:
            log.info("freed %s, which could not be freed before", gc_key)

    def end_pass(self) -> None:
        """Report the failures this pass met first; begin the next pass's counts."""
        if self._news:
            gc_key, why = self._news[0]
            log.warning(
                "could not free %d garbage volume(s), kept queued and retried later "
                "(first: %s: %s)",
                len(self._news),
                gc_key,
                why,
            )
        self._begin()
