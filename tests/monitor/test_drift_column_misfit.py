"""A per-column drift setting the reference cannot take is that column's problem alone.

A configured method that does not fit its column in the reference profile (a column the
profile lacks, such as ``__label__`` of a champion registered without labels; chi-square
or z on a continuous column; a numeric-only method on a categorical one) made the
detector refuse to exist, and the evaluation stored the whole drift verdict as
``insufficient_data``: eight features each shifted by 2 standard deviations raised
nothing. Now that column alone is ``insufficient_data`` with a reason naming it, its
method and why; the others are tested, and the dataset verdict rests on them.

Golden constants: reference of ``REFERENCE_ROWS = 2000`` rows of eight standard-normal
features ``x0..x7``, a continuous ``__prediction__`` and a two-value categorical
``segment``; windows of ``WINDOW = 500`` rows, shifted by ``SHIFT = 2`` standard
deviations in every numeric column (or unchanged). Expected: every tested numeric
column drifts and the dataset drifts under each rule; nothing drifts on the unchanged
window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.drift import ColumnDriftConfig, DriftDetector, DriftError, ReferenceProfile
from tests.tunewatch.conftest import Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._reference import Reference

REFERENCE_ROWS = 2000
WINDOW = 500
SHIFT = 2.0
FEATURES = tuple(f"x{i}" for i in range(8))
MODEL = "credit"


def _frame(n: int, *, shift: float, seed: int) -> pd.DataFrame:
    """Eight features, a prediction (no label: the reference had none) and a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(shift, 1.0, n) for name in FEATURES})
    frame["__prediction__"] = 1.0 / (1.0 + np.exp(-frame["x0"] - frame["x1"]))
    frame["segment"] = rng.choice(np.array(["a", "b"], dtype=object), n)
    return frame


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return ReferenceProfile.build(_frame(REFERENCE_ROWS, shift=0.0, seed=1))


# (the misfit column, its setting, what its reason must say)
MISFITS = {
    "label_without_reference_labels": (
        "__label__",
        ColumnDriftConfig(method="psi"),
        ("`columns['__label__'].method`", "'psi'", "reference profile has no column"),
    ),
    "chisquare_on_a_continuous_feature": (
        "x3",
        ColumnDriftConfig(method="chisquare"),
        ("`columns['x3'].method`", "'chisquare'", "more than 20 distinct reference values"),
    ),
    "z_on_a_continuous_feature": (
        "x5",
        ColumnDriftConfig(method="z"),
        ("`columns['x5'].method`", "'z'", "more than 20 distinct reference values"),
    ),
    "wasserstein_on_a_categorical_column": (
        "segment",
        ColumnDriftConfig(method="wasserstein"),
        ("`columns['segment'].method`", "'wasserstein'", "does not apply to 'cat' columns"),
    ),
}


@pytest.mark.parametrize("rule", ["share", "fdr", "bonferroni"])
@pytest.mark.parametrize("misfit", sorted(MISFITS))
def test_a_misfit_column_is_insufficient_and_the_others_still_drift(
    profile: ReferenceProfile, misfit: str, rule: Any
) -> None:
    column, config, says = MISFITS[misfit]
    detector = DriftDetector(profile, columns={column: config}, dataset_rule=rule)
    result = detector.check(_frame(WINDOW, shift=SHIFT, seed=2))

    verdict = result.column(column)
    assert verdict.status == "insufficient_data" and not verdict.drifted
    assert verdict.method == config.method and verdict.statistic is None
    for part in says:
        assert part in (verdict.reason or "")
    assert result.insufficient == (column,)
    # every tested numeric column drifted (x0..x7, and the prediction); the share divides
    # by the tested columns only: the misfit is not in the denominator
    tested = [c for c in result.columns if c.status != "insufficient_data"]
    assert column not in {c.column for c in tested}
    numeric = {*FEATURES, "__prediction__"} - {column}
    assert numeric <= set(result.drifted_columns)
    assert result.drifted_share == len(result.drifted_columns) / len(tested)
    assert result.dataset_drift


def test_a_misfit_column_raises_no_drift_on_an_unchanged_window(profile: ReferenceProfile) -> None:
    detector = DriftDetector(
        profile,
        columns={
            "__label__": ColumnDriftConfig(method="psi"),
            "x3": ColumnDriftConfig(method="chisquare"),
        },
    )
    result = detector.check(_frame(WINDOW, shift=0.0, seed=3))
    assert set(result.insufficient) == {"__label__", "x3"}
    assert result.drifted_columns == () and not result.dataset_drift
    # profiled columns in profile order, then the configured column the profile lacks
    assert [c.column for c in result.columns] == [*profile.columns, "__label__"]


def test_a_setting_wrong_whatever_the_reference_is_still_refused(
    profile: ReferenceProfile,
) -> None:
    with pytest.raises(DriftError, match="`method` must be one of"):
        ColumnDriftConfig(method="energy")  # type: ignore[arg-type]
    with pytest.raises(DriftError, match="`threshold` of a p-value test must be in"):
        DriftDetector(profile, columns={"__label__": ColumnDriftConfig(method="ks", threshold=2)})


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"__label__": {"method": "psi"}}, id="label_without_reference_labels"),
        pytest.param({"x0": {"method": "chisquare"}}, id="chisquare_on_a_continuous_feature"),
    ],
)
def test_the_evaluation_alarms_on_a_shift_despite_a_misfit_setting(
    trained: list[Any], tmp_path: Path, setting: dict[str, Any]
) -> None:
    """The reviewer's reproduction: a champion registered without reference labels, a
    label (or chi-square) setting, every feature shifted by 2 sd: the drift verdict was
    ``insufficient_data`` at every run and ``drift_detected`` never fired."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "drift": {"consecutive": 1, "columns": setting},
                        "decay": {"enabled": False},
                        "estimate": {"enabled": False},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    try:
        champion = trained[0]
        d.registry.register(
            MODEL,
            champion.onnx,
            champion.metadata,
            actor="test",
            stage="champion",
            reference=Reference(features=champion.reference.features),  # no labels
        )
        clock = Clock(datetime.now(UTC) - timedelta(days=3))
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=SHIFT, seed=70)
        row = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        [column] = setting
        [misfit] = [c for c in row.payload["columns"] if c["column"] == column]
        assert misfit["status"] == "insufficient_data"
        assert f"`columns[{column!r}].method`" in misfit["reason"]
        assert row.status == "ok" and row.payload["alarm"]
        assert set(FEATURES) - {column} <= set(row.payload["drifted_columns"])
        assert column in row.payload["insufficient"]
        assert len(d.store.list_events(model=MODEL, type="drift_detected", limit=10)) == 1
    finally:
        d.close()
