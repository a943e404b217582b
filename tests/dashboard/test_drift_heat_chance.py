"""The drift heatmap over long histories: a column of the heatmap stands for about 22
hourly windows over a year, and each window's tests flag a stationary feature about 5 %
of the time. Coloured by the column's highest score 1 - p (whose mean over 22 windows of
no drift is about 0.96) and outlined when any window drifted, 8 stationary features over
8,784 windows outlined 62 % of cells at a mean colour of 0.950, against 98 % and 0.995 for
a drifting stream. A cell is now coloured by the share of its windows that drifted the
feature and outlined only when that count is beyond chance at the tests' own level."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from monitor import DriftDetector, ReferenceProfile
from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.dashboard._chance import beyond_chance, least_beyond_chance
from tunewatch.store._schema import evaluations

FEATURES = [f"x{i}" for i in range(8)]
HOURS = 24 * 366
PER_COLUMN = 22  # hourly windows per heatmap column over a year at 400 columns


def _window(at: datetime, model: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    drifted = [c["column"] for c in columns if c["drifted"]]
    share = len(drifted) / len(columns)
    return {
        "model": model,
        "version": None,
        "kind": "drift",
        "status": "drift" if share >= 0.5 else "ok",
        "window_start": at - timedelta(hours=1),
        "window_end": at,
        "created_at": at,
        "payload": {
            "alarm": share >= 0.5,
            "drifted_share": share,
            "drifted_columns": drifted,
            "rule": "share",
            "columns": columns,
        },
    }


def _judged_windows(model: str, *, shift: float, windows: int, seed: int) -> list[dict[str, Any]]:
    """``windows`` hourly windows of 200 rows judged by monitor's DriftDetector against a
    1000-row reference (KS at 0.05 per feature, the share rule at 0.5), the inputs shifted
    by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    features = FEATURES[:4]
    reference = pd.DataFrame(rng.normal(size=(1000, len(features))), columns=features)
    detector = DriftDetector(ReferenceProfile.build(reference), min_rows=30)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for h in range(windows):
        current = pd.DataFrame(rng.normal(shift, 1, size=(200, len(features))), columns=features)
        result = detector.check(current)
        columns = [
            {
                "column": c.column,
                "method": c.method,
                "statistic": c.statistic,
                "p_value": c.p_value,
                "threshold": c.threshold,
                "drifted": c.drifted,
                "status": c.status,
                "n_cur": c.n_cur,
            }
            for c in result.columns
        ]
        rows.append(_window(end - timedelta(hours=windows - h), model, columns))
    return rows


def _year_of_p_values(model: str, *, power: float, seed: int) -> list[dict[str, Any]]:
    """A year of hourly KS verdicts of :data:`FEATURES` at 0.05: p-values uniform (no drift:
    the null distribution of a continuous test's p-value) or, with ``power`` > 1, drawn as
    ``U ** power`` (a window drifts a feature with probability ``0.05 ** (1 / power)``)."""
    rng = np.random.default_rng(seed)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for h in range(HOURS):
        ps = rng.uniform(0, 1, len(FEATURES)) ** power
        columns = [
            {
                "column": f,
                "method": "ks",
                "statistic": float(1 - p) / 4,
                "p_value": float(p),
                "threshold": 0.05,
                "drifted": bool(p <= 0.05),
                "status": "ok",
                "n_cur": 500,
            }
            for f, p in zip(FEATURES, ps, strict=True)
        ]
        rows.append(_window(end - timedelta(hours=HOURS - h), model, columns))
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Four models: ``judged-stable`` and ``judged-shifted`` (660 windows each, judged by
    the detector), ``year-stable`` and ``year-drifting`` (a year of hourly verdicts)."""
    with serve(tmp_path_factory.mktemp("chance")) as running:
        store = running.daemon.store
        streams = {
            "judged-stable": _judged_windows("judged-stable", shift=0.0, windows=660, seed=1),
            "judged-shifted": _judged_windows("judged-shifted", shift=0.5, windows=660, seed=2),
            "year-stable": _year_of_p_values("year-stable", power=1.0, seed=3),
            "year-drifting": _year_of_p_values("year-drifting", power=40.0, seed=4),
        }
        for model, rows in streams.items():
            features = FEATURES[:4] if model.startswith("judged") else FEATURES
            store.ensure_model(name=model, task="binary", feature_names=features)
            with store.engine.begin() as conn:
                conn.execute(evaluations.insert(), rows)
        yield running


@dataclass
class Drawn:
    outlined: float  # share of the heatmap's cells outlined
    colour: float  # mean colour value of its cells
    columns: int


def _json(served: Served, model: str, **params: str) -> Drawn:
    r = httpx.get(
        f"{served.url}/v1/dashboard/models/{model}/drift",
        headers=served.auth("viewer"),
        params=params,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    cols = r.json()["columns"]
    shares = [s for c in cols for s in c["shares"]]
    flags = [b for c in cols for b in c["beyond_chance"]]
    assert all(s is not None for s in shares)
    return Drawn(float(np.mean(flags)), float(np.mean(shares)), len(cols))


def _page(served: Served, model: str) -> Drawn:
    r = httpx.get(
        f"{served.url}/dashboard/models/{model}/drift",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    cells = re.findall(r"<rect [^>]*data-feature=[^>]*>", r.text)
    assert len(cells) == 400 * len(FEATURES)
    values = [float(re.search(r'data-value="([^"]+)"', c).group(1)) for c in cells]  # type: ignore[union-attr]
    outlined = sum('class="drifted"' in c for c in cells)
    return Drawn(outlined / len(cells), float(np.mean(values)), 400)


def test_detector_verdicts_of_a_stable_stream_are_pale_and_rarely_outlined(
    served: Served,
) -> None:
    """660 windows judged by the detector in 30 columns of 22: the shape of a year."""
    stable = _json(served, "judged-stable", max_points="30")
    assert stable.columns == 30
    assert stable.outlined < 0.2
    assert stable.colour < 0.15


def test_detector_verdicts_of_a_shifted_stream_stay_red_and_outlined(served: Served) -> None:
    shifted = _json(served, "judged-shifted", max_points="30")
    assert shifted.outlined > 0.8
    assert shifted.colour > 0.8


def test_a_year_of_stationary_windows_draws_a_pale_heatmap_with_few_outlines(
    served: Served,
) -> None:
    stable = _page(served, "year-stable")
    assert stable.outlined < 0.2
    assert stable.colour < 0.5


def test_a_year_of_drifting_windows_draws_a_red_outlined_heatmap(served: Served) -> None:
    drifting = _page(served, "year-drifting")
    assert drifting.outlined > 0.8
    assert drifting.colour > 0.8


def test_the_page_says_what_the_colour_and_the_outline_mean(served: Served) -> None:
    r = httpx.get(
        f"{served.url}/dashboard/models/year-stable/drift",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=120,
    )
    assert "share of the column's windows in which the feature drifted" in r.text
    assert "more often than chance" in r.text
    tip = re.search(r'<rect [^>]*data-feature="x0"[^>]*><title>([^<]*)</title>', r.text)
    assert tip is not None and re.search(
        r"\d+ of 2[12] windows drifted \(chance 5%\)", tip.group(1)
    )


def test_one_drifted_window_of_one_is_beyond_chance_and_of_two_is_not() -> None:
    """A column of one window is outlined when that window drifted, as before; one of two
    drifted windows happens by chance about 10 % of the time at 0.05."""
    assert beyond_chance(1, 1, 0.05)
    assert not beyond_chance(0, 1, 0.05)
    assert not beyond_chance(1, 2, 0.05) and beyond_chance(2, 2, 0.05)
    assert least_beyond_chance(22, 0.05) == 4  # P(X >= 3) = 0.095, P(X >= 4) = 0.026


def test_beyond_chance_outlines_at_most_its_level_of_stationary_columns() -> None:
    """Binomial counts of windows drifted by chance: the share outlined stays under the
    level for any column width, and a column of 50,000 windows does not underflow."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 22, 220, 50_000):
        counts = rng.binomial(n, 0.05, size=20_000)
        outlined = np.mean([beyond_chance(int(k), n, 0.05) for k in counts])
        assert outlined <= 0.05 + 0.005, (n, outlined)
    assert 2_500 < least_beyond_chance(50_000, 0.05) < 2_700
