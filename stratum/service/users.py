"""Users and their keys.

Every access key belongs to a user with a canonical id (64 hex, as AWS shows owner ids) and a
display name. The canonical id owns the user's buckets and does not depend on the keys: a
user added gets a random one (``--id`` adopts a given one, e.g. an owner id that
``recover-metadata`` reports lost), so a user removed and added again with the same access
key owns nothing of the old one's. Users other than root live in LMDB (``users``,
:class:`~stratum.meta.records.UserRecord`), so `stratum user add` in another process takes
effect on the next request of a running server without a restart. Their secrets are stored
sealed (:mod:`stratum.service.user_secrets`); a record written before that, with the secret
in plaintext, is sealed when a server (or a ``stratum user`` command) next opens the store.

The root user's keys come from the environment (``STRATUM_ACCESS_KEY`` /
``STRATUM_SECRET_KEY``), else the config, else a file generated on first start:
``<data_dir>/root-credentials.json`` (mode 0600, format version 1)::

    {"version": 1, "access_key": "...", "secret_key": "...", "canonical_id": "<64 hex>"}

The canonical id stays the file's even when the environment supplies other keys, so buckets
keep their owner across key rotation. Keys from the environment are invisible to another
process (a ``stratum user`` command run from a shell), so the server records the access key
it took from its environment, never the secret, in ``<data_dir>/root-in-use.json`` (format
version 1, removed when the keys come from elsewhere)::

    {"version": 1, "access_key": "...", "source": "environment"}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from stratum.meta import catalog
from stratum.meta.records import UserRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.user_secrets import SealedSecretError, UserSecrets, sealed_key_id
from stratum.util.fsio import fsync_dir, write_file_durably
from stratum.util.keyfile import KeyFileError

log = logging.getLogger("stratum.users")

ROOT_FILE = "root-credentials.json"
IN_USE_FILE = "root-in-use.json"
ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
CANONICAL_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    canonical_id: str
    display_name: str

    def __repr__(self) -> str:  # never print a secret by accident
        return f"User({self.access_key!r}, {self.display_name!r})"


class UserInfo(NamedTuple):
    """What a listing shows of a user: no secret."""

    access_key: str
    display_name: str
    canonical_id: str


@dataclass(frozen=True)
class RootCredentials:
    user: User
    generated: bool  # first start: the caller prints the secret once
    source: str = "file"  # where the keys came from: "environment", "config" or "file"


def canonical_id_for(seed: str) -> str:
    """The hash ids were derived with (root's first id, and users added before ids were
    random); new ids are :func:`new_canonical_id`."""
    return hashlib.sha256(f"stratum-user:{seed}".encode()).hexdigest()


def new_canonical_id() -> str:
    return secrets.token_hex(32)


def new_access_key() -> str:
    """20 random upper-case letters and digits, as AWS's access key ids look."""
    return "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)


def load_root_credentials(
    data_dir: Path, config_access: str = "", config_secret: str = ""
) -> RootCredentials:
    """The root keys this process resolves. Blocking; call at start-up."""
    path = data_dir / ROOT_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    generated = False
    if not stored:
        stored = {
            "version": 1,  # type: ignore[dict-item]
            "access_key": new_access_key(),
            "secret_key": new_secret_key(),
            "canonical_id": canonical_id_for(secrets.token_hex(16)),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        write_file_durably(path, json.dumps(stored).encode(), mode=0o600)
        os.chmod(path, 0o600)
        generated = True
    env_access = os.environ.get("STRATUM_ACCESS_KEY", "")
    source = "environment" if env_access else "config" if config_access else "file"
    access = env_access or config_access or stored["access_key"]
    secret = os.environ.get("STRATUM_SECRET_KEY") or config_secret or stored["secret_key"]
    if access != stored["access_key"]:
        generated = False  # the operator chose the keys; nothing to announce
    user = User(access, secret, stored["canonical_id"], "root")
    return RootCredentials(user=user, generated=generated, source=source)


def record_root_in_use(data_dir: Path, root: RootCredentials) -> None:
    """The serving process notes the access key it took from its environment (blocking)."""
    path = data_dir / IN_USE_FILE
    if root.source != "environment":
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(data_dir)
        return
    record = {"version": 1, "access_key": root.user.access_key, "source": root.source}
    try:
        if json.loads(path.read_text()) == record:
            return
    except (OSError, ValueError):
        pass
    write_file_durably(path, json.dumps(record).encode(), mode=0o600)


def root_in_use(data_dir: Path, own: RootCredentials) -> User:
    """The root user as the server uses it, for a command run beside it (blocking).

    This process's own keys when they come from its environment (the operator named them);
    else the access key the server recorded from its environment, without its secret (a
    command that must sign as root needs the keys in its own environment); else this
    process's, which are the server's: the same config and file."""
    if own.source == "environment":
        return own.user
    try:
        recorded = json.loads((data_dir / IN_USE_FILE).read_text())
        access = str(recorded["access_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return own.user
    if access == own.user.access_key:
        return own.user
    return User(access, "", own.user.canonical_id, "root")


class UserDirectory:
    """Looks up keys: root first, then the users in LMDB.

    A lookup reads the user's record (as any request reads metadata) and opens its sealed
    secret only when the record differs from the one last seen: a request costs no
    decryption, and a user added, changed or removed by another process counts at once.
    """

    def __init__(self, meta: MetaStore, root: User, secrets: UserSecrets) -> None:
        self.meta = meta
        self.root = root
        self.secrets = secrets
        self._seen: dict[str, tuple[UserRecord, User | None]] = {}

    def lookup(self, access_key: str) -> User | None:
        if access_key == self.root.access_key:
            return self.root
        record = self.meta.read(lambda tx: catalog.get_user(tx, access_key))
        if record is None:
            self._seen.pop(access_key, None)
            return None
        seen = self._seen.get(access_key)
        if seen is not None and seen[0] == record:
            return seen[1]
        user = self._open(record)
        self._seen[access_key] = (record, user)
        return user

    def _open(self, record: UserRecord) -> User | None:
        """The user with its secret; None (logged) when the secret cannot be opened."""
        secret = record.secret_key
        if record.sealed_secret:
            try:
                secret = self.secrets.open(record.access_key, record.sealed_secret)
            except SealedSecretError as exc:
                log.error("user %s cannot sign in: %s", record.access_key, exc)
                return None
        return User(record.access_key, secret, record.canonical_id, record.display_name)

    def list(self) -> list[UserInfo]:
        records = self.meta.read(catalog.list_users)
        root = self.root
        return [UserInfo(root.access_key, root.display_name, root.canonical_id)] + [
            UserInfo(r.access_key, r.display_name, r.canonical_id) for r in records
        ]

    def add(
        self,
        access_key: str,
        secret_key: str,
        display_name: str,
        now: float,
        *,
        canonical_id: str = "",
    ) -> User:
        """Add a user (blocking); ``canonical_id``: adopt this owner id instead of a new one
        (refused if root or another user has it)."""
        if access_key == self.root.access_key:
            raise ValueError(f"{access_key} is the root user's key")
        if not 3 <= len(access_key) <= 128 or not access_key.isprintable() or " " in access_key:
            raise ValueError("an access key is 3 to 128 printable characters without spaces")
        if len(secret_key) < 8:
            raise ValueError("a secret key has at least 8 characters")
        if canonical_id and not CANONICAL_ID.fullmatch(canonical_id):
            raise ValueError("a canonical id is 64 lowercase hex digits")
        if canonical_id == self.root.canonical_id:
            raise ValueError("that id is the root user's")
        self._refuse_another_key(self.meta.read(catalog.list_users))
        record = UserRecord(
            access_key=access_key,
            secret_key="",
            canonical_id=canonical_id or new_canonical_id(),
            display_name=display_name or access_key,
            created=now,
            sealed_secret=self.secrets.seal(access_key, secret_key),
        )

        def add(tx: Tx) -> None:
            if catalog.get_user(tx, access_key) is not None:
                raise ValueError(f"user {access_key} exists already")
            for other in catalog.list_users(tx):
                if other.canonical_id == record.canonical_id:
                    raise ValueError(f"user {other.access_key} has that id")
            catalog.put_user(tx, record)

        self.meta.write_sync(add)
        return User(access_key, secret_key, record.canonical_id, record.display_name)

    def set_secret(self, access_key: str, secret_key: str, *, new_key: bool = False) -> None:
        """Give a user a new secret (blocking). ``new_key``: even when other users' secrets are
        sealed with a key that is missing (lost for good: they need new secrets too)."""
        if len(secret_key) < 8:
            raise ValueError("a secret key has at least 8 characters")
        if not new_key:
            self._refuse_another_key(self.meta.read(catalog.list_users))
        sealed = self.secrets.seal(access_key, secret_key)

        def update(tx: Tx) -> None:
            record = catalog.get_user(tx, access_key)
            if record is None:
                raise ValueError(f"no user {access_key}")
            catalog.put_user(tx, replace(record, secret_key="", sealed_secret=sealed))

        self.meta.write_sync(update)

    def _refuse_another_key(self, records: Sequence[UserRecord]) -> None:
        """Sealing with a new key would strand the secrets sealed with a missing one."""
        have = self.secrets.key_id()
        for record in records:
            needed = sealed_key_id(record.sealed_secret)
            if record.sealed_secret and needed != have:
                raise ValueError(
                    f"the secret of {record.access_key} (and maybe others) is sealed with key "
                    f"{needed or '?'}, which {self.secrets.path} does not hold: restore that "
                    "key file first; if it is lost for good, give those users new secrets "
                    "(`stratum user secret ACCESS_KEY NEW_SECRET --new-key`)"
                )

    def seal_plaintext(self) -> int:
        """Seal the secrets of records that hold them in plaintext; how many (blocking).

        Not when existing sealed secrets need a key that is missing, nor when the key file
        cannot be read: it is logged, and the plaintext records wait for the key file."""
        records = self.meta.read(catalog.list_users)
        plain = [r for r in records if r.secret_key]
        if not plain:
            return 0
        try:
            self._refuse_another_key(records)
            sealed = [
                replace(
                    r, secret_key="", sealed_secret=self.secrets.seal(r.access_key, r.secret_key)
                )
                for r in plain
            ]
        except (ValueError, KeyFileError) as exc:
            log.error("secrets of %d user(s) left unsealed: %s", len(plain), exc)
            return 0

        def seal(tx: Tx) -> int:
            count = 0
            for old, new in zip(plain, sealed, strict=True):
                if catalog.get_user(tx, old.access_key) == old:  # unchanged since read
                    catalog.put_user(tx, new)
                    count += 1
            return count

        count = self.meta.write_sync(seal)
        log.info("sealed the secrets of %d user(s) stored in plaintext", count)
        return count
