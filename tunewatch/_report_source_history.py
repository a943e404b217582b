"""What a bundle carries of a version's rationale in the store it is exported from, and how
the target's report shows it (:mod:`tunewatch._report`).

An import registers the version anew: the target's store holds none of the source's
comparison events, approvals or audit entries about it, so its report had neither the
tests that decided on it nor who decided its promotion. An export writes, with each
version, its ``history``: the rows of the source report's comparison evidence and of its
decisions and approvals, as that report showed them (the source's version numbers, its
people), at most :data:`MAX_HISTORY_ROWS` of each (the newest; ``left_out`` counts the
others). The import checks it (:func:`tunewatch._bundle_lineage.checked_history`) and
keeps it in the version's ``details.imported`` record, where the target's report reads it
(:func:`history_sections`): the source's, as the bundle carried it, and, for a version
that store had imported itself, the one before's (``via``).

The structure is versioned (:data:`HISTORY_FORMAT`): an import refuses a newer one.
Bundles written before it carry none, and import as before.
"""

from __future__ import annotations

import json
from typing import Any

from tunewatch._report_document import Section, fmt
from tunewatch._report_search import mapping, sequence

#: The format of a version's ``history`` this tunewatch writes and reads.
HISTORY_FORMAT = 1
#: The most rows of each part a bundle carries (the newest).
MAX_HISTORY_ROWS = 1000
#: Each part of a ``history``, with the header of its rows (``approvals``: key and text).
HISTORY_PARTS: dict[str, tuple[str, ...]] = {
    "evidence": ("event", "when", "details"),
    "decisions": ("when", "action", "by", "reason"),
    "approvals": ("approval", "outcome"),
}


def history_of(evidence: Section, decisions: Section, *, max_bytes: int) -> dict[str, Any]:
    """A version's ``history`` from its report's comparison evidence and its decisions and
    approvals sections: their rows as text, at most :data:`MAX_HISTORY_ROWS` of each, and
    the oldest left out until it takes at most about ``max_bytes`` as JSON (a bundle's
    share of its manifest, which an import reads up to a limit)."""
    parts = {
        "evidence": [[fmt(cell) for cell in row] for row in evidence.table[1:]],
        "decisions": [[fmt(cell) for cell in row] for row in decisions.table[1:]],
        "approvals": [[fmt(cell) for cell in row] for row in decisions.rows],
    }
    sizes = {key: [len(json.dumps(row)) + 2 for row in rows] for key, rows in parts.items()}
    start = {key: max(0, len(rows) - MAX_HISTORY_ROWS) for key, rows in parts.items()}
    taken = {key: sum(sizes[key][start[key] :]) for key in parts}
    while sum(taken.values()) > max_bytes:
        key = max(taken, key=lambda k: taken[k])  # the oldest row of the largest part
        taken[key] -= sizes[key][start[key]]
        start[key] += 1
    history: dict[str, Any] = {"format_version": HISTORY_FORMAT}
    for key, rows in parts.items():
        history[key] = rows[start[key] :]
    left_out = {key: n for key, n in start.items() if n}
    if left_out:
        history["left_out"] = left_out
    return history


def history_sections(imported: dict[str, Any] | None) -> tuple[Section, ...]:
    """The evidence and decisions of an imported version in the stores it came through:
    the source's, then (``via``) the one it had been imported from, and so on; none for
    a version imported from a bundle that carried no ``history``."""
    sections: list[Section] = []
    record: Any = imported
    where = "the source store"
    while isinstance(record, dict):
        history = mapping(record.get("history"))
        if history:
            sections += _sections(history, record, where)
        record, where = record.get("via"), "an earlier store"
    return tuple(sections)


def _sections(history: dict[str, Any], record: dict[str, Any], where: str) -> list[Section]:
    about = f"in {where} ({fmt(record.get('model'))} v{fmt(record.get('version'))})"
    carried = (
        f"As that store's report showed it when the bundle was exported "
        f"({fmt(record.get('exported_at'))}); the bundle (sha256 "
        f"{fmt(record.get('bundle_sha256'))}) carried it. Its version numbers are that store's."
    )
    left_out = mapping(history.get("left_out"))
    evidence = _rows(history.get("evidence"), "evidence")
    decisions = _rows(history.get("decisions"), "decisions")
    return [
        Section(
            f"Comparison evidence {about}",
            text=carried + _left_out(left_out.get("evidence"))
            if evidence
            else f"No comparison decided on it {about}.",
            table=(HISTORY_PARTS["evidence"], *evidence) if evidence else (),
        ),
        Section(
            f"Decisions and approvals {about}",
            text=carried + _left_out(left_out.get("decisions")),
            rows=tuple((row[0], row[1]) for row in _rows(history.get("approvals"), "approvals")),
            table=(HISTORY_PARTS["decisions"], *decisions) if decisions else (),
        ),
    ]


def _rows(value: Any, part: str) -> list[tuple[str, ...]]:
    """The rows of ``history[part]`` (checked by the import; others are passed over)."""
    width = row_width(part)
    return [tuple(row) for row in sequence(value) if is_history_row(row, width)]


def _left_out(count: Any) -> str:
    return f" Its {fmt(count)} oldest rows were left out." if count else ""


def row_width(part: str) -> int:
    """How many cells each row of ``history[part]`` holds."""
    return len(HISTORY_PARTS[part])


def is_history_row(row: Any, width: int) -> bool:
    """Whether ``row`` is a row of ``width`` cells of text."""
    return (
        isinstance(row, list) and len(row) == width and all(isinstance(cell, str) for cell in row)
    )
