"""An integer setting is a 64-bit integer, as SQLite (and PostgreSQL's BIGINT) keeps
one: ``evaluation: {window_rows: 9223372036854775808}`` loaded, then every evaluation
failed with ``OverflowError: Python int too large to convert to SQLite INTEGER``. Every
integer field of the config, found by walking its models, is checked, so a field added
later is too."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tunewatch import ConfigError, load_config
from tunewatch._config import Config

TOO_BIG = 2**63
#: What a section needs besides the field set in it, by its key path.
_REQUIRED: dict[str, dict[str, Any]] = {
    "models.0": {"name": "m", "task": "binary"},
    "models.0.comparison.split": {"challenger": 2, "percent": 10.0, "salt": "s"},
}
#: The key a mapping of models is reached through (a safe range's parameter).
_KEY = "C"


def _int_fields(model: type[BaseModel], at: tuple[str | int, ...] = ()) -> list[tuple[Any, ...]]:
    """The key path of every field of ``model`` (and the models it nests) that takes an
    integer: a list of models through its first entry, a mapping through ``_KEY``."""
    found: list[tuple[Any, ...]] = []
    for name, field in model.model_fields.items():
        found.extend(_paths(field.annotation, (*at, name)))
    return found


def _paths(annotation: Any, at: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _int_fields(annotation, at)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is int:
        return [at]
    if origin in (typing.Union, types.UnionType):  # `int | None`, `str | int | float`: once
        return [p for arg in args if arg is not type(None) for p in _paths(arg, at)][:1]
    if origin is tuple:
        return _paths(args[0], (*at, 0))
    if origin is dict:
        return _paths(args[1], (*at, _KEY))
    return []


def _raw(path: tuple[Any, ...], value: int) -> dict[str, Any]:
    """A minimal config holding ``value`` at ``path``."""
    raw: dict[str, Any] = {}
    node: Any = raw
    for depth, key in enumerate(path[:-1]):
        if isinstance(path[depth + 1], int):  # a list: its first entry
            node[key] = [{}] if depth + 2 < len(path) else [None]
            node = node[key]
            continue
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
        node.update(_REQUIRED.get(".".join(map(str, path[: depth + 1])), {}))
    node[path[-1]] = value
    return raw


INT_FIELDS = [".".join(map(str, p)) for p in _int_fields(Config)]


def test_the_walk_finds_the_integer_settings() -> None:
    assert {"server.port", "models.0.evaluation.window_rows", "models.0.tuning.seed"} <= set(
        INT_FIELDS
    )
    assert "models.0.safe_ranges.C.choices.0" in INT_FIELDS
    assert len(INT_FIELDS) > 40


@pytest.mark.parametrize("path", INT_FIELDS)
def test_an_integer_setting_past_64_bits_is_a_config_error(tmp_path: Path, path: str) -> None:
    keys = tuple(int(k) if k.isdigit() else k for k in path.split("."))
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump(_raw(keys, TOO_BIG)))
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    assert re.search(rf"\n  {re.escape(path)}: .*, got {TOO_BIG}", info.value.message)


def test_the_largest_64_bit_integer_loads_and_the_next_one_says_the_rule(tmp_path: Path) -> None:
    config = tmp_path / "tunewatch.yaml"
    path = ("models", 0, "evaluation", "window_rows")
    config.write_text(yaml.safe_dump(_raw(path, TOO_BIG - 1)))
    assert load_config(config, env={}).models[0].evaluation.window_rows == TOO_BIG - 1
    config.write_text(yaml.safe_dump(_raw(path, TOO_BIG)))
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    assert (
        "models.0.evaluation.window_rows: Input should be a 64-bit integer, at most "
        f"9223372036854775807, got {TOO_BIG}"
    ) in info.value.message


def test_a_safe_choice_past_64_bits_either_way_is_named_by_its_place(tmp_path: Path) -> None:
    config = tmp_path / "tunewatch.yaml"
    choices = [1, -(2**63) - 1]
    ranges = {"C": {"choices": choices}}
    config.write_text(
        yaml.safe_dump({"models": [{"name": "m", "task": "binary", "safe_ranges": ranges}]})
    )
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    assert (
        "models.0.safe_ranges.C.choices.1: Input should be a 64-bit integer" in info.value.message
    )
    assert f"got {-(2**63) - 1}" in info.value.message
