"""Server-side SVG charts: no JavaScript, no external assets.

Every mark carries ``data-*`` attributes with the values it draws, so tests (and curious
users) can read the numbers back from the rendered page. A chart is ``role="img"``, so its
marks and their tooltips are not read out: each describes itself in a ``<desc>`` and is
followed by a folded table of the values it draws, its text equivalent
(:mod:`tunewatch.dashboard._chart_table`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from tunewatch.dashboard._chart_table import SAYS, cell, data_table, finite

WIDTH = 720
HEIGHT = 260
PAD_LEFT = 64
PAD_RIGHT = 16
PAD_TOP = 28
PAD_BOTTOM = 36
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
#: Line series past the palette reuse its colours with the next dash pattern.
DASHES = ("", "6 3", "2 2", "8 3 2 3")
LEGEND_ROW = 14  # px per legend row
CHAR_WIDTH = 6.5  # px, a generous estimate for the 11 px legend font
LABEL_CHARS = 32  # a heatmap row label's most characters (a longer name loses its middle)
_FLOAT_MAX = sys.float_info.max


def _num(value: float) -> str:
    return f"{value:.2f}"


def _fmt(value: float) -> str:
    """A short human label for an axis tick or a tooltip (a dash for NaN or an infinity:
    no chart says "inf")."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else "—"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.2e}"
    return f"{value:.3g}"


@dataclass(frozen=True, slots=True)
class _Scale:
    lo: float
    hi: float
    out_lo: float
    out_hi: float

    @classmethod
    def of(cls, values: Sequence[float], out_lo: float, out_hi: float) -> _Scale:
        """The finite ``values``' range onto ``out_lo`` .. ``out_hi``. A flat range is
        widened by 0.5 each way, or by a billionth of its magnitude: at 1e16 adding 0.5
        changes nothing, and the scale divided by zero (the page answered 500)."""
        finite = [v for v in values if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if hi - lo < 1e-12:
            pad = max(0.5, abs(lo) * 1e-9, abs(hi) * 1e-9)
            lo, hi = max(lo - pad, -_FLOAT_MAX), min(hi + pad, _FLOAT_MAX)
        return cls(lo, hi, out_lo, out_hi)

    def at(self, share: float) -> float:
        """The value ``share`` of the way from ``lo`` to ``hi``, finite even where ``hi -
        lo`` passes the float maximum (-1.7e308 to 1.7e308)."""
        span = self.hi - self.lo
        if math.isfinite(span):
            return self.lo + span * share
        return self.lo * (1 - share) + self.hi * share

    def __call__(self, value: float) -> float:
        # in halves (exact), whose difference stays finite where ``hi - lo`` would not
        half = (value / 2 - self.lo / 2) / (self.hi / 2 - self.lo / 2)
        return self.out_lo + half * (self.out_hi - self.out_lo)


def _clock(span_s: float) -> Callable[[float], str]:
    """UTC tick labels precise enough for a time axis spanning ``span_s`` seconds."""
    pattern = "%H:%M:%S" if span_s < 3600 else "%m-%d %H:%M" if span_s < 5 * 86400 else "%Y-%m-%d"

    def label(value: float) -> str:
        return _when(value, pattern)

    return label


def _when(value: float, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch seconds ``value`` as a UTC time (a number, past the years a clock shows)."""
    try:
        return datetime.fromtimestamp(value, UTC).strftime(pattern)
    except (OverflowError, OSError, ValueError):
        return _fmt(value)


def _frame(
    x: _Scale,
    y: _Scale,
    *,
    x_label: str,
    y_label: str,
    label: str,
    desc: str,
    body: list[str],
    x_ticks: Callable[[float], str] | None = _fmt,
    top: float = PAD_TOP,
    height: int = HEIGHT,
) -> str:
    """Axes, ticks and labels around ``body``; the plot spans ``top`` to ``height -
    PAD_BOTTOM`` (a taller chart leaves room above it for rows of legend). ``desc`` says
    in words what the chart shows."""
    ticks = []
    for i in range(5):
        value = y.at(i / 4)
        py = y(value)
        ticks.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{_num(py)}" y2="{_num(py)}" '
            f'class="grid"/><text x="{PAD_LEFT - 6}" y="{_num(py + 4)}" '
            f'text-anchor="end">{escape(_fmt(value))}</text>'
        )
    seen: set[str] = set()
    for i in range(5 if x_ticks is not None else 0):
        assert x_ticks is not None
        value = x.at(i / 4)
        text = x_ticks(value)
        if text in seen:
            continue
        seen.add(text)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        ticks.append(
            f'<text x="{_num(x(value))}" y="{height - PAD_BOTTOM + 16}" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(label)}" '
        f'class="chart">'
        f"<title>{escape(label)}</title><desc>{escape(desc)}</desc>"
        f'<g class="axes">{"".join(ticks)}'
        f'<line x1="{PAD_LEFT}" x2="{PAD_LEFT}" y1="{_num(top)}" y2="{height - PAD_BOTTOM}" '
        f'class="axis"/>'
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{height - PAD_BOTTOM}" '
        f'y2="{height - PAD_BOTTOM}" class="axis"/>'
        f'<text x="{(PAD_LEFT + WIDTH - PAD_RIGHT) / 2}" y="{height - 4}" '
        f'text-anchor="middle" class="label">{escape(x_label)}</text>'
        f'<text x="8" y="14" class="label">{escape(y_label)}</text></g>'
        f"{''.join(body)}</svg>"
    )


def _empty(label: str) -> str:
    return f'<p class="empty" data-chart="{escape(label)}">No data yet.</p>'


@dataclass(frozen=True, slots=True)
class Look:
    """One point of an always-valid interval over time (``None`` bounds: unbounded)."""

    n: float
    estimate: float | None
    low: float | None
    high: float | None
    decision: str


def interval_chart(
    looks: Sequence[Look], *, decided_at: int | None, label: str, marks: bool = True
) -> str:
    """The estimate and its confidence sequence against n: a band, a line, a zero line and
    a marker at the look that decided (index ``decided_at`` into ``looks``); with
    ``marks``, each look's interval and a point with its numbers and a tooltip (about
    400 bytes a look: a decided test goes without). A look whose n or estimate is missing,
    NaN or infinite is not drawn; such a bound is unbounded. The table under the chart
    lists the looks drawn."""
    looks = [
        Look(
            n=lk.n,
            estimate=finite(lk.estimate) if math.isfinite(lk.n) else None,
            low=finite(lk.low),
            high=finite(lk.high),
            decision=lk.decision,
        )
        for lk in looks
    ]
    drawn = [lk for lk in looks if lk.estimate is not None]
    if not drawn:
        return _empty(label)
    bounded = [lk for lk in drawn if lk.low is not None and lk.high is not None]
    values = [lk.estimate for lk in drawn if lk.estimate is not None] + [0.0]
    for lk in bounded:
        values += [lk.low or 0.0, lk.high or 0.0]
    x = _Scale.of([lk.n for lk in drawn], PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _Scale.of(values, HEIGHT - PAD_BOTTOM, PAD_TOP)
    body: list[str] = []
    if len(bounded) >= 2:
        upper = " ".join(f"{_num(x(lk.n))},{_num(y(lk.high or 0.0))}" for lk in bounded)
        lower = " ".join(f"{_num(x(lk.n))},{_num(y(lk.low or 0.0))}" for lk in reversed(bounded))
        body.append(f'<polygon class="band" points="{upper} {lower}"/>')
    body.append(
        f'<line class="zero" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
        f'y1="{_num(y(0.0))}" y2="{_num(y(0.0))}"/>'
    )
    line = " ".join(f"{_num(x(lk.n))},{_num(y(lk.estimate or 0.0))}" for lk in drawn)
    body.append(f'<polyline class="estimate" points="{line}"/>')
    drawn_marks = []
    for lk in looks if marks else ():
        if lk.estimate is None:
            continue
        if lk.low is not None and lk.high is not None:
            drawn_marks.append(
                f'<line class="ci" x1="{_num(x(lk.n))}" x2="{_num(x(lk.n))}" '
                f'y1="{_num(y(lk.low))}" y2="{_num(y(lk.high))}"/>'
            )
        spread = None if lk.low is None or lk.high is None else lk.high - lk.low
        width = "" if spread is None or not math.isfinite(spread) else _fmt(spread)
        drawn_marks.append(
            f'<circle class="look" cx="{_num(x(lk.n))}" cy="{_num(y(lk.estimate))}" r="2" '
            f'data-n="{lk.n:g}" data-estimate="{lk.estimate!r}" '
            f'data-low="{"" if lk.low is None else repr(lk.low)}" '
            f'data-high="{"" if lk.high is None else repr(lk.high)}" '
            f'data-width="{width}" data-decision="{escape(lk.decision)}">'
            f"<title>n={lk.n:g} estimate={_fmt(lk.estimate)} "
            f"[{'' if lk.low is None else _fmt(lk.low)}, "
            f"{'' if lk.high is None else _fmt(lk.high)}]</title></circle>"
        )
    if marks:
        body.append(f'<g class="looks">{"".join(drawn_marks)}</g>')
    decided = looks[decided_at] if decided_at is not None else None
    if decided is not None and decided.estimate is not None:
        lk = decided
        px, py = x(lk.n), y(lk.estimate or 0.0)
        right = px > (PAD_LEFT + WIDTH - PAD_RIGHT) / 2
        text_x = px - 8 if right else px + 8
        body.append(
            f'<g class="decision-marker" data-n="{lk.n:g}" data-decision="{escape(lk.decision)}">'
            f'<line x1="{_num(px)}" x2="{_num(px)}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}"/>'
            f'<circle cx="{_num(px)}" cy="{_num(py)}" r="6"/>'
            f'<text x="{_num(text_x)}" y="{PAD_TOP + 12}" '
            f'text-anchor="{"end" if right else "start"}">{escape(lk.decision)} at n={lk.n:g}'
            f"</text></g>"
        )
    last = drawn[-1]
    desc = (
        f"{len(drawn)} looks from n={drawn[0].n:g} to n={last.n:g}; the last estimate "
        f"{_fmt(last.estimate or 0.0)}, interval [{'' if last.low is None else _fmt(last.low)}"
        f", {'' if last.high is None else _fmt(last.high)}]"
    )
    if decided is not None and decided.estimate is not None:
        desc += f"; {decided.decision} at n={decided.n:g}"
    chart = _frame(
        x,
        y,
        x_label="n (labelled pairs)",
        y_label="estimate",
        label=label,
        desc=desc + SAYS,
        body=body,
    )
    return chart + data_table(
        label,
        ("n", "estimate", "low", "high", "decision"),
        ((cell(lk.n), cell(lk.estimate), cell(lk.low), cell(lk.high), lk.decision) for lk in drawn),
    )


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float | None]


def _legend_layout(names: Sequence[str], start: float) -> list[tuple[float, int]]:
    """Each legend entry's ``(x, row)``: entries flow left to right from ``start`` and
    wrap to a new row (at the left edge) before one would pass the chart's right edge."""
    out: list[tuple[float, int]] = []
    x, row = start, 0
    for name in names:
        width = _legend_width(name)
        if x + width > WIDTH - PAD_RIGHT and x > 8:
            x, row = 8.0, row + 1
        out.append((x, row))
        x += width + 16
    return out


def _legend_width(name: str) -> float:
    return 26 + CHAR_WIDTH * len(name)


def line_chart(
    series: Sequence[Series], *, x_label: str, y_label: str, label: str, x_time: bool = False
) -> str:
    """Lines (gaps where a value is missing) with a legend above the plot, wrapped into
    rows; series past the palette's colours are told apart by dash patterns. With
    ``x_time`` x is epoch seconds, labelled as UTC clock times. A point whose x or y is
    missing, NaN or infinite is a gap."""
    xs = [v for s in series for v in s.x if math.isfinite(v)]
    ys = [v for s in series for v in s.y if v is not None and math.isfinite(v)]
    if not any(_points(s) for s in series):
        return _empty(label)
    layout = _legend_layout([s.name for s in series], max(PAD_LEFT + 8, 24 + 6 * len(y_label)))
    extra = LEGEND_ROW * max((row for _, row in layout), default=0)
    top, height = PAD_TOP + extra, HEIGHT + extra
    x = _Scale.of(xs, PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _Scale.of(ys, height - PAD_BOTTOM, top)
    body: list[str] = []
    for i, (s, (lx, row)) in enumerate(zip(series, layout, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        dash = DASHES[(i // len(PALETTE)) % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        segments: list[list[str]] = [[]]
        for px, py in zip(s.x, s.y, strict=True):
            if py is None or not math.isfinite(py) or not math.isfinite(px):
                segments.append([])
                continue
            segments[-1].append(f"{_num(x(px))},{_num(y(py))}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                body.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif seg:
                body.append(
                    f'<polyline class="series" stroke="{colour}"{dashed} points="{" ".join(seg)}"/>'
                )
        ly = 6 + LEGEND_ROW * row
        body.append(
            f'<g class="legend" data-series="{escape(s.name)}" data-points="{len(s.x)}" '
            f'data-x="{_num(lx)}" data-y="{ly}" data-right="{_num(lx + _legend_width(s.name))}" '
            f'data-colour="{colour}" data-dash="{dash}">'
            f'<line class="swatch" x1="{_num(lx)}" x2="{_num(lx + 20)}" y1="{ly + 5}" '
            f'y2="{ly + 5}" stroke="{colour}" stroke-width="3"{dashed}/>'
            f'<text x="{_num(lx + 24)}" y="{ly + 9}">{escape(s.name)}</text></g>'
        )
    drawn = sum(len(_points(s)) for s in series)
    names = ", ".join(s.name for s in series)
    chart = _frame(
        x,
        y,
        x_label=x_label,
        y_label=y_label,
        label=label,
        desc=f"{len(series)} series ({names}), {drawn} points, {y_label} from "
        f"{_fmt(min(ys))} to {_fmt(max(ys))}{SAYS}",
        body=body,
        x_ticks=_clock(x.hi - x.lo) if x_time else _fmt,
        top=top,
        height=height,
    )
    return chart + _line_data(series, x_label=x_label, y_label=y_label, label=label, x_time=x_time)


def _points(s: Series) -> list[tuple[float, float]]:
    """The points of ``s`` a line chart draws."""
    return [
        (px, py)
        for px, py in zip(s.x, s.y, strict=True)
        if py is not None and math.isfinite(py) and math.isfinite(px)
    ]


def _line_data(
    series: Sequence[Series], *, x_label: str, y_label: str, label: str, x_time: bool
) -> str:
    """A line chart's table: series that share their x a column each, a row per x where
    one has a value; else a row per point drawn, by series."""
    at = _when if x_time else cell
    first = list(series[0].x)
    if all(list(s.x) == first for s in series[1:]):
        rows = [
            [at(px), *(cell(finite(s.y[i])) for s in series)]
            for i, px in enumerate(first)
            if math.isfinite(px) and any(finite(s.y[i]) is not None for s in series)
        ]
        return data_table(label, [x_label, *(s.name for s in series)], rows)
    rows = [[s.name, at(px), cell(py)] for s in series for px, py in _points(s)]
    return data_table(label, ["series", x_label, y_label], rows)


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[float | None]],
    *,
    flagged: Sequence[Sequence[bool]],
    label: str,
    tips: Sequence[Sequence[str]] | None = None,
) -> str:
    """``cells[row][column]`` in [0, 1] as colour (``None``: not computed); flagged cells
    get an outline. A cell's tooltip names its row (in full) and column, then says
    ``tips[row][column]`` (default: the value). Row labels are :func:`row_labels`. The
    table under it gives each cell's value (rows by their full names), "outlined" where
    flagged."""
    if not rows or not columns:
        return _empty(label)
    cells = [[finite(value) for value in row] for row in cells]
    shown = row_labels(rows)
    # the margin fits the longest label (140 px at least, as before)
    left = max(140, math.ceil(CHAR_WIDTH * max(len(t) for t in shown)) + 12)
    top = 8
    cell_w = max(1.0, (WIDTH - left - PAD_RIGHT) / len(columns))
    cell_h = 18
    height = top + cell_h * len(rows) + 40
    parts = []
    for r, name in enumerate(rows):
        y = top + r * cell_h
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(shown[r])}</text>'
        )
        for c, value in enumerate(cells[r]):
            fill = "#eeeeee" if value is None else _heat(value)
            outline = ' class="drifted"' if flagged[r][c] else ""  # outlined by the CSS
            tip = tips[r][c] if tips is not None else "n/a" if value is None else f"{value:.3g}"
            parts.append(
                f'<rect x="{_num(left + c * cell_w)}" y="{y}" width="{_num(cell_w + 0.3)}" '
                f'height="{cell_h - 1}" fill="{fill}"{outline} data-feature="{escape(name)}" '
                f'data-window="{escape(columns[c])}" '
                f'data-value="{"" if value is None else f"{value:.4g}"}">'
                f"<title>{escape(name)} @ {escape(columns[c])}: {escape(tip)}</title></rect>"
            )
    y_axis = top + cell_h * len(rows) + 14
    parts.append(f'<text x="{left}" y="{y_axis}">{escape(columns[0])}</text>')
    parts.append(
        f'<text x="{WIDTH - PAD_RIGHT}" y="{y_axis}" text-anchor="end">{escape(columns[-1])}</text>'
    )
    outlined = sum(sum(map(bool, row)) for row in flagged)
    desc = f"{len(rows)} features by {len(columns)} windows, {outlined} cells outlined{SAYS}"
    table = data_table(
        label,
        ["feature", *columns],
        (
            [
                name,
                *(
                    cell(value) + (" (outlined)" if flagged[r][c] else "")
                    for c, value in enumerate(cells[r])
                ),
            ]
            for r, name in enumerate(rows)
        ),
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(label)}" '
        f'class="chart heatmap" data-rows="{len(rows)}" data-columns="{len(columns)}">'
        f"<title>{escape(label)}</title><desc>{escape(desc)}</desc>{''.join(parts)}</svg>"
        f"{table}"
    )


def row_labels(names: Sequence[str], chars: int = LABEL_CHARS) -> list[str]:
    """Distinct visible labels for distinct ``names``, each at most ``chars`` characters
    but for a rare suffix: a name that fits is shown whole, a longer one keeps its start
    and its end around an ellipsis. The end usually tells names apart
    (``num_transactions_last_7d``/``_30d``), so it gets half; names the cut makes equal
    move the ellipsis (a longer end first, then a longer start) until they differ; names
    that differ only further inside show the stretch from where they part, between
    ellipses, and any still equal are numbered. Names were cut to their first 20 characters: three
    features read ``num_transactions_las``."""

    def cut(name: str, tail: int) -> str:
        if len(name) <= chars:
            return name
        return f"{name[: chars - 1 - tail]}…{name[len(name) - tail :]}"

    half = (chars - 1) // 2
    tails = [*range(half, chars - 1), *range(half - 1, 0, -1)]  # longer ends first
    labels = [cut(name, half) for name in names]
    for group in _same(labels):
        others = {t for i, t in enumerate(labels) if i not in group}
        for tail in tails:
            tried = [cut(names[i], tail) for i in group]
            if len(set(tried)) == len(tried) and not others & set(tried):
                for i, t in zip(group, tried, strict=True):
                    labels[i] = t
                break
    for group in _same(labels):  # differing only where no single ellipsis shows: show there
        start = max(len(os.path.commonprefix([names[i] for i in group])) - 4, 0)
        for i in group:
            rest = names[i][start:]
            labels[i] = f"…{rest[: chars - 2]}{'…' if len(rest) > chars - 2 else ''}"
    for group in _same(labels):
        for k, i in enumerate(group[1:], start=2):
            taken = set(labels)
            n = k
            while f"{labels[i]} ({n})" in taken:
                n += 1
            labels[i] = f"{labels[i]} ({n})"
    return labels


def _same(labels: Sequence[str]) -> list[list[int]]:
    """The indices of each label that occurs more than once, grouped by label."""
    at: dict[str, list[int]] = {}
    for i, t in enumerate(labels):
        at.setdefault(t, []).append(i)
    return [group for group in at.values() if len(group) > 1]


def _heat(value: float) -> str:
    """White (0) to red (1)."""
    v = min(max(value, 0.0), 1.0)
    other = int(round(255 * (1 - v)))
    return f"#ff{other:02x}{other:02x}"


def bar_chart(groups: Sequence[str], series: Sequence[Series], *, y_label: str, label: str) -> str:
    """Grouped bars: one group per label in ``groups``, one bar per series (``y`` aligned
    with ``groups``); a missing, NaN or infinite value has no bar."""
    values = [v for s in series for v in s.y if v is not None and math.isfinite(v)]
    if not groups or not values:
        return _empty(label)
    y = _Scale.of([0.0, *values], HEIGHT - PAD_BOTTOM, PAD_TOP)
    x = _Scale.of([0.0, float(len(groups))], PAD_LEFT, WIDTH - PAD_RIGHT)
    group_w = x(1.0) - x(0.0)
    bar_w = min(group_w * 0.8 / max(len(series), 1), 48.0)
    body = []
    for g, name in enumerate(groups):
        for i, s in enumerate(series):
            value = finite(s.y[g])
            if value is None:
                continue
            px = x(g + 0.5) - bar_w * len(series) / 2 + i * bar_w
            body.append(
                f'<rect class="bar" x="{_num(px)}" y="{_num(y(value))}" width="{_num(bar_w)}" '
                f'height="{_num(y(0.0) - y(value))}" fill="{PALETTE[i % len(PALETTE)]}" '
                f'data-group="{escape(name)}" data-series="{escape(s.name)}" '
                f'data-value="{value!r}"><title>{escape(name)} {escape(s.name)}: '
                f"{_fmt(value)}</title></rect>"
            )
        body.append(
            f'<text x="{_num(x(g + 0.5))}" y="{HEIGHT - PAD_BOTTOM + 16}" '
            f'text-anchor="middle">{escape(name[:18])}</text>'
        )
    legend_x = max(PAD_LEFT + 8, 24 + 6 * len(y_label))
    for i, s in enumerate(series):
        body.append(
            f'<rect x="{legend_x + 120 * i}" y="6" width="10" height="10" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{legend_x + 14 + 120 * i}" '
            f'y="15">{escape(s.name)}</text>'
        )
    names = ", ".join(s.name for s in series)
    desc = f"{len(groups)} groups of {len(series)} bars ({names}), {y_label}{SAYS}"
    chart = _frame(
        x, y, x_label="", y_label=y_label, label=label, desc=desc, body=body, x_ticks=None
    )
    return chart + data_table(
        label,
        ["group", *(s.name for s in series)],
        ([name, *(cell(finite(s.y[g])) for s in series)] for g, name in enumerate(groups)),
    )
