"""[server] tls_cert and tls_key: both or neither, and files that load, or the config is refused."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest

from stratum.config import ConfigError, load_config
from stratum.web.tls import load_server_tls
from tests.tlscerts import make_certificate


def check(tmp_path: Path, cert: Path | None, key: Path | None) -> None:
    lines = ["[server]"]
    if cert is not None:
        lines.append(f'tls_cert = "{cert}"')
    if key is not None:
        lines.append(f'tls_key = "{key}"')
    path = tmp_path / "stratum.toml"
    path.write_text("\n".join(lines) + "\n")
    load_config(path)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_certificate(cert, key)
    return cert, key


def test_a_certificate_and_its_key_load(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    check(tmp_path, *pair)
    config = load_config(tmp_path / "stratum.toml")
    assert (config.server.tls_cert, config.server.tls_key) == pair
    check(tmp_path, None, None)  # plain HTTP, the default
    assert load_config(tmp_path / "stratum.toml").server.tls_cert is None


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_both_or_neither(tmp_path: Path, pair: tuple[Path, Path], missing: str) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match=f"server.tls_{missing}: must be set too when"):
        check(tmp_path, None if missing == "cert" else cert, None if missing == "key" else key)


def test_unreadable_mismatched_and_garbage_files(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match=r"server.tls_cert: cannot read .*No such file"):
        check(tmp_path, tmp_path / "absent.pem", key)
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    make_certificate(other_cert, other_key)
    with pytest.raises(ConfigError, match="the key does not match the certificate"):
        check(tmp_path, cert, other_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM certificate and its unencrypted PEM key"):
        check(tmp_path, garbage, key)


async def test_a_start_mid_renewal_waits_for_the_matching_pair(tmp_path: Path) -> None:
    """A renewal replaces the key, then the certificate: a process starting between the two
    waits for the pair instead of ending the server; a mismatch that lasts is an error."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_certificate(cert, key)
    new_cert, new_key = tmp_path / "new-cert.pem", tmp_path / "new-key.pem"
    make_certificate(new_cert, new_key)
    os.replace(new_key, key)  # half-way through the renewal

    async def finish() -> None:
        await asyncio.sleep(0.2)
        os.replace(new_cert, cert)

    renewal = asyncio.ensure_future(finish())
    tls = await load_server_tls(cert, key)
    await renewal
    assert tls.listening is tls.current
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        make_certificate(tmp_path / "other.pem", tmp_path / "other-key.pem")
        await load_server_tls(tmp_path / "other.pem", key, wait=0.2)
