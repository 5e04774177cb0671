"""The configuration file: defaults, renderings, and every rejection."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path

import pytest

from stratum.config import (
    Config,
    ConfigError,
    Credentials,
    cold_credentials,
    load_config,
    server_credentials,
    settings,
    split_listen,
)
from stratum.config.render import (
    iter_keys,
    iter_tables,
    render_default_toml,
    render_markdown_reference,
)


def write(tmp_path: Path, text: str, name: str = "stratum.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rejected(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"stratum: config error in {path}: ")
    assert error.path == path
    return error


# --- defaults and renderings ------------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    data_dir = tmp_path / "stratum-data"
    assert config.source is None
    assert config.server.listen == "127.0.0.1:9000"  # this machine only, unless told
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9000)
    assert config.server.region == "us-east-1"
    assert config.server.workers == 0  # one per core, up to 4
    assert config.storage.data_dir == data_dir
    assert config.storage.block_size == 256 * 1024
    assert config.storage.max_object_size == 5 * 2**30
    assert config.storage.multipart_expiry == 7 * 86400.0
    assert config.tiers.hot.disks == (data_dir / "disks" / "hot",)
    assert config.tiers.hot.enabled
    assert (config.tiers.hot.data_shards, config.tiers.hot.parity_shards) == (4, 2)
    assert config.tiers.warm.disks == ()
    assert not config.tiers.warm.enabled
    assert (config.tiers.warm.data_shards, config.tiers.warm.parity_shards) == (4, 2)
    assert not config.tiers.cold.enabled
    assert config.tiers.cold.credentials_file is None
    assert config.tiers.cold.encryption_key_file == data_dir / "cold.key"
    assert config.tiering.interval == 60.0
    assert config.tiering.move_rate == 50 * 2**20
    assert config.tiering.hot_low_watermark == 0.70
    assert config.scrub.interval == 30 * 86400.0
    assert config.scrub.rate == 20 * 2**20


def test_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.listen = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.storage = config.storage  # type: ignore[misc]
    hash(config)  # frozen all the way down: tuples, not lists


def test_rendered_default_file_loads_as_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, render_default_toml())
    assert load_config(path) == dataclasses.replace(load_config(), source=path)


def test_an_empty_file_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "# nothing\n")
    assert load_config(path) == dataclasses.replace(load_config(), source=path)


def _dataclass_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in ("source", "name"):
            continue
        (each,) = typing.get_args(hints[f.name])[:1] or (None,)
        if dataclasses.is_dataclass(each):  # a table of named tables: [replication.<name>]
            keys += _dataclass_keys(each, f"{prefix}{f.name}.<name>.")  # type: ignore[arg-type]
        elif dataclasses.is_dataclass(hints[f.name]):
            keys += _dataclass_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def test_every_field_is_a_documented_key() -> None:
    docs = list(iter_keys())
    assert [doc.key for doc in docs] == _dataclass_keys(Config) == list(settings())
    for doc in docs:
        assert doc.help.strip(), doc.key
        assert doc.type and doc.default, doc.key


def test_every_key_appears_in_the_default_file() -> None:
    text = render_default_toml()
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        assert len(line) <= 100
        if re.fullmatch(r"(# )?\[[a-z_.]+\]", line):  # a named table: an example, commented
            current = line.removeprefix("# ").strip("[]").replace("offsite", "<name>")
        elif re.match(r"(# )?[a-z_0-9]+ = ", line):
            sections.setdefault(current, []).append(line)
    for doc in iter_keys():
        commented = doc.inherits or "<name>" in doc.key
        expected = f"{'# ' if commented else ''}{doc.name} = {doc.default}"
        assert expected in sections[doc.table], doc.key
    # and nothing else is set
    document = tomllib.loads(text)
    set_keys = {
        f"{table}.{name}" if table else name
        for table, values in _flatten_tables(document).items()
        for name in values
    }
    assert set_keys == {
        doc.key for doc in iter_keys() if not doc.inherits and "<name>" not in doc.key
    }


def _flatten_tables(document: dict[str, object], prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            out |= _flatten_tables(value, f"{prefix}{name}.")
        else:
            out.setdefault(prefix.rstrip("."), []).append(name)
    return out


def test_every_key_appears_in_the_markdown_reference() -> None:
    text = render_markdown_reference()
    sections = text.split("### ")
    for table in iter_tables():
        (section,) = [s for s in sections if s.startswith(f"`[{table.name}]`")]
        for doc in table.keys:
            assert f"| `{doc.name}` | {doc.type} |" in section, doc.key
    assert "<data_dir>" not in text  # would vanish as an HTML tag


def test_help_is_in_the_renderings() -> None:
    toml_text = " ".join(render_default_toml().replace("# ", "").split())
    for doc in iter_keys():
        assert " ".join(doc.help.split()) in toml_text, doc.key


# --- values, paths, overrides -------------------------------------------------------------


def test_values_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
listen = "[::1]:0"
domain = "s3.home.lan"
log_format = "json"
[storage]
block_size = "1MiB"
small_object_threshold = 0
max_object_size = "10GB"
multipart_expiry = "1h30m"
[tiering]
interval = 30
hot_idle_before_warm = "0s"
hot_high_watermark = 1
promote_window = 0.5
[scrub]
rate = "1048576"
""",
    )
    config = load_config(path)
    assert (config.server.host, config.server.port) == ("::1", 0)
    assert config.server.domain == "s3.home.lan"
    assert config.storage.block_size == 2**20
    assert config.storage.small_object_threshold == 0
    assert config.storage.max_object_size == 10 * 10**9
    assert config.storage.multipart_expiry == 5400.0
    assert config.tiering.interval == 30.0
    assert isinstance(config.tiering.interval, float)
    assert config.tiering.hot_idle_before_warm == 0.0
    assert config.tiering.hot_high_watermark == 1.0
    assert isinstance(config.tiering.hot_high_watermark, float)
    assert config.tiering.promote_window == 0.5
    assert config.scrub.rate == 2**20


def test_relative_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    etc = tmp_path / "etc"
    path = write(
        etc,
        """
[storage]
data_dir = "data"
[tiers.hot]
disks = ["ssd1", "../mnt/ssd2", "/srv/ssd3"]
[tiers.warm]
disks = ["~/hdd"]
[tiers.cold]
endpoint = "https://s3.example.com"
bucket = "cold-bucket"
credentials_file = "cold.creds"
""",
    )
    config = load_config(Path("etc/stratum.toml"))
    assert config.source == path
    assert config.storage.data_dir == etc / "data"
    assert config.tiers.hot.disks == (etc / "ssd1", tmp_path / "mnt" / "ssd2", Path("/srv/ssd3"))
    assert config.tiers.warm.disks == (Path.home() / "hdd",)
    assert config.tiers.cold.credentials_file == etc / "cold.creds"
    assert config.tiers.cold.encryption_key_file == etc / "data" / "cold.key"
    assert config.tiers.cold.enabled


def test_default_data_dir_is_next_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "etc", ""))
    assert config.storage.data_dir == tmp_path / "etc" / "stratum-data"


def test_tiers_inherit_or_override_shards(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[storage]
data_shards = 6
parity_shards = 3
[tiers.hot]
parity_shards = 1
[tiers.warm]
data_shards = 1
parity_shards = 2
""",
    )
    config = load_config(path)
    assert (config.storage.data_shards, config.storage.parity_shards) == (6, 3)
    assert (config.tiers.hot.data_shards, config.tiers.hot.parity_shards) == (6, 1)
    assert (config.tiers.warm.data_shards, config.tiers.warm.parity_shards) == (1, 2)


def test_overrides_win_and_are_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "etc", '[server]\nlisten = "127.0.0.1:9000"\nregion = "eu-west-1"\n')
    overrides = {
        "server.listen": "[::]:9100",
        "storage.data_dir": Path("here"),
        "tiers.hot.disks": ["d1"],
        "server.region": None,  # an unset command-line option
    }
    config = load_config(path, overrides=overrides)
    assert config.server.listen == "[::]:9100"
    assert config.server.region == "eu-west-1"
    assert config.storage.data_dir == tmp_path / "here"
    assert config.tiers.hot.disks == (tmp_path / "d1",)
    assert load_config(overrides={"storage.data_shards": 8}).tiers.hot.data_shards == 8


def test_bad_overrides_are_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"storage.data_shard": 4})
    assert str(info.value) == (
        "stratum: config error: storage.data_shard: unknown setting,"
        " did you mean storage.data_shards?"
    )
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"server.listen": "nowhere"})
    assert info.value.path is None
    assert info.value.key == "server.listen"
    assert "HOST:PORT" in str(info.value) and "(set on the command line)" in str(info.value)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(overrides={"storage": {}})


# --- rejections ---------------------------------------------------------------------------


def test_the_message_names_file_key_and_why(tmp_path: Path) -> None:
    error = rejected(tmp_path, "[tiers.hot]\ndata_shards = 0\n")
    assert str(error) == (
        f"stratum: config error in {tmp_path / 'stratum.toml'}: "
        "tiers.hot.data_shards: must be between 1 and 255, got 0"
    )
    assert (error.key, error.why) == ("tiers.hot.data_shards", "must be between 1 and 255, got 0")


@pytest.mark.parametrize("value", ["-1", "256", '"4"', "true", "2.0"])
@pytest.mark.parametrize("name", ["data_shards", "parity_shards"])
def test_a_tiers_shard_counts_follow_the_storage_rules(
    tmp_path: Path, name: str, value: str
) -> None:
    """A value is rejected for the same reason in [storage] and in each tier."""
    whys = {
        table: rejected(tmp_path, f"[{table}]\n{name} = {value}\n").why
        for table in ("storage", "tiers.hot", "tiers.warm")
    }
    assert len(set(whys.values())) == 1, whys


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        (
            "[storage]\ndata_shard = 4",
            "storage.data_shard",
            "unknown key, did you mean data_shards?",
        ),
        ("[server]\nlisen = 'x'", "server.lisen", "unknown key, did you mean listen?"),
        ("[tier.hot]\ndisks = []", "tier", "unknown table, did you mean tiers?"),
        ("[tiers.lukewarm]\ndisks = []", "tiers.lukewarm", "unknown table"),
        ("[server]\ndata_dir = 'x'", "server.data_dir", "did you mean storage.data_dir?"),
        ("data_shards = 2", "data_shards", "did you mean storage.data_shards?"),
        ("[scrub]\nqwertyuiop = 1", "scrub.qwertyuiop", "unknown key"),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, key: str, why: str) -> None:
    error = rejected(tmp_path, text)
    assert error.key == key
    assert why in error.why


def test_no_suggestion_when_nothing_is_close(tmp_path: Path) -> None:
    assert rejected(tmp_path, "[scrub]\nqwertyuiop = 1").why == "unknown key"


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        (
            '[storage]\ndata_shards = "4"',
            "storage.data_shards",
            'must be an integer, got string "4"',
        ),
        ("[storage]\ndata_shards = true", "storage.data_shards", "must be an integer, got boolean"),
        ("[storage]\ndata_shards = 4.0", "storage.data_shards", "must be an integer, got float"),
        ("[server]\nlisten = 9000", "server.listen", "must be a string, got integer 9000"),
        ('[tiering]\nenabled = "yes"', "tiering.enabled", "must be true or false"),
        ("[tiering]\nenabled = 1", "tiering.enabled", "must be true or false"),
        ('[tiering]\nhot_high_watermark = "0.9"', "tiering.hot_high_watermark", "a number"),
        ("[tiering]\nhot_high_watermark = true", "tiering.hot_high_watermark", "a number"),
        ('[tiers.hot]\ndisks = "/mnt/a"', "tiers.hot.disks", "must be an array of paths"),
        ("[tiers.hot]\ndisks = [1]", "tiers.hot.disks", "element 0: must be a path"),
        ('[tiers.hot]\ndisks = [""]', "tiers.hot.disks", "element 0: must be a non-empty path"),
        ('[storage]\ndata_dir = ""', "storage.data_dir", "non-empty path"),
        ("[storage]\nblock_size = 4096.0", "storage.block_size", "must be a size"),
        ("[storage]\nmultipart_expiry = true", "storage.multipart_expiry", "must be a duration"),
        ("storage = 4", "storage", "must be a table [storage], got integer 4"),
        ("[server.listen]\nx = 1", "server.listen", "must be a string, got table"),
        ("[tiers]\nhot = 1", "tiers.hot", "must be a table [tiers.hot]"),
        ("[scrub]\ninterval = 2024-01-01", "scrub.interval", "must be a duration"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, key: str, why: str) -> None:
    error = rejected(tmp_path, text)
    assert error.key == key
    assert why in error.why


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        # shards
        ("[storage]\ndata_shards = 0", "storage.data_shards", "between 1 and 255, got 0"),
        ("[storage]\ndata_shards = 256", "storage.data_shards", "between 1 and 255, got 256"),
        ("[storage]\nparity_shards = -1", "storage.parity_shards", "between 0 and 255, got -1"),
        (
            "[storage]\ndata_shards = 4\nparity_shards = 4",
            "storage.parity_shards",
            "must be less than data_shards (4), got 4",
        ),
        (
            "[tiers.hot]\ndata_shards = 2\nparity_shards = 3",
            "tiers.hot.parity_shards",
            "less than data_shards (2), got 3",
        ),
        (
            "[tiers.warm]\ndata_shards = 2",
            "tiers.warm.parity_shards",
            "less than data_shards (2), got 2 (inherited from storage.parity_shards)",
        ),
        (
            "[storage]\ndata_shards = 1\nparity_shards = 3",
            "storage.parity_shards",
            "at most 2 when data_shards is 1",
        ),
        (
            "[storage]\ndata_shards = 200\nparity_shards = 100",
            "storage.parity_shards",
            "at most 256 - data_shards (56), got 100",
        ),
        # watermarks
        (
            "[tiering]\nhot_low_watermark = 0.9",
            "tiering.hot_low_watermark",
            "must be below tiering.hot_high_watermark (0.85), got 0.9",
        ),
        (
            "[tiering]\nhot_high_watermark = 0.5",
            "tiering.hot_high_watermark",
            "must be above tiering.hot_low_watermark (0.7), got 0.5",
        ),
        (
            "[tiering]\nwarm_low_watermark = 0.9\nwarm_high_watermark = 0.9",
            "tiering.warm_low_watermark",
            "must be below tiering.warm_high_watermark (0.9), got 0.9",
        ),
        ("[tiering]\nhot_low_watermark = 0", "tiering.hot_low_watermark", "greater than 0"),
        ("[tiering]\nhot_high_watermark = 1.5", "tiering.hot_high_watermark", "at most 1"),
        ("[tiering]\nwarm_low_watermark = -0.1", "tiering.warm_low_watermark", "greater than 0"),
        # listen
        ('[server]\nlisten = "9000"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "localhost"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "0.0.0.0:"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = ":9000"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "0.0.0.0:65536"', "server.listen", "port 0-65535"),
        ('[server]\nlisten = "0.0.0.0:-1"', "server.listen", "port 0-65535"),
        ('[server]\nlisten = "::1:9000"', "server.listen", "brackets"),
        ('[server]\nlisten = "[::1]9000"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "[nope]:9000"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "my host:80"', "server.listen", "must be HOST:PORT"),
        ('[server]\nlisten = "999.1.1.1:80"', "server.listen", "must be HOST:PORT"),
        # names
        ('[server]\nregion = "US-EAST-1"', "server.region", 'must look like "us-east-1"'),
        ('[server]\nregion = "us_east_1"', "server.region", 'must look like "us-east-1"'),
        ('[server]\nregion = ""', "server.region", 'must look like "us-east-1"'),
        ('[tiers.cold]\nregion = "-eu"', "tiers.cold.region", 'must look like "us-east-1"'),
        ('[server]\ndomain = "S3.Home.Lan"', "server.domain", "lowercase DNS name"),
        ('[server]\ndomain = "s3.home.lan:9000"', "server.domain", "lowercase DNS name"),
        ('[server]\nlog_format = "xml"', "server.log_format", 'must be "text" or "json"'),
        ("[server]\nworkers = -1", "server.workers", "between 0 and 1024"),
        ('[server]\naccess_key = "a/b"\nsecret_key = "s"', "server.access_key", "printable"),
        ('[server]\naccess_key = "admin"', "server.secret_key", "must be set too"),
        ('[server]\nsecret_key = "s3cr3t"', "server.access_key", "must be set too"),
        # sizes and durations
        ('[storage]\nblock_size = "4097"', "storage.block_size", "multiple of 4096"),
        ("[storage]\nblock_size = 0", "storage.block_size", "positive multiple of 4096"),
        ('[storage]\nblock_size = "1000KB"', "storage.block_size", "multiple of 4096"),
        ('[storage]\nblock_size = "-4KiB"', "storage.block_size", "bad size"),
        ('[storage]\nmax_object_size = "0B"', "storage.max_object_size", "greater than 0"),
        ('[tiering]\nmove_rate = "10M"', "tiering.move_rate", "ambiguous"),
        ('[tiering]\ninterval = "1x"', "tiering.interval", "bad duration"),
        ('[tiering]\ninterval = "10"', "tiering.interval", "needs a unit"),
        ('[tiering]\ninterval = "0s"', "tiering.interval", "greater than 0"),
        ("[tiering]\ninterval = -5", "tiering.interval", ">= 0"),
        (
            '[storage]\nsmall_object_threshold = "1MiB"\nsegment_size = "512KiB"',
            "storage.small_object_threshold",
            "must be at most storage.segment_size (512KiB), got 1MiB",
        ),
        (
            '[storage]\nsegment_size = "64KiB"',
            "storage.segment_size",
            "must be at least storage.small_object_threshold (128KiB), got 64KiB",
        ),
        # cold tier
        (
            '[tiers.cold]\nendpoint = "https://s3.example.com"',
            "tiers.cold.bucket",
            "is required when tiers.cold.endpoint is set",
        ),
        ('[tiers.cold]\nendpoint = "ftp://x.example"', "tiers.cold.endpoint", "URL"),
        ('[tiers.cold]\nendpoint = "s3.example.com"', "tiers.cold.endpoint", "URL"),
        ('[tiers.cold]\nendpoint = "https://x:99999"', "tiers.cold.endpoint", "URL"),
        ('[tiers.cold]\nbucket = "A_B"', "tiers.cold.bucket", "bucket name"),
        ('[tiers.cold]\nprefix = "/abs"', "tiers.cold.prefix", 'must not start with "/"'),
    ],
)
def test_impossible_values(tmp_path: Path, text: str, key: str, why: str) -> None:
    error = rejected(tmp_path, text)
    assert error.key == key
    assert why in error.why


@pytest.mark.parametrize(
    "text",
    [
        "[storage]\ndata_shards = 1\nparity_shards = 2",
        "[storage]\ndata_shards = 1\nparity_shards = 0",
        "[storage]\ndata_shards = 255\nparity_shards = 1",
        "[storage]\ndata_shards = 2\nparity_shards = 1",
        '[server]\nlisten = "[::1]:9000"',
        '[server]\nlisten = "[::]:65535"',
        '[server]\nlisten = "localhost:0"',
        '[server]\nlisten = "s3.home.lan:80"',
        '[server]\naccess_key = "AKIA123"\nsecret_key = "a/b+c="',
        "[server]\nworkers = 0",
        '[storage]\nblock_size = "4KiB"',
        '[storage]\nsmall_object_threshold = "64MiB"',
        "[tiering]\nhot_low_watermark = 0.1\nhot_high_watermark = 1.0",
        '[tiers.cold]\nendpoint = "http://127.0.0.1:9000/"\nbucket = "cold.stratum-1"',
    ],
)
def test_possible_values(tmp_path: Path, text: str) -> None:
    load_config(write(tmp_path, text))


def test_split_listen() -> None:
    assert split_listen("[::1]:9000") == ("::1", 9000)
    assert split_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert split_listen("my-host.lan:443") == ("my-host.lan", 443)
    with pytest.raises(ValueError):
        split_listen("[::1]")


def test_a_disk_listed_twice(tmp_path: Path) -> None:
    error = rejected(tmp_path, '[tiers.hot]\ndisks = ["/mnt/a", "/mnt/b", "/mnt/a"]')
    assert (error.key, error.why) == ("tiers.hot.disks", "/mnt/a is listed twice")


def test_a_disk_listed_twice_after_resolving(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    error = rejected(tmp_path, '[tiers.hot]\ndisks = ["real", "./x/../link"]')
    assert error.key == "tiers.hot.disks"
    assert error.why == f"{tmp_path / 'link'} is listed twice"


def test_a_disk_in_two_tiers(tmp_path: Path) -> None:
    text = '[tiers.hot]\ndisks = ["/mnt/a"]\n[tiers.warm]\ndisks = ["/mnt/b", "/mnt//a/"]'
    error = rejected(tmp_path, text)
    assert (error.key, error.why) == (
        "tiers.warm.disks",
        "/mnt/a is listed twice (also in tiers.hot.disks)",
    )


def test_a_warm_disk_that_is_the_default_hot_disk(tmp_path: Path) -> None:
    error = rejected(tmp_path, '[tiers.warm]\ndisks = ["stratum-data/disks/hot"]')
    assert error.key == "tiers.warm.disks"
    assert "the hot tier's default disk" in error.why


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == (
        f"stratum: config error in {missing}: cannot read the file: No such file or directory"
    )
    assert "not valid TOML" in rejected(tmp_path, "[server\nlisten = 1").why
    assert "not valid TOML" in rejected(tmp_path, "a = 1\na = 2").why
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nregion = "\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- secrets ------------------------------------------------------------------------------


def test_secrets_stay_out_of_repr_and_errors(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[server]\naccess_key = "AKIDEMO"\nsecret_key = "hunter2"')
    )
    assert config.server.secret_key == "hunter2"
    assert "hunter2" not in repr(config)
    assert "AKIDEMO" in repr(config)
    error = rejected(tmp_path, '[server]\naccess_key = "AKIDEMO"\nsecret_key = "hunter 2"')
    assert error.key == "server.secret_key"
    assert "hunter" not in str(error)
    error = rejected(tmp_path, '[server]\naccess_key = "AKIDEMO"\nsecret_key = 31337')
    assert "31337" not in str(error)


def test_server_credentials() -> None:
    config = load_config(overrides={"server.access_key": "AK", "server.secret_key": "SK"})
    assert server_credentials(config, {}) == Credentials("AK", "SK")
    assert "SK" not in repr(server_credentials(config, {}))
    env = {"STRATUM_ACCESS_KEY": "EAK", "STRATUM_SECRET_KEY": "ESK"}
    assert server_credentials(config, env) == Credentials("AK", "SK")  # the file wins
    assert server_credentials(load_config(), env) == Credentials("EAK", "ESK")
    assert server_credentials(load_config(), {}) is None
    with pytest.raises(ConfigError, match="set together"):
        server_credentials(load_config(), {"STRATUM_ACCESS_KEY": "EAK"})


def _cold(tmp_path: Path, credentials: str) -> Config:
    write(tmp_path, credentials, "cold.creds")
    text = (
        '[tiers.cold]\nendpoint = "https://s3.example.com"\nbucket = "cold-bucket"\n'
        'credentials_file = "cold.creds"\n'
    )
    return load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "credentials",
    [
        'access_key = "AK"\nsecret_key = "S/K+="\n',
        "# plain lines\naccess_key = AK\nsecret_key = S/K+=\n",
        "access_key=AK\n\nsecret_key='S/K+='\n",
    ],
)
def test_cold_credentials_from_file(tmp_path: Path, credentials: str) -> None:
    assert cold_credentials(_cold(tmp_path, credentials), {}) == Credentials("AK", "S/K+=")


def test_cold_credentials_from_environment_first(tmp_path: Path) -> None:
    config = _cold(tmp_path, 'access_key = "AK"\nsecret_key = "SK"\n')
    env = {"STRATUM_COLD_ACCESS_KEY": "EAK", "STRATUM_COLD_SECRET_KEY": "ESK"}
    assert cold_credentials(config, env) == Credentials("EAK", "ESK")
    assert cold_credentials(load_config(), env) == Credentials("EAK", "ESK")
    assert cold_credentials(load_config(), {}) is None


def test_bad_cold_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set together"):
        cold_credentials(_cold(tmp_path, 'access_key = "AK"\n'), {})
    with pytest.raises(ConfigError) as info:
        cold_credentials(_cold(tmp_path, 'access_key = "AK"\nsecret = "hunter2"\n'), {})
    assert "hunter2" not in str(info.value)
    assert info.value.key == "tiers.cold.credentials_file"
    with pytest.raises(ConfigError, match="line 2 is not: name = value"):
        cold_credentials(_cold(tmp_path, "access_key = AK\nhunter2\n"), {})
    with pytest.raises(ConfigError, match="holds neither"):
        cold_credentials(_cold(tmp_path, "# empty\n"), {})
    config = _cold(tmp_path, "")
    (tmp_path / "cold.creds").unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        cold_credentials(config, {})
