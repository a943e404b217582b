"""How a config's validation errors read: each names the key path, the rule and the
value, a database URL's password redacted. Part of :mod:`tunewatch._config`."""

from __future__ import annotations

from pydantic import ValidationError

# one bounded repr for both: a value nesting YAML aliases is not expanded
from retune.space import shown
from tunewatch.store import redact_url


def _redacted(value: str) -> str:
    """``value`` shown by :func:`redact_url` if it is a URL (holds ``://``), whatever its key
    path: a store URL written where the ``store`` mapping belongs
    (``store: postgresql+psycopg://tw:pw@db/tw``, or a list of it) is the error's input,
    quoted. A journal file's path shows as it is."""
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
        got = "" if isinstance(value, dict) else f", got {shown(value, redact=_redacted)}"
        lines.append(f"{path}: {err['msg']}{got}")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)
