"""A config mounted as Kubernetes mounts a ConfigMap: each key a symlink through ``..data``
to a timestamped directory, which the kubelet replaces on an update (``..data`` swapped to
a new one, the old one deleted). Relative paths were read beside the file with symlinks
resolved, into the timestamped directory: after the next update every retune job failed
to read the search space the config named."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from retune.space import load_search_space
from tunewatch import load_config

ROOT = Path(__file__).resolve().parents[2]
SPACE = (ROOT / "configs" / "search_spaces" / "demo.yaml").read_text()


def _publish(mount: Path, stamp: str, config: str) -> Path:
    """The mount's files in a new ``stamp`` directory, ``..data`` swapped to it."""
    (mount / stamp).mkdir()
    (mount / stamp / "tunewatch.yaml").write_text(config)
    (mount / stamp / "space.yaml").write_text(SPACE)
    (mount / "..data_tmp").symlink_to(stamp)
    os.replace(mount / "..data_tmp", mount / "..data")
    for key in ("tunewatch.yaml", "space.yaml"):
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")
    return mount / stamp


def test_relative_paths_of_a_configmap_mounted_config_outlive_an_update(tmp_path: Path) -> None:
    mount = tmp_path / "etc-tunewatch"
    mount.mkdir()
    model = {"name": "m", "task": "binary", "tuning": {"search_space": "space.yaml"}}
    config = yaml.safe_dump({"data_dir": "../data", "models": [model]})
    first = _publish(mount, "..2026_12_01_10_00_00.111", config)
    loaded = load_config(mount / "tunewatch.yaml", env={})
    space = loaded.models[0].tuning.search_space
    assert space is not None
    _publish(mount, "..2026_12_02_10_00_00.222", config)
    shutil.rmtree(first)
    load_search_space(space)  # what every retune job does with the configured path
    assert space == str(mount / "space.yaml")
    assert loaded.data_dir == str(mount / ".." / "data")
    assert load_config(mount / "tunewatch.yaml", env={}) == loaded


def test_a_config_path_given_relative_is_read_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "space.yaml").write_text(SPACE)
    model = {"name": "m", "task": "binary", "tuning": {"search_space": "space.yaml"}}
    (tmp_path / "etc" / "tunewatch.yaml").write_text(yaml.safe_dump({"models": [model]}))
    monkeypatch.chdir(tmp_path)
    loaded = load_config(Path("etc/tunewatch.yaml"), env={})
    assert loaded.models[0].tuning.search_space == str(tmp_path / "etc" / "space.yaml")
