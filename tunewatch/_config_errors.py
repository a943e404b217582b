"""How a config's validation errors read: each names the key path, the rule and the
value, a database URL's password redacted. Part of :mod:`tunewatch._config`."""

from __future__ import annotations

from pydantic import ValidationError

from tunewatch.store import redact_url

#: Settings whose value may hold a password: an error about one shows it redacted.
_SECRET_KEYS = frozenset({"store.url", "tuning.storage_url"})


def _redacted(value: str) -> str:
    """A database URL with its password as ``***`` (a journal file's path as it is)."""
    if "://" not in value:
        return value
    try:
        return redact_url(value)
    except ValueError:  # a port that is not a number
        return "<unparseable URL>"


def format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        # a mapping's key names its entry already: `safe_ranges.C`, not `safe_ranges.C.[key]`
        path = ".".join(str(p) for p in err["loc"] if p != "[key]") or "<root>"
        value = err.get("input")
        if path in _SECRET_KEYS and isinstance(value, str):
            shown = f", got {_redacted(value)!r}"
        else:
            shown = "" if isinstance(value, dict) else f", got {value!r}"
        lines.append(f"{path}: {err['msg']}{shown}")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)
