"""Key files: 32 random bytes, mode 0600, created once and never replaced.

The cold tier's encryption key and the key sealing users' secrets are such files. Losing one
loses what it encrypted, so a file of the wrong size is refused rather than "repaired", and
creation never clobbers a key another process wrote meanwhile. A key created by a process
running as root (an operator's `sudo stratum user add`) goes to the owner of its directory, the
service user that must read it. Blocking (fsync): call at start-up or from an executor.
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
    owner = _directory_owner(path.parent)
    _write_new(tmp, key, owner)
    try:
        try:
            os.link(tmp, path)  # atomic, and fails if the key appeared meanwhile: no clobbering
        except FileExistsError:
            return read_key(path)
        except OSError:  # a filesystem without hard links: create the file exclusively instead
            try:
                _write_new(path, key, owner)
            except FileExistsError:
                return read_key(path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    log.info("created %s, %s: back it up", what, path)
    return key


def read_key(path: Path) -> bytes:
    """The key in ``path``; ``FileNotFoundError`` if there is none, :class:`KeyFileError` if
    the file cannot be read or holds anything but :data:`KEY_LEN` bytes."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            key = file.read(KEY_LEN + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:  # not readable by this process's user, a directory, an I/O error
        raise KeyFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(key) != KEY_LEN:
        raise KeyFileError(
            f"{path}: a key file holds exactly {KEY_LEN} bytes, this one {len(key)}"
            f"{'+' if len(key) > KEY_LEN else ''}; refusing to use it (restore it from a backup)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible to other users: chmod 600 it", path)
    return key


def _directory_owner(directory: Path) -> tuple[int, int] | None:
    """Whom a new key file goes to: the directory's owner when this process runs as root and
    the directory is someone else's; None (this process's user) otherwise."""
    if os.geteuid() != 0:
        return None
    st = os.stat(directory)
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def _write_new(path: Path, data: bytes, owner: tuple[int, int] | None) -> None:
    """Create ``path`` (mode 0600; ``FileExistsError`` if it exists) holding ``data``, fsynced,
    owned by ``owner`` (uid, gid) when given."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
