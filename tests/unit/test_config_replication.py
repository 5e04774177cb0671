"""[replication.<name>] tables: one per target, unknown keys refused, a site id required."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.config import ConfigError, load_config, replication_credentials

TARGET = """
[server]
site_id = 7
replication_keys = ["REPLICAKEY0001"]

[replication.offsite]
buckets = ["photos", "backup"]
endpoint = "https://stratum.parents.example:9000"
region = "eu-central-1"
bucket = "copy-{bucket}"
prefix = "home/"
credentials_file = "offsite.toml"
delete_markers = false

[replication.europe]
buckets = ["*"]
endpoint = "http://127.0.0.1:9100"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stratum.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_targets_load_in_file_order_with_their_defaults(tmp_path: Path) -> None:
    (tmp_path / "offsite.toml").write_text('access_key = "AK1"\nsecret_key = "secret"\n')
    config = load_config(write(tmp_path, TARGET))
    assert config.server.site_id == 7
    assert config.server.replication_keys == ("REPLICAKEY0001",)
    offsite, europe = config.replication
    assert offsite.name == "offsite" and europe.name == "europe"
    assert offsite.buckets == ("photos", "backup") and offsite.region == "eu-central-1"
    assert offsite.target_bucket("photos") == "copy-photos" and offsite.prefix == "home/"
    assert offsite.credentials_file == tmp_path / "offsite.toml"
    assert not offsite.delete_markers and europe.delete_markers
    assert offsite.covers("backup") and not offsite.covers("music") and europe.covers("music")
    assert europe.target_bucket("music") == "music" and europe.credentials_file is None
    assert config.target("europe") is europe
    creds = replication_credentials(config, "offsite")
    assert creds is not None and creds.access_key == "AK1"
    assert replication_credentials(config, "europe") is None


def test_no_file_means_no_targets() -> None:
    assert load_config(None).replication == ()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (TARGET + "speed = 3\n", "replication.europe.speed: unknown key"),
        (TARGET.replace('buckets = ["*"]\n', ""), "replication.europe.buckets: is required"),
        (TARGET.replace('endpoint = "http://127.0.0.1:9100"\n', ""), "europe.endpoint: is req"),
        (TARGET.replace("site_id = 7\n", ""), "server.site_id: must be set"),
        (TARGET.replace("[replication.europe]", '[replication."a b"]'), "1-64 of A-Z"),
        (TARGET.replace('buckets = ["*"]', 'buckets = ["No_Such"]'), 'bucket names or "*"'),
        (TARGET.replace('buckets = ["*"]', "buckets = 3"), "an array of strings"),
        (TARGET.replace('"copy-{bucket}"', '"Copy"'), "must be an S3 bucket name"),
        ("[replication]\noffsite = 1\n", "replication.offsite: must be a table"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, why: str) -> None:
    assert why in refused(tmp_path, text)
