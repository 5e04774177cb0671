"""After start-up the server's processes leave start-up's objects out of garbage collection
(stratum.util.memory.freeze_startup_heap): a full collection then walks only what was made
since, not the ~100,000 objects of the imported libraries (35-50 ms of a stopped loop)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json
import stratum.cli.serve  # what a server imports before it serves
from stratum.util import memory
before = len(gc.get_objects())
memory.freeze_startup_heap()
made_since = [object() for _ in range(3)], {"x": []}
print(json.dumps({"before": before, "tracked": len(gc.get_objects()),
                  "frozen": gc.get_freeze_count()}))
"""


def test_startup_objects_leave_the_collectors_walk() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["before"] > 20_000  # the libraries a server imports
    assert seen["frozen"] > seen["before"] // 2
    assert seen["tracked"] < 1_000  # what a later full collection walks
