"""Key files: 32 random bytes, mode 0600, created once and never replaced.

The cold tier's encryption key and the key sealing users' secrets are such files. Losing one
loses what it encrypted, so a file of the wrong size is refused rather than "repaired", and
creation never clobbers a key another process wrote meanwhile. Blocking (fsync): call at
start-up or from an executor.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from stratum.util.fsio import fsync_dir

KEY_LEN = 32

log = logging.getLogger("stratum.keyfile")


class KeyFileError(Exception):
    """A key file is unusable (wrong size, unreadable)."""


def load_or_create_key(path: Path, what: str) -> bytes:
    """The key in ``path``, created (random, mode 0600, durably) if absent.

    Two processes racing to create it end up with the same key. ``what`` names the key in
    the log line announcing a new one ("the cold tier's encryption key").
    """
    try:
        return read_key(path)
    except FileNotFoundError:
        pass
    key = os.urandom(KEY_LEN)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    _write_new(tmp, key)
    try:
        try:
            os.link(tmp, path)  # atomic, and fails if the key appeared meanwhile: no clobbering
        except FileExistsError:
            return read_key(path)
        except OSError:  # a filesystem without hard links: create the file exclusively instead
            try:
                _write_new(path, key)
            except FileExistsError:
                return read_key(path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    log.info("created %s, %s: back it up", what, path)
    return key


def read_key(path: Path) -> bytes:
    """The key in ``path``; ``FileNotFoundError`` if there is none, :class:`KeyFileError` if
    the file holds anything but :data:`KEY_LEN` bytes."""
    with open(path, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        key = file.read(KEY_LEN + 1)
    if len(key) != KEY_LEN:
        raise KeyFileError(
            f"{path}: a key file holds exactly {KEY_LEN} bytes, this one {len(key)}"
            f"{'+' if len(key) > KEY_LEN else ''}; refusing to use it (restore it from a backup)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible to other users: chmod 600 it", path)
    return key


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600; ``FileExistsError`` if it exists) holding ``data``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
