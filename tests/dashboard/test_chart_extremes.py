"""Charts of extreme but finite values. A flat series at 1e16 (an RMSE of a revenue model)
was widened by +-0.5, a no-op at that magnitude, and the scale divided by zero: the decay
page answered 500. Values spanning past the float maximum (-1.7e308 to 1.7e308) drew
``nan`` coordinates and ``inf`` tick labels."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.dashboard._svg import Look, Series, bar_chart, interval_chart, line_chart

BIG = sys.float_info.max
EXTREMES = {
    "flat-1e16": [1e16, 1e16],
    "single-1e16": [1e16],
    "flat-at-float-max": [BIG, BIG],
    "flat-at-minus-float-max": [-BIG, -BIG],
    "spanning-past-float-max": [-1.7e308, 1.7e308],
}
START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def _line(ys: list[float]) -> str:
    xs = [float(i) for i in range(len(ys))]
    return line_chart([Series("rmse", xs, ys)], x_label="x", y_label="y", label="objective")


def _line_in_time(ys: list[float]) -> str:
    xs = [START + 3600.0 * i for i in range(len(ys))]
    return line_chart(
        [Series("rmse", xs, ys)], x_label="t", y_label="y", label="objective", x_time=True
    )


def _line_along_x(ys: list[float]) -> str:
    """The values on the x axis instead."""
    return line_chart(
        [Series("rmse", ys, [float(i) for i in range(len(ys))])],
        x_label="x",
        y_label="y",
        label="objective",
    )


def _interval(ys: list[float]) -> str:
    looks = [
        Look(n=50.0 * (i + 1), estimate=v, low=v, high=v, decision="continue")
        for i, v in enumerate(ys)
    ]
    return interval_chart(looks, decided_at=len(looks) - 1, label="v2 vs v1")


def _interval_wide(ys: list[float]) -> str:
    """An interval from -1.7e308 to 1.7e308 around each estimate."""
    looks = [
        Look(n=50.0 * (i + 1), estimate=v, low=-1.7e308, high=1.7e308, decision="continue")
        for i, v in enumerate(ys)
    ]
    return interval_chart(looks, decided_at=None, label="v2 vs v1")


def _bars(ys: list[float]) -> str:
    groups = [f"set {i}" for i in range(len(ys))]
    return bar_chart(groups, [Series("p50", [0.0] * len(ys), ys)], y_label="ms", label="latency")


CHARTS: dict[str, Callable[[list[float]], str]] = {
    "line": _line,
    "line-in-time": _line_in_time,
    "line-along-x": _line_along_x,
    "interval": _interval,
    "interval-wide": _interval_wide,
    "bars": _bars,
}
_COORDS = ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height")


def _svg(markup: str) -> str:
    return markup[markup.index("<svg") : markup.index("</svg>") + 6]


def _coordinates(svg: str) -> list[float]:
    """Every number the SVG positions a mark with."""
    values = [float(v) for v in re.findall(rf'\s(?:{"|".join(_COORDS)})="([^"]*)"', svg)]
    for points in re.findall(r' points="([^"]*)"', svg):
        values += [float(v) for pair in points.split() for v in pair.split(",")]
    return values


@pytest.mark.parametrize("values", EXTREMES.values(), ids=EXTREMES.keys())
@pytest.mark.parametrize("chart", CHARTS.values(), ids=CHARTS.keys())
def test_extreme_finite_values_draw_finite_coordinates_and_labels(
    chart: Callable[[list[float]], str], values: list[float]
) -> None:
    svg = _svg(chart(values))
    coordinates = _coordinates(svg)
    assert coordinates and all(math.isfinite(v) for v in coordinates)
    assert not re.search(r"(?i)\b(nan|inf|infinity)\b", svg), svg
    texts = re.findall(r">([^<]+)</text>", svg)
    assert texts and not any(re.search(r"(?i)nan|inf", t) for t in texts), texts


@pytest.mark.parametrize("values", EXTREMES.values(), ids=EXTREMES.keys())
def test_extreme_values_fall_inside_the_plot_top_to_bottom_by_value(values: list[float]) -> None:
    svg = _svg(_line(values))
    points = re.findall(r' points="([^"]*)"', svg) or [
        " ".join(f"{x},{y}" for x, y in re.findall(r'<circle cx="([^"]*)" cy="([^"]*)"', svg))
    ]
    ys = [float(pair.split(",")[1]) for pair in points[0].split()]
    assert all(28 <= y <= 260 - 36 for y in ys), ys
    if values[0] < values[-1]:
        assert ys[0] > ys[-1]  # the lower value is drawn lower
    else:
        assert ys[0] == ys[-1]


def test_a_span_past_the_float_maximum_keeps_its_ticks_in_order() -> None:
    svg = _svg(_line([-1.7e308, 1.7e308]))
    ticks = [
        float(t) for t in re.findall(r'<text x="58\.?0*" [^>]*text-anchor="end">([^<]+)<', svg)
    ]
    assert ticks == sorted(ticks) and ticks[0] == pytest.approx(-1.7e308)
    assert ticks[-1] == pytest.approx(1.7e308) and 0.0 in ticks


# -- the page ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Models whose every decay window scores one huge RMSE, and one spanning the floats."""
    with serve(tmp_path_factory.mktemp("chart-extremes")) as running:
        store = running.daemon.store
        now = datetime.now(UTC)
        for name, values in {
            "revenue": [1.2e16] * 3,
            "revenue-small": [1.2e15] * 3,
            "wild": [-1.7e308, 1.7e308, 0.0],
        }.items():
            store.ensure_model(name=name, task="regression", feature_names=["a"])
            store.add_evaluation(
                model=name,
                version=None,
                kind="decay",
                status="ok",
                window_start=None,
                window_end=now,
                payload={
                    "alarm": False,
                    "status": "insufficient_data",
                    "objective": "rmse",
                    "windows": [
                        {"end": (now - timedelta(days=2 - k)).isoformat(), "value": v, "n": 100}
                        for k, v in enumerate(values)
                    ],
                },
            )
        yield running


@pytest.mark.parametrize("model", ["revenue", "revenue-small", "wild"])
def test_the_decay_page_draws_a_huge_objective(served: Served, model: str) -> None:
    r = httpx.get(
        f"{served.url}/dashboard/models/{model}/decay",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text[:400]
    chart = _svg(r.text[r.text.index("<h2>Decay trend") :])
    assert 'class="series"' in chart
    assert all(math.isfinite(v) for v in _coordinates(chart))
    assert not re.search(r"(?i)\b(nan|inf|infinity)\b", chart)
