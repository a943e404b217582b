"""How a config's validation errors read: each names the key path, the rule and the
value, a database URL's password redacted. Part of :mod:`tunewatch._config`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tunewatch.store import redact_url


def _redacted(value: Any) -> Any:
    """``value`` with every URL in it (a string holding ``://``) shown by
    :func:`redact_url`, whatever its key path: a store URL written where the ``store``
    mapping belongs (``store: postgresql+psycopg://tw:pw@db/tw``, or a list of it) is
    the error's input, quoted whole. A journal file's path shows as it is."""
    if isinstance(value, str):
        if "://" not in value:
            return value
        try:
            return redact_url(value)
        except ValueError:  # a port that is not a number
            return "<unparseable URL>"
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        # a mapping's key names its entry already: `safe_ranges.C`, not `safe_ranges.C.[key]`
        path = ".".join(str(p) for p in err["loc"] if p != "[key]") or "<root>"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f", got {_redacted(value)!r}"
        lines.append(f"{path}: {err['msg']}{shown}")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)
