"""Importing modules away from the event loop.

Some modules are imported only where they are used (the primary's background work, the web
console), so that processes that never use them do not carry them in memory. Importing is
not free: finding, reading and compiling a package (Jinja2, the console's pages; from a
zipapp with no bytecode cache yet, everything) takes hundreds of milliseconds of CPU. Done on
the event loop, that stalls every request in flight; done in a thread, the loop gets the GIL
back every switch interval.
"""

from __future__ import annotations

import asyncio
import importlib


async def import_off_loop(*modules: str) -> None:
    """Import ``modules`` in the default executor; a later ``import`` of them is a lookup."""
    loop = asyncio.get_running_loop()
    for name in modules:
        await loop.run_in_executor(None, importlib.import_module, name)
