"""How the server's processes use glibc's allocator (Linux with glibc; elsewhere nothing),
and Python's cyclic garbage collector.

Python's own allocator serves objects up to 512 bytes; everything larger (a request body's
chunks, erasure-coded stripes and blocks, shard reads) comes from ``malloc``, much of it in
the executor's threads. glibc gives every thread that allocates an arena of its own (up to 8
per core), and an arena keeps what was freed in it for the next allocation there: after a
burst of large requests each executor thread holds its own high-water mark of buffers, in
every process. :func:`tune` caps the arenas at :data:`ARENA_MAX`, shared by all threads, so a
buffer one thread freed serves the next request whichever thread takes it: a lower peak under
concurrent large PUTs, for the same CPU per byte. Call it before any thread starts: glibc reads
the cap when a thread first needs an arena.

:func:`release` returns the free pages inside malloc's heap, e.g. before forking the workers,
so that they do not each start with a copy of them.

:func:`freeze_startup_heap` moves what starting up built (modules, botocore's and aiohttp's
tables, the configuration: about 100,000 objects) out of the garbage collector's reach. A full
collection walks every tracked object; with those it took 35-50 ms on the 2-core VM, during
which the event loop serves nothing: the longest pauses a soak's GETs met. Once frozen, a
full collection walks only what was made since (below a millisecond on an idle server).
Frozen objects are never freed, so it is called once, after a collection, when start-up is done.

Not done: fixing the mmap threshold (which stops glibc from raising it after a large buffer
is freed, so large buffers are always mapped and unmapped). It bounds memory best, but every
buffer then costs a fresh mapping and its page faults: more than twice the server CPU per
byte of a 64 MiB GET.
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any

M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h
ARENA_MAX = 2


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - no C library to load
        return None


def _glibc() -> Any:
    libc = _libc()
    # malloc_trim is glibc's own (musl has a mallopt that does nothing, and no malloc_trim)
    return libc if getattr(libc, "malloc_trim", None) is not None else None


def tune(arena_max: int = ARENA_MAX) -> bool:
    """Cap malloc's arenas; False where that is not glibc's to do (or it refused)."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arena_max) == 1


def release() -> None:
    """Give the free pages inside malloc's heap back to the system (glibc only)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def freeze_startup_heap() -> None:
    """Collect once, then leave every object alive now out of later collections (see above)."""
    gc.collect()
    gc.freeze()
