"""``tuning.search_space: ~/spaces/mine.yaml`` was read as ``<config dir>/~/spaces/...``,
and the config refused as missing it: ``~`` is expanded in ``data_dir``, ``store.url``
and a journal ``tuning.storage_url``, and now in a search space's path too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch import build_config, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "spaces").mkdir(parents=True)
    (home / "spaces" / "mine.yaml").write_text(
        (ROOT / "configs" / "search_spaces" / "demo.yaml").read_text()
    )
    monkeypatch.setenv("HOME", str(home))
    return home


def _models() -> list[dict[str, object]]:
    return [{"name": "m", "task": "binary", "tuning": {"search_space": "~/spaces/mine.yaml"}}]


def test_a_search_space_under_home_is_read_there_from_a_config_file(
    tmp_path: Path, home: Path
) -> None:
    path = tmp_path / "etc" / "tunewatch.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"models": _models()}))
    loaded = load_config(path, env={})
    assert loaded.models[0].tuning.search_space == str(home / "spaces" / "mine.yaml")
    assert not (path.parent / "~").exists()


def test_a_search_space_under_home_is_read_there_without_a_config_file(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    built = build_config({"models": _models()}, env={})
    assert built.models[0].tuning.search_space == str(home / "spaces" / "mine.yaml")
