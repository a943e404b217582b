"""A relative `data_dir` written in a config file is read beside the file; before that it
was read under the working directory, and an upgraded daemon silently made and migrated a
new, empty store beside the file (`configs/tunewatch.yaml`'s `.tunewatch`, served from
the repository's root, listed no models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewatch import ConfigError, load_config


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any]) -> Path:
    """A config file under `configs/` with ``raw``, read from `tmp_path` (the working
    directory), where an earlier release kept its store: `.tunewatch/tunewatch.db`."""
    path = tmp_path / "configs" / "tunewatch.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / ".tunewatch").mkdir()
    (tmp_path / ".tunewatch" / "tunewatch.db").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    return path


def test_a_relative_data_dir_whose_store_only_the_working_directory_holds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _setup(tmp_path, monkeypatch, {"data_dir": ".tunewatch", "store": {"url": None}})
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = info.value.message
    assert "`data_dir` names the relative path '.tunewatch'" in message
    assert str(tmp_path / "configs" / ".tunewatch" / "tunewatch.db") in message
    assert str(tmp_path / ".tunewatch" / "tunewatch.db") in message
    assert "earlier releases read a file's `data_dir` there" in message
    assert "a command run without --config keeps its store there" in message
    assert "write the one you mean as an absolute path" in message
    assert not (tmp_path / "configs" / ".tunewatch").exists()  # nothing made


def test_a_relative_data_dir_whose_store_is_beside_the_config_file_is_read_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both stores exist: the file's, as documented (and so when only the file's does)."""
    path = _setup(tmp_path, monkeypatch, {"data_dir": ".tunewatch"})
    (tmp_path / "configs" / ".tunewatch").mkdir()
    (tmp_path / "configs" / ".tunewatch" / "tunewatch.db").write_bytes(b"")
    config = load_config(path, env={})
    assert config.data_dir == str(tmp_path / "configs" / ".tunewatch")
    (tmp_path / ".tunewatch" / "tunewatch.db").unlink()
    assert load_config(path, env={}).data_dir == str(tmp_path / "configs" / ".tunewatch")


@pytest.mark.parametrize(
    ("raw", "env", "data_dir"),
    [
        ({"data_dir": "/srv/tw"}, {}, "/srv/tw"),
        ({"models": []}, {}, ".tunewatch"),
        ({"data_dir": "state"}, {"TUNEWATCH_DATA_DIR": ".tunewatch"}, ".tunewatch"),
        (
            {"data_dir": ".tunewatch", "store": {"url": "postgresql+psycopg://db/tw"}},
            {},
            "configs/.tunewatch",
        ),
        (
            {"data_dir": ".tunewatch"},
            {"TUNEWATCH_STORE_URL": "sqlite:////srv/tw.db"},
            "configs/.tunewatch",
        ),
    ],
    ids=["absolute", "default", "environment-data-dir", "store-url", "environment-store-url"],
)
def test_a_data_dir_that_does_not_hold_the_store_or_is_not_beside_the_file_is_not_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raw: dict[str, Any],
    env: dict[str, str],
    data_dir: str,
) -> None:
    """Absolute, the default's, the environment's (all read where they always were), or a
    data directory that holds no store since the store is a URL of its own."""
    path = _setup(tmp_path, monkeypatch, raw)
    assert load_config(path, env=env).data_dir == str(tmp_path / data_dir)


def test_the_environment_overriding_the_file_s_data_dir_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The image sets `$TUNEWATCH_DATA_DIR`: a mounted config's own `data_dir` (the volume)
    was silently overridden, and the store went to the container's writable layer."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "volume")}))
    with caplog.at_level("WARNING", logger="tunewatch._config"):
        config = load_config(path, env={"TUNEWATCH_DATA_DIR": str(tmp_path / "image")})
    assert config.data_dir == str(tmp_path / "image")  # the environment still wins
    (warning,) = (r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"$TUNEWATCH_DATA_DIR ({tmp_path / 'image'}) overrides" in warning
    assert f"`data_dir` ({tmp_path / 'volume'})" in warning
    assert str(path) in warning


@pytest.mark.parametrize(
    "raw", [{"data_dir": "same"}, {"models": []}], ids=["same-directory", "file-names-none"]
)
def test_the_environment_s_data_dir_agreeing_with_the_file_or_alone_is_not_logged(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raw: dict[str, Any],
) -> None:
    """The daemon's workers read its config (an absolute `data_dir`) with its environment."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump(raw))
    with caplog.at_level("WARNING", logger="tunewatch._config"):
        config = load_config(path, env={"TUNEWATCH_DATA_DIR": "same"})
    assert config.data_dir == str(tmp_path / "same")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
