"""Users' secret keys, sealed (AES-256-GCM) under a key file kept in the data directory.

The metadata store, and so every copy of it the backups put on each disk
(:mod:`stratum.maintenance.backups`), holds users' secrets only sealed: a copy of a disk
does not hand out working keys. The key that opens them is
``<data_dir>/user-secrets.key`` (32 random bytes, mode 0600, :mod:`stratum.util.keyfile`),
beside ``root-credentials.json``, never on the data disks. Back it up with the data
directory: without it every user but root needs a new secret.

A sealed secret, as :class:`~stratum.meta.records.UserRecord` stores it in
``sealed_secret`` (format 1)::

    "1.<key id: 8 hex>.<base64url, unpadded: nonce (12 bytes) | ciphertext | tag (16 bytes)>"

- the key id is the first 4 bytes of SHA-256(``"stratum user-secrets key id\\0"`` | key),
  in hex: it tells "the key file is missing or another one" from "the record is damaged";
- the ciphertext is the secret's UTF-8, encrypted with a random nonce; the associated data
  is ``"stratum user secret 1\\0"`` | the access key's UTF-8, so a sealed secret moved into
  another user's record does not open.

``cryptography`` is imported when a secret is first sealed or opened: a server whose only
user is root never loads it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from stratum.util import keyfile

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "user-secrets.key"
SEALED_VERSION = "1"
NONCE_LEN = 12
_KEY_ID_CONTEXT = b"stratum user-secrets key id\x00"
_AAD_CONTEXT = b"stratum user secret 1\x00"


class SealedSecretError(Exception):
    """A sealed secret cannot be opened: its key is missing or another, or it is damaged."""


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_CONTEXT + key).digest()[:4].hex()


def sealed_key_id(sealed: str) -> str:
    """The id of the key a sealed secret needs ("" if it is not one this code can read)."""
    version, _, rest = sealed.partition(".")
    return rest.partition(".")[0] if version == SEALED_VERSION else ""


class UserSecrets:
    """Seals and opens secrets with the key file of one data directory (thread-safe)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / KEY_FILE
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None
        self._key_id = ""

    def key_id(self) -> str | None:
        """The id of the key on disk, None without a key file (blocking; creates nothing)."""
        if self._aead is not None:
            return self._key_id
        try:
            return key_id_of(keyfile.read_key(self.path))
        except FileNotFoundError:
            return None

    def seal(self, access_key: str, secret: str) -> str:
        """``secret`` sealed for ``access_key``; creates the key file if there is none."""
        aead, key_id = self._cipher(create=True)
        nonce = os.urandom(NONCE_LEN)
        sealed = nonce + aead.encrypt(nonce, secret.encode(), _aad(access_key))
        text = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        return f"{SEALED_VERSION}.{key_id}.{text}"

    def open(self, access_key: str, sealed: str) -> str:
        """The secret ``sealed`` holds, or :class:`SealedSecretError` saying why not."""
        from cryptography.exceptions import InvalidTag

        version, _, rest = sealed.partition(".")
        key_id, _, text = rest.partition(".")
        if version != SEALED_VERSION or not text:
            raise SealedSecretError(f"the secret of {access_key} is not a sealed secret")
        try:
            aead, have = self._cipher(create=False)
        except FileNotFoundError:
            raise SealedSecretError(
                f"the secret of {access_key} is sealed with key {key_id}, and {self.path} "
                "is missing: restore it from a backup of the data directory"
            ) from None
        except keyfile.KeyFileError as exc:
            raise SealedSecretError(str(exc)) from None
        if key_id != have:
            raise SealedSecretError(
                f"the secret of {access_key} is sealed with key {key_id}, {self.path} holds "
                f"key {have}: restore the right key file"
            )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return aead.decrypt(raw[:NONCE_LEN], raw[NONCE_LEN:], _aad(access_key)).decode()
        except (ValueError, InvalidTag):
            raise SealedSecretError(f"the sealed secret of {access_key} is damaged") from None

    def _cipher(self, *, create: bool) -> tuple[AESGCM, str]:
        with self._lock:
            if self._aead is None:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                if create:
                    key = keyfile.load_or_create_key(self.path, "the key of users' secrets")
                else:
                    key = keyfile.read_key(self.path)
                self._aead, self._key_id = AESGCM(key), key_id_of(key)
            return self._aead, self._key_id


def _aad(access_key: str) -> bytes:
    return _AAD_CONTEXT + access_key.encode("utf-8", "surrogateescape")
