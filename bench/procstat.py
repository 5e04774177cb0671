"""What the server processes use while a workload runs, read from ``/proc`` (Linux only).

Memory is sampled every 50 ms by a thread over the server's process tree (the root PIDs
and all their descendants), two ways: RSS, the sum of ``VmRSS``, which counts a page shared by
several processes once per process (Stratum's worker processes are forked from one, and
share the interpreter, the code and the page cache of LMDB's map); and PSS, the sum of
``Pss`` from ``smaps_rollup``, which divides each shared page among the processes sharing it:
what the tree really costs the machine. CPU is ``utime + stime`` of the same tree.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/PID/task/TID/children``, else a scan of /proc)."""
    tasks = PROC / str(pid) / "task"
    found: list[int] = []
    try:
        for task in tasks.iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
        return found
    except FileNotFoundError:
        pass
    except OSError:
        return found
    for entry in PROC.iterdir():  # kernels without CONFIG_PROC_CHILDREN
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_tree(roots: Iterable[int]) -> list[int]:
    """The root PIDs that are alive and all their descendants."""
    seen: list[int] = []
    todo = [pid for pid in roots if (PROC / str(pid)).exists()]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _sum_kib(pids: Iterable[int], file: str, field: str) -> int:
    """Bytes: the sum over ``pids`` of a ``field: N kB`` line of ``/proc/PID/<file>``."""
    total = 0
    for pid in pids:
        try:
            for line in (PROC / str(pid) / file).read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    return _sum_kib(pids, "status", "VmRSS:")


def pss_bytes(pids: Iterable[int]) -> int:
    return _sum_kib(pids, "smaps_rollup", "Pss:")


def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


class RssSampler:
    """Peak and mean RSS of a process tree between ``start()`` and ``stop()``."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.05) -> None:
        self.roots = roots
        self.interval = interval
        self.samples: list[int] = []
        self.pss_samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu_start = 0.0
        self.cpu_end = 0.0

    def _sample(self) -> None:
        tree = process_tree(self.roots())
        self.samples.append(rss_bytes(tree))
        self.pss_samples.append(pss_bytes(tree))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def start(self) -> RssSampler:
        self.cpu_start = cpu_seconds(process_tree(self.roots()))
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.cpu_end = cpu_seconds(process_tree(self.roots()))

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    @property
    def pss_peak(self) -> int:
        return max(self.pss_samples, default=0)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0

    @property
    def cpu(self) -> float:
        """CPU seconds the tree used (processes that exited meanwhile are not counted)."""
        return max(0.0, self.cpu_end - self.cpu_start)


def machine() -> dict[str, str | int]:
    """CPU model, cores, RAM, kernel and the filesystem the data goes to."""
    model = platform.processor() or platform.machine()
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count() or 0,
        "ram_bytes": ram,
        "kernel": platform.release(),
        "os": _os_name(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.system()


def machine_busy_seconds() -> float:
    """CPU seconds all processes used since boot (the first line of /proc/stat, no idle)."""
    try:
        fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def others_busy_fraction(seconds: float) -> float:
    """Share of all cores that other processes kept busy over ``seconds`` (we sleep)."""
    start = machine_busy_seconds()
    ours = os.times()
    time.sleep(seconds)
    after = os.times()
    mine = (after.user - ours.user) + (after.system - ours.system)
    return max(0.0, machine_busy_seconds() - start - mine) / (seconds * (os.cpu_count() or 1))
