"""A config's error shows an offending value bounded: a few hundred bytes of nested YAML
aliases under an unknown key (each level ten references to the one before, 10**9 elements
if expanded) made any command hang while the error message copied and printed the value
whole. A URL in what is shown still has its password hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch import ConfigError, build_config, load_config

DEPTH = 9


def _aliases(key: str, depth: int) -> str:
    """``key: [...]`` holding ``depth`` levels of lists, each ten aliases of the one before."""
    items = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, depth)
    ]
    return f"{key}: [" + ", ".join(items) + "]\n"


def test_unknown_key_holding_nested_aliases_is_refused_with_a_short_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tw.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n" + _aliases("a", DEPTH))
    assert path.stat().st_size < 1024
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = info.value.message
    assert "a: Extra inputs are not permitted, got [[1, 1, 1, 1, 1, 1, 1, 1, ...]" in message
    assert len(message) < 2048


def test_search_space_holding_nested_aliases_is_refused_with_a_short_message(
    tmp_path: Path,
) -> None:
    (tmp_path / "space.yaml").write_text(
        "format_version: 1\nname: s\nparams: {}\n" + _aliases("a", DEPTH)
    )
    path = tmp_path / "tw.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\nmodels:\n  - name: m\n    task: binary\n"
        "    tuning: {search_space: space.yaml}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = info.value.message
    assert "Extra inputs are not permitted" in message and "space.yaml" in message
    assert len(message) < 2048


def test_a_url_in_a_shown_value_has_its_password_hidden_before_it_is_shortened() -> None:
    """The value is cut to a bound after the URL in it is redacted: cut first, a long URL
    would keep its password in the part shown."""
    url = "postgresql+psycopg://tw:secret@db/tw?sslmode=require&application_name=" + "x" * 300
    with pytest.raises(ConfigError) as info:
        build_config({"store": [[url]]}, env={})
    message = info.value.message
    assert "secret" not in message and "tw:***@db/tw" in message
    assert len(message) < 1024
