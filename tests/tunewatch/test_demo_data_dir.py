"""`tunewatch demo` starts from a fresh store: it may only clear a directory it made."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch._demo import fresh_demo_dir
from tunewatch._errors import ConfigError


def test_a_directory_the_demo_did_not_make_is_refused_and_kept(tmp_path: Path) -> None:
    """`tunewatch demo --data-dir .tunewatch` used to delete the daemon's own store."""
    (tmp_path / "tunewatch.db").write_text("production")
    with pytest.raises(ConfigError, match="--data-dir.*not made by the demo"):
        fresh_demo_dir(tmp_path)
    assert (tmp_path / "tunewatch.db").read_text() == "production"


def test_the_demo_s_own_directory_is_cleared_and_a_new_or_empty_one_used(tmp_path: Path) -> None:
    new = tmp_path / "demo"
    fresh_demo_dir(new)
    (new / "tunewatch.db").write_text("last run")
    fresh_demo_dir(new)
    assert [p.name for p in new.iterdir()] == [".tunewatch-demo"]
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh_demo_dir(empty)
    assert (empty / ".tunewatch-demo").exists()


def test_the_default_demo_directory_made_before_the_marker_is_cleared(tmp_path: Path) -> None:
    """`make demo` after an upgrade: the demo's own default directory has no marker yet."""
    old = tmp_path / ".tunewatch-demo"
    old.mkdir()
    (old / "tunewatch.db").write_text("an earlier demo")
    fresh_demo_dir(old)
    assert [p.name for p in old.iterdir()] == [".tunewatch-demo"]


def test_the_demo_s_search_space_is_the_package_s_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel (the Docker image's `pip install .`), the demo looked for
    `configs/search_spaces/demo.yaml` beside the installed package or under the working
    directory, and exited 2: the spaces are package data now (a wheel's install:
    test_shipped_spaces_wheel.py)."""
    import tunewatch
    from tunewatch._demo import demo_config

    monkeypatch.chdir(tmp_path)
    (model,) = demo_config(tmp_path / "data")["models"]
    space = Path(model["tuning"]["search_space"])
    assert space == Path(tunewatch.__file__).parent / "search_spaces" / "demo.yaml"
    assert space.is_file()
