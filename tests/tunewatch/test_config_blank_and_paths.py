"""Three ways a config silently read something other than what was written:

- a blank store URL (``TUNEWATCH_STORE_URL=""``, as a Kubernetes secret rendered blank
  sets it, or ``store: {url: ""}``) fell back to a new SQLite store under ``data_dir``,
  made and migrated, that `serve` reported ready on with no models; so did a blank
  ``tuning.storage_url`` and ``TUNEWATCH_DATA_DIR=""``;
- a PostgreSQL URL whose password holds an unescaped ``@`` parsed with the password's
  tail in its host, which the driver's error then quoted (stderr, logs, a failed job's
  stored error);
- ``data_dir: ~/x`` made a directory literally named ``~`` beside the config file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._config import load_config
from tunewatch._config_paths import openable_storage
from tunewatch._errors import ConfigError
from tunewatch.store._engine import parse_store_url

SECRET = "S3cretPW"
AT_IN_PASSWORD = f"postgresql+psycopg://rv:p@{SECRET}@127.0.0.1:5432/review"
ESCAPED = f"postgresql+psycopg://rv:p%40{SECRET}@127.0.0.1:5432/review"


def _config(tmp_path: Path, raw: dict[str, object]) -> Path:
    path = tmp_path / "etc" / "tunewatch.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def _stores_made(root: Path) -> list[Path]:
    return sorted(root.rglob("*.db"))


# -- blank values --------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["TUNEWATCH_STORE_URL", "TUNEWATCH_DATA_DIR"])
@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "spaces"])
def test_a_blank_environment_variable_is_refused_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data")})
    with pytest.raises(ConfigError) as info:
        load_config(path, env={variable: value})
    message = info.value.message
    assert f"${variable} is set but blank" in message
    assert "unset it" in message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"store": {"url": ""}}, "store.url"),
        ({"store": {"url": "   "}}, "store.url"),
        ({"tuning": {"storage_url": ""}}, "tuning.storage_url"),
        ({"tuning": {"storage_url": " "}}, "tuning.storage_url"),
    ],
    ids=["store-url-empty", "store-url-spaces", "storage-url-empty", "storage-url-spaces"],
)
def test_a_blank_url_in_the_file_is_refused_naming_the_key(
    tmp_path: Path, raw: dict[str, object], key: str
) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data"), **raw})
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = info.value.message
    assert f"{key}: " in message
    assert "must not be blank" in message
    assert "leave the key out" in message


def test_a_data_dir_of_spaces_in_the_file_is_refused(tmp_path: Path) -> None:
    """'' was refused already; spaces named a directory of spaces beside the file."""
    path = _config(tmp_path, {"data_dir": "  "})
    with pytest.raises(ConfigError, match=r"data_dir: .*must not be blank"):
        load_config(path, env={})
    assert list(path.parent.iterdir()) == [path]


def test_migrate_with_a_blank_store_url_variable_exits_2_and_makes_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data")})
    monkeypatch.setenv("TUNEWATCH_STORE_URL", "")
    assert main(["--config", str(path), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "$TUNEWATCH_STORE_URL is set but blank" in err
    assert _stores_made(tmp_path) == []
    assert not (tmp_path / "data").exists()


def test_migrate_with_a_blank_store_url_in_the_file_exits_2_and_makes_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    monkeypatch.delenv("TUNEWATCH_DATA_DIR", raising=False)
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data"), "store": {"url": ""}})
    assert main(["--config", str(path), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "store.url: " in err and "must not be blank" in err
    assert _stores_made(tmp_path) == []


def test_a_null_store_url_still_means_sqlite_under_data_dir(tmp_path: Path) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data"), "store": {"url": None}})
    config = load_config(path, env={})
    assert config.store_url == f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"


# -- '@' in a password ---------------------------------------------------------------------


def test_parse_store_url_refuses_a_host_holding_an_at_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(AT_IN_PASSWORD)
    message = info.value.message
    assert "its host holds '@'" in message
    assert "%40" in message
    assert SECRET not in message


def test_openable_storage_refuses_a_host_holding_an_at_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="its host holds '@'") as info:
        openable_storage(AT_IN_PASSWORD)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "env", "named"),
    [
        ({"store": {"url": AT_IN_PASSWORD}}, {}, "`store.url`"),
        ({}, {"TUNEWATCH_STORE_URL": AT_IN_PASSWORD}, "$TUNEWATCH_STORE_URL"),
        ({"tuning": {"storage_url": AT_IN_PASSWORD}}, {}, "`tuning.storage_url`"),
    ],
    ids=["store-url", "store-url-variable", "tuning-storage-url"],
)
def test_a_url_whose_password_holds_an_unescaped_at_is_refused_unquoted(
    tmp_path: Path, raw: dict[str, object], env: dict[str, str], named: str
) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data"), **raw})
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    message = info.value.message
    assert named in message
    assert "its host holds '@': write an '@' in the password as %40" in message
    assert SECRET not in message


def test_a_password_with_its_at_escaped_loads_and_parses_to_the_host(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        {
            "data_dir": str(tmp_path / "data"),
            "store": {"url": ESCAPED},
            "tuning": {"storage_url": ESCAPED.replace("/review", "/optuna")},
        },
    )
    config = load_config(path, env={})
    parsed = parse_store_url(config.store_url)
    assert (parsed.host, parsed.password) == ("127.0.0.1", f"p@{SECRET}")
    assert openable_storage(config.tuning_storage_url) == config.tuning_storage_url


def test_models_with_an_at_in_the_variables_password_exits_2_without_printing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, {"data_dir": str(tmp_path / "data")})
    monkeypatch.setenv("TUNEWATCH_STORE_URL", AT_IN_PASSWORD)
    assert main(["--config", str(path), "models"]) == 2
    captured = capsys.readouterr()
    assert "its host holds '@'" in captured.err
    assert SECRET not in captured.err + captured.out


# -- '~' in data_dir -----------------------------------------------------------------------


def test_a_files_data_dir_under_home_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    monkeypatch.delenv("TUNEWATCH_DATA_DIR", raising=False)
    path = _config(tmp_path, {"data_dir": "~/tw"})
    assert load_config(path, env={}).data_dir == str(home / "tw")
    assert main(["--config", str(path), "migrate"]) == 0
    capsys.readouterr()
    assert (home / "tw" / "tunewatch.db").is_file()
    assert not (path.parent / "~").exists()


def test_the_data_dir_variable_under_home_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={"TUNEWATCH_DATA_DIR": "~/tw"})
    assert config.data_dir == str(home / "tw")
    assert config.store_url == f"sqlite:///{home / 'tw' / 'tunewatch.db'}"
