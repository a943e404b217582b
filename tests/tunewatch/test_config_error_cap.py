"""A config's errors are listed up to :data:`MAX_LISTED_ERRORS`, then counted: an 800 KB
file of one bad feature entry aliased 200,000 times (under the 1 MiB cap) made a 23 MB
one-line error, after ~12 s and ~730 MB, every pydantic error formatted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch import ConfigError, build_config, load_config
from tunewatch._config_errors import MAX_LISTED_ERRORS


def test_the_errors_past_the_first_ones_are_counted_not_listed() -> None:
    features = [{"nam": f"x{i}"} for i in range(1000)]  # two errors each: `name`, `nam`
    with pytest.raises(ConfigError) as info:
        build_config({"models": [{"name": "m", "task": "binary", "features": features}]}, env={})
    lines = info.value.message.splitlines()
    assert lines[0] == "invalid configuration in <config>:"
    assert lines[1:3] == [
        "  models.0.features.0.name: Field required",
        "  models.0.features.0.nam: Extra inputs are not permitted, got 'x0'",
    ]
    assert len(lines) == 1 + MAX_LISTED_ERRORS + 1
    assert lines[MAX_LISTED_ERRORS] == f"  models.0.features.{MAX_LISTED_ERRORS // 2 - 1}.nam: " + (
        f"Extra inputs are not permitted, got 'x{MAX_LISTED_ERRORS // 2 - 1}'"
    )
    assert lines[-1] == f"  … and {2000 - MAX_LISTED_ERRORS} more error(s)"


def test_as_many_errors_as_are_listed_are_not_counted() -> None:
    features = [{"nam": f"x{i}"} for i in range(MAX_LISTED_ERRORS // 2)]
    with pytest.raises(ConfigError) as info:
        build_config({"models": [{"name": "m", "task": "binary", "features": features}]}, env={})
    lines = info.value.message.splitlines()
    assert len(lines) == 1 + MAX_LISTED_ERRORS
    assert "more error" not in info.value.message


def test_a_bad_entry_aliased_many_times_makes_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        "models: [{name: a, task: binary, features: [&f {nam: x}" + ", *f" * 20_000 + "]}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert len(info.value.message) < 4096
    assert info.value.message.endswith(f"… and {40_002 - MAX_LISTED_ERRORS} more error(s)")
