"""The data directory of a running server: private to it, and to one server at a time.

Permissions
    ``stratum serve`` sets its umask to 077 before it creates anything, so every file it
    creates (the metadata store, the root credentials, segment and shard files, metadata
    backups on the disks, the run directory) is 0600 and every directory 0700, for the
    service user alone. The data directory itself is Stratum's: it is created 0700, and an
    existing one that is empty or already holds a metadata store is tightened to 0700 (a
    line in the log says so). A data directory holding anything else is someone else's
    directory too and keeps its mode (with a warning), as do directories the operator made
    for the disks (``tiers.*.disks``, often mount points): only what Stratum creates in them
    is private.

One server per data directory
    The server holds an exclusive ``flock`` on ``<data_dir>/server.lock`` for as long as it
    runs (its worker processes inherit it), taken before anything in the directory or on the
    disks is touched: a second server on the same directory stops there, with one line
    naming the process that holds it, instead of first emptying the disks' ``tmp/`` under
    the running server's uploads. The file holds the holder's pid (text), for that message.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from pathlib import Path

log = logging.getLogger("stratum")

LOCK_FILE = "server.lock"
LOCK_WAIT = 5.0  # seconds: the processes of a server that was just stopped take a moment to go
PRIVATE_UMASK = 0o077


class DataDirInUse(Exception):
    """Another server runs on this data directory; the message says which."""


def make_private(data_dir: Path) -> None:
    """Umask 077 for this process, and the data directory created or tightened to 0700."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if not mode & 0o077:
        return
    entries = {entry.name for entry in os.scandir(data_dir)}
    if entries and "meta" not in entries:
        log.warning(
            "data directory %s (mode %o) holds more than Stratum's files: its mode is left as "
            "it is; Stratum's own files in it are private (0600)",
            data_dir,
            mode,
        )
        return
    try:
        os.chmod(data_dir, 0o700)
    except OSError as exc:
        log.warning("data directory %s stays mode %o: %s", data_dir, mode, exc.strerror)
        return
    log.info("data directory %s: mode %o -> 700 (for the service user alone)", data_dir, mode)


def lock(data_dir: Path, wait: float = LOCK_WAIT) -> int:
    """Hold ``<data_dir>/server.lock`` (the returned descriptor, inherited across fork);
    raises :class:`DataDirInUse` if another process still holds it after ``wait`` seconds."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirInUse(
                f"data directory {data_dir} is in use by another Stratum server{who}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
