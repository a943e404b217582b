"""Every configuration key is named in docs/configuration.md, "the full explanation of
every configuration key": nine keys the loader takes (`tuning.patience`,
`comparison.srm_min_requests` …) were named nowhere, neither in the docs nor in the
README nor in the example config."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from tunewatch._config import Config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _models(annotation: object) -> list[type[BaseModel]]:
    """The configuration models ``annotation`` holds (itself, or in a union, list or
    mapping)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models(arg))
    return found


def _keys(model: type[BaseModel], at: str, seen: set[type[BaseModel]]) -> dict[str, str]:
    """Each key of ``model`` and the models under it: its name, and its path."""
    seen.add(model)
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        keys.setdefault(key, f"{at}{key}")
        for inner in _models(field.annotation):
            if inner not in seen:
                for k, path in _keys(inner, f"{at}{key}.", seen).items():
                    keys.setdefault(k, path)
    return keys


def test_every_configuration_key_is_named_in_the_configuration_reference() -> None:
    named = set(re.findall(r"`([^`]+)`", DOCS.read_text(encoding="utf-8")))
    # a key named with its section or a value (`tuning.patience`, `patience: 12`) counts
    words = {part for text in named for part in re.split(r"[.:=\[\]{}, ]+", text) if part}
    missing = sorted(path for key, path in _keys(Config, "", set()).items() if key not in words)
    assert not missing, f"keys named nowhere in {DOCS.name}: {missing}"
