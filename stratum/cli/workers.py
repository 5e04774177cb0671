"""Several server processes on one port (``server.workers``): why, and how they are run.

Why: a Python process runs its Python code on one core at a time, and a small S3 request
is mostly Python (HTTP parsing, SigV4, routing, XML). Hashing, zfec and file I/O release
the GIL, but the request path does not; more cores need more processes.

How (:func:`spawn` then :func:`serve_role` in :mod:`stratum.cli.serve`):

1. Before any thread starts or LMDB opens, the first process binds the public socket (which
   also resolves port 0) and a private loopback socket, then forks the workers, which
   inherit the public one. Forking that early is what makes ``fork`` safe: nothing exists
   yet whose lock a child could inherit half-held.
2. The first process is the **primary**: it opens the node as a lone server would (taking
   the disks exclusively and recovering: torn segment tails, orphans), shares the disks,
   starts every background task (see :mod:`stratum.node`), serves, and tells each
   worker to go (one byte on its pipe).
3. A **worker** waits for that byte (end of file instead: the primary failed; it exits),
   opens the node shared and serves S3 requests on the inherited socket: every process
   accepts from the one queue, and whichever is waiting for work takes the next connection.
   Admin API and ``/metrics`` requests it forwards to the primary's private port
   (:mod:`stratum.web.forward`); a write that pins an object nudges the primary's tier
   engine with ``SIGUSR1``.

Why one inherited socket and not a ``SO_REUSEPORT`` socket per process: the kernel lets any
process of the same user join a ``SO_REUSEPORT`` group, so a second ``stratum serve`` on the
same address (another data directory, a mistake) would start without error and receive a
share of the connections meant for the first. A socket bound without it is exclusive: the
second server's bind fails (``EADDRINUSE``) and it says so, for IPv4, IPv6 and port 0 alike,
with no window between a probe and the real bind.

Life: SIGTERM, SIGINT and SIGHUP reach the primary, which passes them on. A worker that
dies unexpectedly makes the primary stop everything and exit 1 (systemd restarts the whole
server): restarting one worker alone would need recovery beside live writers. Workers die
with the primary (``PR_SET_PDEATHSIG``: a killed primary takes them along, as a crashed
single process would).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from stratum.util import memory, pacing

log = logging.getLogger("stratum.workers")

MAX_AUTO_WORKERS = 4  # past this, the disks (not the Python) bound a small box
STOP_TIMEOUT = 40.0  # seconds a worker gets to finish its requests before SIGKILL
FLUSH_WAIT = 5.0  # seconds a tiering pass waits for the workers' access signals
PR_SET_PDEATHSIG = 1


def worker_count(configured: int) -> int:
    """``server.workers``, with 0 meaning one per core, up to :data:`MAX_AUTO_WORKERS`."""
    if configured > 0:
        return configured
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the first address ``host`` resolves to), for
    this server alone (no ``SO_REUSEPORT``; see the module docstring)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Linux lets no two sockets listen on one address with this: it only lets a restarted
        # server bind while connections of the previous one linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class Role:
    """What this process is in the server: the primary (index 0) or worker ``index``."""

    index: int
    count: int
    run_dir: Path
    # Where it serves: the public socket first, then (primary) its private loopback one.
    sockets: list[socket.socket] = field(default_factory=list)
    address: tuple[str, int] = ("", 0)  # the public address, as bound
    private_port: int = 0  # the primary's loopback port (0: only one process)
    children: list[int] = field(default_factory=list)  # primary: the workers' pids
    go: list[int] = field(default_factory=list)  # primary: write ends; worker: its read end

    @property
    def primary(self) -> bool:
        return self.index == 0

    @property
    def shared(self) -> bool:
        return self.count > 1

    def release_workers(self) -> None:
        """Primary: the node is open and recovered; let the workers open it too."""
        for fd in self.go:
            try:
                os.write(fd, b"g")
            except OSError:
                pass  # that worker is gone; its watcher reports it
            os.close(fd)
        self.go = []

    def wait_for_primary(self) -> bool:
        """Worker: block until the primary says go (True) or fails (False)."""
        (fd,) = self.go
        try:
            ready = os.read(fd, 1) == b"g"
        except OSError:
            ready = False
        os.close(fd)
        self.go = []
        return ready

    def signal_children(self, sig: int) -> None:
        for pid in self.children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def watch_children(self, on_exit: Callable[[int, int], object]) -> list[threading.Thread]:
        """Primary: call ``on_exit(pid, wait status)`` (from a thread) as each worker ends."""
        threads = []
        for pid in self.children:

            def wait(pid: int = pid) -> None:
                try:
                    _, status = os.waitpid(pid, 0)
                except ChildProcessError:
                    status = 0
                on_exit(pid, status)

            thread = threading.Thread(target=wait, name=f"watch-{pid}", daemon=True)
            thread.start()
            threads.append(thread)
        return threads


def flushed_file(run_dir: Path, index: int) -> Path:
    return run_dir / f"flushed-{index}"


async def flush_workers(role: Role) -> None:
    """Primary: have every worker record its batched access signals now (``SIGUSR2``);
    each answers by writing the time of its flush to its ``flushed-<index>`` file."""
    asked = time.time()
    role.signal_children(signal.SIGUSR2)
    deadline = time.monotonic() + FLUSH_WAIT
    waiting = set(range(1, role.count))
    loop = asyncio.get_running_loop()

    def answered(index: int) -> bool:  # a file read: not on the loop
        try:
            return float(flushed_file(role.run_dir, index).read_text()) >= asked
        except (OSError, ValueError):
            return False

    while waiting and time.monotonic() < deadline:
        for index in list(waiting):
            if await loop.run_in_executor(None, answered, index):
                waiting.discard(index)
        if waiting:
            await asyncio.sleep(0.02)
    if waiting:
        log.warning("workers %s did not record their access signals in time", sorted(waiting))


async def answer_flush(role: Role, flush: Callable[[], Awaitable[None]]) -> None:
    """Worker, on ``SIGUSR2``: flush, then say when."""
    started = time.time()
    try:
        await flush()
    finally:
        path = flushed_file(role.run_dir, role.index)

        def say_when() -> None:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(repr(started))
            os.replace(tmp, path)

        await asyncio.get_running_loop().run_in_executor(None, say_when)


def spawn(host: str, port: int, count: int, run_dir: Path) -> Role:
    """Bind, and fork ``count - 1`` workers; returns this process's role (in every process).

    Call before any thread starts and before anything opens LMDB or the disks.
    """
    memory.tune()  # before any thread allocates: see stratum.util.memory
    public = bind(host, port)
    address = public.getsockname()[:2]
    if count == 1:
        return Role(0, 1, run_dir, [public], address)
    private = bind("127.0.0.1", 0)
    private_port = private.getsockname()[1]
    pacing.share_between(count)  # background walks see every process's requests
    sys.stdout.flush()
    sys.stderr.flush()
    memory.release()  # the heap's free pages: not copied into every worker
    children: list[int] = []
    go: list[int] = []
    parent = os.getpid()
    for index in range(1, count):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            pacing.use_slot(index)
            os.close(write_end)
            for fd in go:  # the other workers' pipes
                os.close(fd)
            private.close()
            _die_with_parent(parent)
            # Until its event loop handles them, what the primary may send must neither kill
            # it nor be lost: remember it (see signals_while_starting).
            for sig in (signal.SIGHUP, signal.SIGUSR2):
                signal.signal(sig, _remember)
            return Role(index, count, run_dir, [public], address, private_port, [], [read_end])
        os.close(read_end)
        children.append(pid)
        go.append(write_end)
    return Role(0, count, run_dir, [public, private], address, private_port, children, go)


_early_signals: set[int] = set()


def _remember(sig: int, _frame: object) -> None:
    _early_signals.add(sig)


def signals_while_starting() -> set[int]:
    """Worker: the signals that arrived before its event loop handled them (a SIGHUP sent
    while it started must still reload its configuration). Call after installing handlers."""
    return set(_early_signals)


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the primary ends, however it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the primary still signals its workers
        return
    if os.getppid() != parent:  # the primary died before prctl took effect
        os._exit(1)
