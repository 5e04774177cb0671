"""The appliance's certificate: made with openssl at first boot, named in stratum.toml, its
fingerprint in the credentials note, and good for a real Stratum and boto3."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from appliance import cli, render, system
from appliance.settings import Settings
from stratum.config import load_config
from tests.server.conftest import start_server
from tests.server.faultload import stop_cleanly


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl here")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = render.certificate_command(
        "vault", ["192.168.1.20", "fe80::1%eth0", "bogus;rm"], str(cert), str(key)
    )
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def test_the_names_a_client_may_use() -> None:
    assert render.certificate_names("vault", ["192.168.1.20", "127.0.0.1", "x y"]) == [
        "DNS:vault.local",
        "DNS:vault",
        "DNS:localhost",
        "IP:127.0.0.1",
        "IP:::1",
        "IP:192.168.1.20",
    ]


def test_openssl_makes_what_the_note_and_the_config_name(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = made
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-ext", "subjectAltName"],
        input=cert.read_text(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fingerprint = render.fingerprint(cert.read_text())
    assert f"Fingerprint={fingerprint}" in shown
    assert "DNS:vault.local" in shown and "IP Address:192.168.1.20" in shown
    note = render.credentials_note(
        "vault", "AK", "SK", port=9000, region="us-east-1", fingerprint=fingerprint
    )
    assert "https://vault.local:9000" in note and "--ca-bundle stratum-cert.pem" in note
    assert render.parse_fingerprint(note) == fingerprint
    assert render.parse_credentials_note(note) == ("AK", "SK")
    assert (
        render.parse_fingerprint(render.credentials_note("v", "A", "S", port=1, region="r")) is None
    )
    config = render.stratum_config([], Settings(), ("AK", "SK"), (str(cert), str(key)))
    path = tmp_path / "stratum.toml"
    path.write_text(render.dump_toml(config))
    loaded = load_config(path)  # what `stratum config check` does
    assert (loaded.server.tls_cert, loaded.server.tls_key) == (cert, key)


def test_a_server_with_it_answers_boto3(made: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = made
    config = tmp_path / "stratum.toml"
    config.write_text(
        f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    server = start_server(tmp_path / "data", config=config)
    try:
        s3 = server.client(verify=str(cert))  # https://127.0.0.1:<port>: in the certificate
        s3.create_bucket(Bucket="pi-photos")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["pi-photos"]
    finally:
        stop_cleanly(server)


def test_first_boot_makes_it_once_and_leaves_a_copy_on_the_boot_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl here")
    tls = tmp_path / "etc" / "tls"
    monkeypatch.setattr(system, "TLS_DIR", tls)
    monkeypatch.setattr(system, "TLS_CERT", tls / "cert.pem")
    monkeypatch.setattr(system, "TLS_KEY", tls / "key.pem")
    monkeypatch.setattr(system, "LOG", tmp_path / "appliance.log")
    monkeypatch.setattr(system, "addresses", lambda: ["10.0.2.15"])
    monkeypatch.setattr(cli, "CERT_FILE", tmp_path / "boot" / "stratum-cert.pem")
    monkeypatch.setattr(cli, "say", lambda message: None)
    first = cli.certificate(Settings(hostname="vault"))
    assert first is not None and first == render.fingerprint((tls / "cert.pem").read_text())
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o640
    assert stat.S_IMODE(tls.stat().st_mode) == 0o750
    assert (tmp_path / "boot" / "stratum-cert.pem").read_text() == (tls / "cert.pem").read_text()
    assert cli.certificate(Settings(hostname="vault")) == first  # kept, never made again
    (tls / "cert.pem").write_text("damaged\n")
    assert cli.certificate(Settings(hostname="vault")) is None  # plain HTTP, said on the console
