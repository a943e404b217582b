"""How a config's validation errors read: each names the key path, the rule and the
value, a database URL's password redacted; the first :data:`MAX_LISTED_ERRORS` listed, the
rest counted. Part of :mod:`tunewatch._config`."""

from __future__ import annotations

from pydantic import ValidationError

# one bounded repr for both: a value nesting YAML aliases is not expanded
from retune.space import shown
from tunewatch._config_base import WITHIN, WITHIN_INPUT
from tunewatch.store import redact_url

#: How many of a config's errors its message lists; the rest are counted. One bad feature
#: entry aliased 200,000 times (an 800 KB file) made a 23 MB one-line error, ~730 MB to
#: build. Pydantic still collects every error (it has no cap but a list's ``fail_fast``,
#: which would name only the first), and converts them all for ``errors()``; only these
#: are formatted.
MAX_LISTED_ERRORS = 20


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


def _part(part: str | int) -> str:
    """One part of a key path as an error line shows it: an index, or a key as it is when it
    is printable and holds no space or dot, else quoted and escaped by the bounded repr the
    values get. A file's key is text like any other: written raw, one holding an escape
    sequence and a newline (``"x\\x1b]0;pwned\\x07\\nmodels.0.task: ..."``) titled the
    terminal and forged a second error line, and ``a b.lo`` read as other keys' path.
    Pydantic's own parts (``0``, ``list[list[float]]``) show as they are."""
    if isinstance(part, int):
        return str(part)
    if part and part.isprintable() and not {" ", "."} & set(part):
        return part
    return shown(part)


def format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    # not the URL of each error's documentation, which no line shows
    for err in exc.errors(include_url=False)[:MAX_LISTED_ERRORS]:
        # a mapping's key names its entry already: `safe_ranges.C`, not `safe_ranges.C.[key]`
        path = ".".join(_part(p) for p in err["loc"] if p != "[key]") or "<root>"
        value = err.get("input")
        context = err.get("ctx") or {}
        if WITHIN in context:  # found inside the value: `objective.params.cost_matrix.0.1`
            # already joined by the validator: escaped whole when it is not printable
            within = str(context[WITHIN])
            within = within if within.isprintable() else shown(within)
            path, value = f"{path}.{within}", context[WITHIN_INPUT]
        got = "" if isinstance(value, dict) else f", got {shown(value, redact=_redacted)}"
        # a validator's message quotes what it names; one that did not stays one line too
        msg = err["msg"] if err["msg"].isprintable() else shown(err["msg"])
        lines.append(f"{path}: {msg}{got}")
    more = exc.error_count() - len(lines)
    if more > 0:
        lines.append(f"… and {more} more error(s)")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)
