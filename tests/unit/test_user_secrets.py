"""Users' secrets are sealed in LMDB, so no copy of the store hands out working keys; users
get ids of their own; the root key a server took from its environment is what a command run
beside it shows. Real LMDB stores and key files in a temporary data directory."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from stratum.cli.main import main
from stratum.meta import catalog
from stratum.meta.records import UserRecord
from stratum.meta.store import MetaStore
from stratum.service.user_secrets import KEY_FILE, SealedSecretError, UserSecrets
from stratum.service.users import (
    IN_USE_FILE,
    ROOT_FILE,
    User,
    UserDirectory,
    canonical_id_for,
    load_root_credentials,
    record_root_in_use,
    root_in_use,
)
from stratum.util.keyfile import KeyFileError

SECRET = "alice-secret-0123456789"
ROOT = User("ROOTKEY", "root-secret-key", "f" * 64, "root")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def meta(store: MetaStore) -> MetaStore:
    return store  # in data_dir / "meta"


def directory(meta: MetaStore, data_dir: Path) -> UserDirectory:
    return UserDirectory(meta, ROOT, UserSecrets(data_dir))


def test_no_copy_of_the_store_holds_a_secret(meta: MetaStore, data_dir: Path) -> None:
    users = directory(meta, data_dir)
    alice = users.add("ALICEKEY", SECRET, "alice", 1.0)
    copy = data_dir / "copy"
    meta.copy_to(copy)  # what the backups write to every disk
    for mdb in (copy / "data.mdb", data_dir / "meta" / "data.mdb"):
        assert SECRET.encode() not in mdb.read_bytes()
    key = data_dir / KEY_FILE
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    record = meta.read(lambda tx: catalog.get_user(tx, "ALICEKEY"))
    assert record is not None and record.secret_key == "" and record.sealed_secret
    assert users.lookup("ALICEKEY") == alice and alice.secret_key == SECRET
    # another process (a fresh directory, another UserSecrets) opens it with the key file
    assert directory(meta, data_dir).lookup("ALICEKEY") == alice


def test_plaintext_records_are_sealed_on_start(meta: MetaStore, data_dir: Path) -> None:
    old = UserRecord("OLDKEY", SECRET, canonical_id_for("OLDKEY"), "old", 1.0)
    meta.write_sync(lambda tx: catalog.put_user(tx, old))
    users = directory(meta, data_dir)
    assert users.lookup("OLDKEY") == User("OLDKEY", SECRET, old.canonical_id, "old")
    assert users.seal_plaintext() == 1
    assert users.seal_plaintext() == 0
    record = meta.read(lambda tx: catalog.get_user(tx, "OLDKEY"))
    assert record is not None and not record.secret_key
    assert record.canonical_id == old.canonical_id, "an existing user keeps its id"
    assert directory(meta, data_dir).lookup("OLDKEY") == User(
        "OLDKEY", SECRET, old.canonical_id, "old"
    )
    assert SECRET.encode() not in _copy(meta, data_dir)


def _copy(meta: MetaStore, data_dir: Path) -> bytes:
    target = data_dir / "copy-for-check"
    meta.copy_to(target)
    return (target / "data.mdb").read_bytes()


def test_a_sealed_secret_opens_only_for_its_user_and_key(
    meta: MetaStore, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = directory(meta, data_dir)
    users.add("ALICEKEY", SECRET, "alice", 1.0)
    users.add("BOBKEY", "bob-secret-0000", "bob", 1.0)
    alice = meta.read(lambda tx: catalog.get_user(tx, "ALICEKEY"))
    assert alice is not None
    with pytest.raises(SealedSecretError, match="damaged"):
        users.secrets.open("BOBKEY", alice.sealed_secret)  # moved into bob's record
    (data_dir / KEY_FILE).unlink()
    fresh = directory(meta, data_dir)
    with caplog.at_level(logging.ERROR, "stratum.users"):
        assert fresh.lookup("ALICEKEY") is None
    assert "is missing: restore it" in caplog.text
    # no new key while secrets need the lost one; unless told it is lost for good
    with pytest.raises(ValueError, match="restore that key file first"):
        fresh.add("CAROLKEY", "carol-secret", "carol", 1.0)
    assert not (data_dir / KEY_FILE).exists()
    fresh.set_secret("ALICEKEY", "alice-new-secret", new_key=True)
    assert fresh.lookup("ALICEKEY") == User(
        "ALICEKEY", "alice-new-secret", alice.canonical_id, "alice"
    )
    assert fresh.lookup("BOBKEY") is None  # still needs the lost key


def test_lookups_follow_changes_made_elsewhere(meta: MetaStore, data_dir: Path) -> None:
    users = directory(meta, data_dir)
    users.add("ALICEKEY", SECRET, "alice", 1.0)
    assert users.lookup("ALICEKEY") is not None
    other = directory(meta, data_dir)  # `stratum user secret` in another process
    other.set_secret("ALICEKEY", "second-secret")
    found = users.lookup("ALICEKEY")
    assert found is not None and found.secret_key == "second-secret"
    meta.write_sync(lambda tx: catalog.delete_user(tx, "ALICEKEY"))
    assert users.lookup("ALICEKEY") is None


def test_ids_belong_to_users_not_to_keys(meta: MetaStore, data_dir: Path) -> None:
    users = directory(meta, data_dir)
    first = users.add("ALICEKEY", SECRET, "alice", 1.0)
    assert first.canonical_id != canonical_id_for("ALICEKEY")
    meta.write_sync(lambda tx: catalog.delete_user(tx, "ALICEKEY"))
    again = users.add("ALICEKEY", SECRET, "alice", 2.0)
    assert again.canonical_id != first.canonical_id
    adopted = users.add("BOBKEY", SECRET, "bob", 2.0, canonical_id=first.canonical_id)
    assert adopted.canonical_id == first.canonical_id
    for taken in (ROOT.canonical_id, again.canonical_id):
        with pytest.raises(ValueError):
            users.add("CAROLKEY", SECRET, "carol", 2.0, canonical_id=taken)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        users.add("CAROLKEY", SECRET, "carol", 2.0, canonical_id="F" * 64)


def test_commands_show_the_root_key_the_server_took_from_its_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRATUM_ACCESS_KEY", "ENVROOTKEY")
    monkeypatch.setenv("STRATUM_SECRET_KEY", "env-root-secret")
    served = load_root_credentials(data_dir)
    assert served.source == "environment"
    record_root_in_use(data_dir, served)  # what the serving process does at start
    monkeypatch.delenv("STRATUM_ACCESS_KEY")
    monkeypatch.delenv("STRATUM_SECRET_KEY")
    generated = json.loads((data_dir / ROOT_FILE).read_text())["access_key"]
    own = load_root_credentials(data_dir)
    assert own.user.access_key == generated != "ENVROOTKEY"
    root = root_in_use(data_dir, own)
    assert (root.access_key, root.canonical_id) == ("ENVROOTKEY", own.user.canonical_id)
    assert root.secret_key == "", "the environment's secret is never written down"
    assert "env-root-secret" not in (data_dir / IN_USE_FILE).read_text()

    assert main(["user", "list", "--json", "--data-dir", str(data_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"access_key": "ENVROOTKEY", "display_name": "root", "id": root.canonical_id}]
    assert main(["user", "add", "ENVROOTKEY", "some-secret", "--data-dir", str(data_dir)]) == 1
    assert "root user's key" in capsys.readouterr().err

    # started again without them: the file's keys are in use, and the note goes
    record_root_in_use(data_dir, own)
    assert not (data_dir / IN_USE_FILE).exists()
    assert root_in_use(data_dir, own) == own.user


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_key_file_made_by_root_belongs_to_the_data_directory_owner(data_dir: Path) -> None:
    """`sudo stratum user add` beside a server running as its own user: the server must be able
    to read the key the command created."""
    os.chown(data_dir, 4242, 4243)
    UserSecrets(data_dir).seal("ALICEKEY", SECRET)
    key = (data_dir / KEY_FILE).stat()
    assert (key.st_uid, key.st_gid, stat.S_IMODE(key.st_mode)) == (4242, 4243, 0o600)
    assert not [p.name for p in data_dir.iterdir() if p.name.startswith(".")], "no temp file left"


def test_an_unreadable_key_file_refuses_the_user_and_nothing_else(
    meta: MetaStore, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory(meta, data_dir).add("ALICEKEY", SECRET, "alice", 1.0)
    old = UserRecord("OLDKEY", SECRET, canonical_id_for("OLDKEY"), "old", 1.0)
    meta.write_sync(lambda tx: catalog.put_user(tx, old))
    key = data_dir / KEY_FILE
    key.rename(data_dir / "key-aside")
    key.mkdir()  # what a process that cannot read the file meets too: an OSError
    users = directory(meta, data_dir)
    with caplog.at_level(logging.ERROR, "stratum.users"):
        assert users.lookup("ALICEKEY") is None
        assert users.seal_plaintext() == 0
    assert caplog.text.count("cannot read it") == 2
    assert users.lookup("OLDKEY") == User("OLDKEY", SECRET, old.canonical_id, "old")
    with pytest.raises(KeyFileError, match="cannot read it"):
        users.add("CAROLKEY", "carol-secret", "carol", 1.0)
