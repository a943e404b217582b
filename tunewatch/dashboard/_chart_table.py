"""A chart's values as text (WCAG 1.1.1): the cells and the folded table that follow each
chart of :mod:`tunewatch.dashboard._svg`, whose marks (``role="img"``) are not read out."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape


def finite(value: float | None) -> float | None:
    """``value``, or ``None`` for a missing value, NaN or an infinity (not drawn)."""
    return value if value is not None and math.isfinite(value) else None


def cell(value: float | None) -> str:
    """A value in a chart's table: a whole number in full, else to 4 significant digits
    (as the page's tables round), a missing one as an em dash."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


SAYS = "; the values are in the table after the chart"


def data_table(label: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A chart's values as text (WCAG 1.1.1): a table folded under it, a row per point it
    draws (no more), columns headed by ``head`` and each row by its first cell. Unfolding
    it takes no script; cells are plain text, escaped here."""
    cols = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join(
        f'<tr><th scope="row">{escape(row[0])}</th>'
        + "".join(f"<td>{escape(cell)}</td>" for cell in row[1:])
        + "</tr>"
        for row in rows
    )
    return (
        f'<details class="chart-data"><summary>Data: {escape(label)}</summary>'
        f"<table><thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table></details>"
    )
