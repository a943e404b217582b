"""Versioned persistence of sequential-test state (STYLE #10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadow.stats._errors import StateVersionError, StatsError

FORMAT_VERSION = 1


def check_state(data: Mapping[str, Any], *, kind: str) -> None:
    """Refuse state of another kind or of a newer format version."""
    if not isinstance(data, Mapping):
        raise StatsError(f"{kind} state must be a mapping, got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StatsError(f"{kind} state needs an integer `format_version` >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise StateVersionError(kind, version, FORMAT_VERSION)
    if data.get("kind") != kind:
        raise StatsError(f"state `kind` must be {kind!r}, got {data.get('kind')!r}")
