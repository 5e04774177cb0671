"""Sample the Stratum server with py-spy while chosen workloads run (``--profile``).

py-spy (``pip install py-spy`` into the venv) records raw collapsed stacks; ``summary()``
turns them into the functions that take the most samples, by self time and inclusively.
Profiling slows the server, so a profiled run's numbers are not comparable.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.servers import Server

PROFILED = "put_4k_c1,get_4k_c1,put_4k_c16,get_4k_c16"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, out_dir: Path, workloads: str = PROFILED) -> None:
        self.out_dir = out_dir
        self.workloads = [w.strip() for w in workloads.split(",") if w.strip()]
        self.files: dict[str, list[Path]] = collections.defaultdict(list)

    def hook(self, workload: str, server: Server) -> Callable[[], None]:
        exe = py_spy()
        if server.name != "Stratum" or workload not in self.workloads or exe is None:
            return lambda: None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"profile-{workload}-{len(self.files[workload]) + 1}.txt"
        record = subprocess.Popen(
            [exe, "record", "--pid", str(server.pids()[0]), "--rate", "200", "--format", "raw",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

        def stop() -> None:
            record.send_signal(signal.SIGINT)
            try:
                record.wait(30)
            except subprocess.TimeoutExpired:
                record.kill()
                record.wait()
            if out.exists():
                self.files[workload].append(out)

        return stop


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")

# Leaf frames of threads that wait for work; py-spy cannot always tell them from busy ones.
# (The executor's _worker and the group-commit loops of the metadata and segment writers do no work
# of their own: their own samples are waits on their queues.)
IDLE = re.compile(
    r"^(Condition\.wait|Event\.wait|Thread\._wait_for_tstate_lock|_worker \(concurrent/futures/"
    r"thread\.py|GroupCommit\.run \(|select \(|poll \()"
)
EVENT_LOOP = "Runner.run (asyncio/runners.py"  # leaf: inside uvloop's C loop (epoll + socket I/O)


def _name(frame: str, line: bool = False) -> str:
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    file = found.group("file")
    for marker in ("/stratum/", "site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    if line and found.group("line"):
        file = f"{file}:{found.group('line')}"
    return f"{found.group('func')} ({file})"


def summary(files: list[Path], top: int = 12) -> list[str]:
    """Top functions by self samples (with the line) and inclusively, over the samples of
    threads not waiting for work (blocking I/O such as fdatasync counts as busy)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            raw = [f for f in stack.split(";") if f.strip()]
            raw = [f for f in raw if not f.startswith(("process ", "thread "))]
            if not raw:
                continue
            leaf = _name(raw[-1], line=True)
            if IDLE.match(leaf):
                idle += count
                continue
            total += count
            if leaf.startswith(EVENT_LOOP):
                leaf = "(uvloop, in C: epoll wait and socket I/O)"
            own[leaf] += count
            for name in {_name(f) for f in raw}:
                inclusive[name] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} busy samples ({idle} idle left out); self time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive (stratum and aiohttp frames):")
    ours = [(k, v) for k, v in inclusive.most_common() if "(" in k and _interesting(k)]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in ours[:top]]
    return lines


def _interesting(name: str) -> bool:
    return any(
        part in name
        for part in (
            "s3/",
            "service/",
            "tiering/",
            "maintenance/",
            "meta/",
            "block/",
            "util/",
            "aiohttp/",
        )
    )
