"""Users and their keys.

Every access key belongs to a user with a stable canonical id (64 hex, as AWS shows
owner ids) and a display name. Users other than root live in LMDB (``users``), so
`stratum user add` in another process takes effect on the next request of a
running server without a restart.

The root user's keys come from the environment (``STRATUM_ACCESS_KEY`` /
``STRATUM_SECRET_KEY``), else the config, else a file generated on first start:
``<data_dir>/root-credentials.json`` (mode 0600, format version 1)::

    {"version": 1, "access_key": "...", "secret_key": "...", "canonical_id": "<64 hex>"}

The canonical id stays the file's even when the environment supplies other keys,
so buckets keep their owner across key rotation.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from stratum.meta import catalog
from stratum.meta.records import UserRecord
from stratum.meta.store import MetaStore, Tx
from stratum.util.fsio import write_file_durably

ROOT_FILE = "root-credentials.json"
ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    canonical_id: str
    display_name: str

    def __repr__(self) -> str:  # never print a secret by accident
        return f"User({self.access_key!r}, {self.display_name!r})"


@dataclass(frozen=True)
class RootCredentials:
    user: User
    generated: bool  # first start: the caller prints the secret once


def canonical_id_for(seed: str) -> str:
    return hashlib.sha256(f"stratum-user:{seed}".encode()).hexdigest()


def load_root_credentials(
    data_dir: Path, config_access: str = "", config_secret: str = ""
) -> RootCredentials:
    """Blocking; call at start-up."""
    path = data_dir / ROOT_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    generated = False
    if not stored:
        stored = {
            "version": 1,  # type: ignore[dict-item]
            "access_key": "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(20)),
            "secret_key": secrets.token_urlsafe(30),
            "canonical_id": canonical_id_for(secrets.token_hex(16)),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        write_file_durably(path, json.dumps(stored).encode(), mode=0o600)
        os.chmod(path, 0o600)
        generated = True
    access = os.environ.get("STRATUM_ACCESS_KEY") or config_access or stored["access_key"]
    secret = os.environ.get("STRATUM_SECRET_KEY") or config_secret or stored["secret_key"]
    if access != stored["access_key"]:
        generated = False  # the operator chose the keys; nothing to announce
    user = User(access, secret, stored["canonical_id"], "root")
    return RootCredentials(user=user, generated=generated)


class UserDirectory:
    """Looks up keys: root first, then the users in LMDB."""

    def __init__(self, meta: MetaStore, root: User) -> None:
        self.meta = meta
        self.root = root

    def lookup(self, access_key: str) -> User | None:
        if access_key == self.root.access_key:
            return self.root
        record = self.meta.read(lambda tx: catalog.get_user(tx, access_key))
        if record is None:
            return None
        return User(record.access_key, record.secret_key, record.canonical_id, record.display_name)

    def list(self) -> list[User]:
        records = self.meta.read(catalog.list_users)
        return [self.root] + [
            User(r.access_key, r.secret_key, r.canonical_id, r.display_name) for r in records
        ]

    def add(self, access_key: str, secret_key: str, display_name: str, now: float) -> User:
        if access_key == self.root.access_key:
            raise ValueError(f"{access_key} is the root user's key")
        if not 3 <= len(access_key) <= 128 or not access_key.isprintable() or " " in access_key:
            raise ValueError("an access key is 3 to 128 printable characters without spaces")
        if len(secret_key) < 8:
            raise ValueError("a secret key has at least 8 characters")
        record = UserRecord(
            access_key=access_key,
            secret_key=secret_key,
            canonical_id=canonical_id_for(access_key),
            display_name=display_name or access_key,
            created=now,
        )

        def add(tx: Tx) -> None:
            if catalog.get_user(tx, access_key) is not None:
                raise ValueError(f"user {access_key} exists already")
            catalog.put_user(tx, record)

        self.meta.write_sync(add)
        return User(access_key, secret_key, record.canonical_id, record.display_name)

    def remove(self, access_key: str) -> bool:
        return self.meta.write_sync(lambda tx: catalog.delete_user(tx, access_key))
