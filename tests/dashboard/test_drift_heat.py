"""The drift heatmap's score of a distance is monotonic in the evidence. Over categories a
distance's stored threshold is raised to its sampling-noise floor, but only once the
distance reaches the fixed threshold (``monitor.drift._noise``): scored against the stored
threshold, a Jensen-Shannon distance just under 0.1 coloured 0.498 while larger distances
judged against a raised floor coloured 0.43. Distances are scored against the fixed
threshold, and one the noise floor kept from drifting just below the drifted level."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from monitor.drift import METHODS, ColumnDrift, ReferenceProfile
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon

MODEL = "classes"
CATEGORIES = 100


@dataclass
class Heat:
    threshold: float  # the fixed threshold the windows were judged with
    verdicts: list[ColumnDrift]  # one per window, oldest first
    scores: list[float]  # the heatmap's score of each window's column, oldest first


def _verdicts(threshold: float) -> list[ColumnDrift]:
    """Jensen-Shannon verdicts of a 100-category column: windows of unchanged traffic of
    1100 to 5000 rows (about the fixed threshold; over it, the noise floor judges), and
    three windows whose shares moved."""
    rng = np.random.default_rng(8)
    shares = rng.dirichlet(np.full(CATEGORIES, 2.0))
    labels = np.array([f"k{k}" for k in range(CATEGORIES)], dtype=object)
    reference = pd.DataFrame({"a": rng.choice(labels, 5000, p=shares)})
    summary = ReferenceProfile.build(reference, column_types={"a": "cat"}).columns["a"]
    method = METHODS["jensenshannon"](threshold=threshold)
    moved = np.roll(shares, 1) * 0.3 + shares * 0.7
    verdicts = [
        method.test(summary, rng.choice(labels, n, p=shares), column="a")
        for n in (1100, 1500, 2000, 3000, 5000)
        for _ in range(6)
    ]
    verdicts += [
        method.test(summary, rng.choice(labels, n, p=moved), column="a") for n in (1100, 2000, 5000)
    ]
    return verdicts


def _payload(c: ColumnDrift) -> dict[str, Any]:
    """A drift window's payload as the evaluation stores it."""
    return {
        "alarm": c.drifted,
        "drifted_share": float(c.drifted),
        "drifted_columns": ["a"] if c.drifted else [],
        "rule": "share",
        "columns": [
            {
                "column": c.column,
                "method": c.method,
                "statistic": c.statistic,
                "p_value": c.p_value,
                "threshold": c.threshold,
                "drifted": c.drifted,
                "status": c.status,
                "reason": c.reason,
                "n_ref": c.n_ref,
                "n_cur": c.n_cur,
            }
        ],
    }


def _heat(data_dir: Path, configured: float | None) -> Heat:
    model: dict[str, Any] = {"name": MODEL, "task": "multiclass"}
    if configured is not None:
        model["evaluation"] = {
            "drift": {"columns": {"a": {"method": "jensenshannon", "threshold": configured}}}
        }
    config = build_config(
        {
            "data_dir": str(data_dir),
            "scheduler": {"enabled": False},
            "tuning": {"workers": 0},
            "models": [model],
        },
        env={},
    )
    threshold = configured if configured is not None else METHODS["jensenshannon"].default_threshold
    verdicts = _verdicts(threshold)
    d = Daemon(config, env={})
    try:
        token = new_token()
        d.store.add_token(name="v", role="viewer", token_hash=hash_token(token), actor="t")
        d.store.ensure_model(name=MODEL, task="multiclass", feature_names=["a"])
        start = datetime.now(UTC) - timedelta(hours=len(verdicts) + 1)
        for i, c in enumerate(verdicts):
            d.store.add_evaluation(
                model=MODEL,
                version=None,
                kind="drift",
                status="drift" if c.drifted else "ok",
                window_start=start + timedelta(hours=i),
                window_end=start + timedelta(hours=i + 1),
                payload=_payload(c),
            )
        with BackgroundServer(d.app) as server:
            r = httpx.get(
                f"{server.url}/v1/dashboard/models/{MODEL}/drift",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
    finally:
        d.close()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["features"] == ["a"]
    assert [col["windows"] for col in body["columns"]] == [1] * len(verdicts)
    return Heat(threshold, verdicts, [col["scores"][0] for col in body["columns"]])


@pytest.fixture(
    scope="module",
    params=[None, 0.09],
    ids=["method-default-threshold", "configured-threshold"],
)
def heat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Heat:
    return _heat(Path(tmp_path_factory.mktemp("heat")), request.param)


def test_the_windows_hold_raised_floors_and_drifted_distances(heat: Heat) -> None:
    """The scenario: some distances reached the fixed threshold but not the raised floor,
    some drifted, the others stayed under the fixed threshold."""
    raised = [c for c in heat.verdicts if not c.drifted and c.threshold > heat.threshold]
    drifted = [c for c in heat.verdicts if c.drifted]
    under = [c for c in heat.verdicts if c.threshold == heat.threshold and not c.drifted]
    assert raised and drifted and under
    assert all(c.statistic is not None and c.statistic >= heat.threshold for c in raised)


def test_a_larger_distance_never_scores_lower_among_windows_that_did_not_drift(
    heat: Heat,
) -> None:
    calm = sorted(
        (c.statistic, score)
        for c, score in zip(heat.verdicts, heat.scores, strict=True)
        if not c.drifted and c.statistic is not None
    )
    scores = [score for _, score in calm]
    assert scores == sorted(scores), calm


def test_every_drifted_window_scores_above_every_window_that_did_not(heat: Heat) -> None:
    drifted = [s for c, s in zip(heat.verdicts, heat.scores, strict=True) if c.drifted]
    calm = [s for c, s in zip(heat.verdicts, heat.scores, strict=True) if not c.drifted]
    assert min(drifted) >= 0.5 > max(calm)


def test_a_distance_under_the_fixed_threshold_scores_it_over_twice_that(heat: Heat) -> None:
    """The common case keeps its colour: the fixed threshold sits at 0.5."""
    for c, score in zip(heat.verdicts, heat.scores, strict=True):
        if c.threshold == heat.threshold and not c.drifted:
            assert c.statistic is not None
            assert score == pytest.approx(c.statistic / (2 * heat.threshold))
