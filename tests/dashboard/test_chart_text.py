"""Every chart carries its values as text. A chart is ``role="img"``, so its marks and
their tooltips are not read out: an assistive technology had its short name ("objective
per window") and nothing of what it plots (WCAG 1.1.1). Each chart now describes itself
(``<desc>``) and is followed by a folded table of the points it draws, with row and
column headers; no script is needed to unfold it."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser

from tunewatch.dashboard._svg import Look, Series, bar_chart, heatmap, interval_chart, line_chart

Cell = tuple[str, str | None, str]  # tag, scope, text
HOUR = 3600.0
START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


class _Tables(HTMLParser):
    """The tables in some markup, as rows of cells, and where each sits."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[Cell]]] = []
        self.inside: list[str] = []  # open elements
        self.parents: list[list[str]] = []  # each table's open elements
        self.cell: list[str] | None = None
        self.scope: str | None = None
        self.tag = ""
        self.desc: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
            self.parents.append(list(self.inside))
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell, self.scope, self.tag = [], dict(attrs).get("scope"), tag
        self.inside.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append((self.tag, self.scope, "".join(self.cell)))
            self.cell = None
        while self.inside and self.inside.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        elif self.inside and self.inside[-1] == "desc":
            self.desc.append(data)


def _parse(markup: str) -> _Tables:
    parser = _Tables()
    parser.feed(markup)
    parser.close()
    return parser


def _table(markup: str) -> list[list[Cell]]:
    """The one table of a chart's markup, after its SVG and folded in a <details>."""
    parsed = _parse(markup)
    assert len(parsed.tables) == 1, markup[-2000:]
    assert "details" in parsed.parents[0] and "svg" not in parsed.parents[0]
    assert markup.index("</svg>") < markup.index("<table")
    return parsed.tables[0]


def _texts(table: list[list[Cell]]) -> list[list[str]]:
    return [[text for _, _, text in row] for row in table]


def _headed(table: list[list[Cell]]) -> None:
    """The first row heads the columns; every other row is headed by its first cell."""
    assert all(tag == "th" and scope == "col" for tag, scope, _ in table[0])
    for row in table[1:]:
        assert row[0][:2] == ("th", "row")
        assert all(tag == "td" for tag, _, _ in row[1:])


def test_a_time_series_chart_holds_a_table_of_its_points_by_time() -> None:
    xs = [START, START + HOUR, START + 2 * HOUR]
    markup = line_chart(
        [
            Series("estimated", xs, [0.91, None, 0.8765]),
            Series("realised", xs, [0.9, 0.85, None]),
        ],
        x_label="window end (UTC)",
        y_label="accuracy",
        label="estimated and realised accuracy",
        x_time=True,
    )
    table = _table(markup)
    _headed(table)
    assert _texts(table) == [
        ["window end (UTC)", "estimated", "realised"],
        ["2025-01-01 00:00:00", "0.91", "0.9"],
        ["2025-01-01 01:00:00", "—", "0.85"],
        ["2025-01-01 02:00:00", "0.8765", "—"],
    ]
    desc = "".join(_parse(markup).desc)
    assert "estimated" in desc and "realised" in desc and "table" in desc


def test_series_of_different_x_are_listed_point_by_point() -> None:
    markup = line_chart(
        [Series("v1", [1.0, 2.0], [10.0, 12.5]), Series("v2", [2.0, 3.0, 4.0], [11.0, None, 9.0])],
        x_label="trial",
        y_label="ms",
        label="p99 per trial",
    )
    table = _table(markup)
    _headed(table)
    assert _texts(table) == [
        ["series", "trial", "ms"],
        ["v1", "1", "10"],
        ["v1", "2", "12.5"],
        ["v2", "2", "11"],
        ["v2", "4", "9"],
    ]


def test_an_interval_chart_lists_each_drawn_look() -> None:
    looks = [
        Look(n=50.0, estimate=None, low=None, high=None, decision="continue"),
        Look(n=100.0, estimate=0.125, low=-0.5, high=0.75, decision="continue"),
        Look(n=150.0, estimate=0.0625, low=None, high=None, decision="continue"),
        Look(n=200.0, estimate=-0.03125, low=-0.0625, high=-0.015625, decision="challenger_better"),
    ]
    for marks in (True, False):  # a decided test has no per-look marks; its data stays
        markup = interval_chart(looks, decided_at=3, label="v3 vs v2", marks=marks)
        table = _table(markup)
        _headed(table)
        assert _texts(table) == [
            ["n", "estimate", "low", "high", "decision"],
            ["100", "0.125", "-0.5", "0.75", "continue"],
            ["150", "0.0625", "—", "—", "continue"],
            ["200", "-0.03125", "-0.0625", "-0.01562", "challenger_better"],
        ]
        desc = "".join(_parse(markup).desc)
        assert "challenger_better at n=200" in desc, desc


def test_a_bar_chart_lists_each_group_by_series() -> None:
    markup = bar_chart(
        ["set 1", "set 2"],
        [Series("p50", [0.0, 1.0], [1.5, 2.0]), Series("p99", [0.0, 1.0], [None, 12345.0])],
        y_label="ms",
        label="latency per set",
    )
    table = _table(markup)
    _headed(table)
    assert _texts(table) == [
        ["group", "p50", "p99"],
        ["set 1", "1.5", "—"],
        ["set 2", "2", "12345"],
    ]


def test_a_heatmap_lists_each_feature_by_window_and_says_which_cells_are_outlined() -> None:
    long = "num_transactions_last_7_days_in_the_merchant_category"
    markup = heatmap(
        ["age", long],
        ["2025-01-01 00:00", "2025-01-01 01:00"],
        [[0.0, 0.25], [None, 1.0]],
        flagged=[[False, True], [False, True]],
        label="share of windows drifted",
    )
    table = _table(markup)
    _headed(table)
    assert _texts(table) == [
        ["feature", "2025-01-01 00:00", "2025-01-01 01:00"],
        ["age", "0", "0.25 (outlined)"],
        [long, "—", "1 (outlined)"],  # the full name, as the tooltip gives it
    ]
    desc = "".join(_parse(markup).desc)
    assert "2 features" in desc and "2 windows" in desc and "2 cells outlined" in desc


def test_names_in_the_table_are_escaped() -> None:
    name = '<script>alert("x")</script>&'
    markup = line_chart(
        [Series(name, [1.0, 2.0], [1.0, 2.0])], x_label="<b>x</b>", y_label="y", label=name
    )
    assert "<script>" not in markup and "<b>" not in markup
    assert _texts(_table(markup))[0] == ["<b>x</b>", name]


def test_the_table_is_no_longer_than_the_points_drawn() -> None:
    xs = [float(i) for i in range(400)]
    ys: list[float | None] = [None if i % 3 == 0 else float(i) for i in range(400)]
    markup = line_chart(
        [Series("a", xs, ys), Series("b", xs, [None] * 400)], x_label="x", y_label="y", label="l"
    )
    drawn = sum(1 for y in ys if y is not None)
    assert len(_table(markup)) - 1 == drawn  # a row per x that has a value, and the header


def test_an_empty_chart_needs_no_table() -> None:
    markup = line_chart([Series("a", [], [])], x_label="x", y_label="y", label="nothing")
    assert "<table" not in markup and "No data yet." in markup
