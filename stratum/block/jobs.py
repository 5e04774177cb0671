"""Waiting for executor jobs that share open files."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

_T = TypeVar("_T")


async def wait_all(futures: Sequence[asyncio.Future[_T]]) -> list[_T]:
    """Wait for *every* future, then return results or raise the first error.

    Unlike ``gather``, never returns while a job still runs in a thread (jobs share open
    files that the caller may close next), even if one failed or the waiter is cancelled.
    """
    if futures:
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.wait(futures))
            raise
    for fut in futures:
        exc = fut.exception()
        if exc is not None:
            raise exc
    return [fut.result() for fut in futures]
