"""A champion is evaluated whatever its ONNX input type: its reference rows are scored in
the type it declares, as its route serves requests, while drift compares the float32
features the store records.

The baseline scored the reference as float32, which onnxruntime refuses for a
``tensor(double)`` or integer input: every evaluation of such a champion raised, and
no drift, decay, labels or telemetry verdict was ever stored, nor a drift report built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from shadow import OnnxModel, validate_batch
from tests.tunewatch.conftest import MODEL, Clock, champion_answered
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import PREDICTION
from tunewatch._example import example_data, feature_names
from tunewatch._reference import Reference
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import EvaluationRow

WINDOW = 300
REFERENCE_ROWS = 1500


@dataclass(frozen=True)
class Champion:
    """A logistic champion taking ``input_dtype``, and rows it can be served."""

    input_dtype: str
    onnx: bytes
    metadata: VersionMetadata
    rows: Callable[..., tuple[np.ndarray, np.ndarray]]  # (n, *, seed, shift) -> x, y


def _integral_rows(n: int, *, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Example rows on a grid of quarters, scaled to integers: what an integer input holds."""
    x, y = example_data(n, seed=seed, shift=shift)
    return np.round(x * 4), y


def _champion(input_dtype: str) -> Champion:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from sklearn.linear_model import LogisticRegression

    rows = _integral_rows if input_dtype == "int64" else example_data
    x, y = rows(600, seed=11)
    estimator = LogisticRegression(C=0.5, max_iter=500).fit(x, y)
    tensor = {
        "float32": FloatTensorType,
        "float64": DoubleTensorType,
        "int64": Int64TensorType,
    }[input_dtype]
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", tensor([None, 8]))],
        final_types=[
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, 2])),
        ],
        options={id(estimator): {"zipmap": False}},
    )
    return Champion(
        input_dtype=input_dtype,
        onnx=proto.SerializeToString(),
        metadata=VersionMetadata(
            task="binary",
            feature_names=feature_names(8),
            hyperparameters={"estimator": "logistic", "C": 0.5, "input": input_dtype},
            dataset_version=f"example-seed11-n600-{input_dtype}",
        ),
        rows=rows,
    )


def _daemon(tmp_path: Path, champion: Champion, reference: Reference) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"window_rows": WINDOW}}],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(
        MODEL, champion.onnx, champion.metadata, actor="test", stage="champion", reference=reference
    )
    return d


def _serve(d: Daemon, clock: Clock, start: int, x: np.ndarray) -> None:
    """Score ``x`` one request a row as the route does (validated and cast to the
    champion's input type) and record it as the daemon does (inputs and outputs as
    float32), ``clock`` advancing 1 s a request."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    served = validate_batch(x, session.signature, max_rows=len(x))
    assert served.dtype == session.signature.input.dtype
    probs = session.primary(session.run(served))
    requests, outputs = [], []
    for i in range(len(x)):
        clock.now += timedelta(seconds=1)
        request, output = champion_answered(
            f"r{start + i}", clock.now, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)


def _drift(rows: list[EvaluationRow]) -> EvaluationRow:
    [drift] = [r for r in rows if r.kind == "drift"]
    return drift


@pytest.fixture(params=["float32", "float64", "int64"])
def champion(request: pytest.FixtureRequest) -> Champion:
    return _champion(request.param)


@pytest.fixture
def daemon(champion: Champion, tmp_path: Path) -> Iterator[Daemon]:
    x, y = champion.rows(REFERENCE_ROWS, seed=0)
    d = _daemon(tmp_path, champion, Reference(features=x, labels=y.astype(np.float64)))
    yield d
    d.close()


def test_a_champion_of_any_input_dtype_is_evaluated_and_its_drift_detected(
    daemon: Daemon, champion: Champion
) -> None:
    clock = Clock()
    daemon.evaluator.clock = clock
    _serve(daemon, clock, 0, champion.rows(WINDOW, seed=3)[0])

    steady = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}

    assert set(steady) == {"drift", "decay", "estimate", "labels", "telemetry"}
    assert steady["drift"].status == "ok"
    assert steady["drift"].payload["alarm"] is False
    assert steady["estimate"].status == "ok"  # the reference's scores calibrated it
    prediction = next(c for c in steady["drift"].payload["columns"] if c["column"] == PREDICTION)
    assert prediction["status"] == "ok"
    assert prediction["n_ref"] == REFERENCE_ROWS  # every reference row was scored

    _serve(daemon, clock, WINDOW, champion.rows(WINDOW, seed=4, shift=1.0)[0])
    shifted = _drift(daemon.evaluator.evaluate(MODEL))

    assert shifted.status == "ok"
    assert shifted.payload["alarm"] is True
    assert {"x0", "x1", PREDICTION} <= set(shifted.payload["drifted_columns"])
    stored = daemon.store.list_evaluations(MODEL, kind="drift", limit=10)
    assert sorted(r.id for r in stored) == [steady["drift"].id, shifted.id]


def test_the_drift_report_of_a_float64_champion_renders(tmp_path: Path) -> None:
    champion = _champion("float64")
    x, y = champion.rows(REFERENCE_ROWS, seed=0)
    d = _daemon(tmp_path, champion, Reference(features=x, labels=y.astype(np.float64)))
    try:
        clock = Clock()
        d.evaluator.clock = clock
        _serve(d, clock, 0, champion.rows(WINDOW, seed=4, shift=1.0)[0])
        drift = _drift(d.evaluator.evaluate(MODEL))
        assert drift.payload["alarm"] is True
        fresh = Daemon(d.config, env={})  # no baseline cached: the report builds its own
        try:
            html = fresh.evaluator.drift_report(MODEL, drift.id)
        finally:
            fresh.close()
        assert "<html" in html.lower()
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert report.payload["evaluation"] == drift.id
        assert "x0" in report.payload["drifted_columns"]
    finally:
        d.close()


def test_reference_rows_an_integer_input_cannot_hold_are_left_unscored(tmp_path: Path) -> None:
    """A reference row with a missing or fractional value is one the integer champion's
    route refuses: it has no score, as a time series' first rows have none, and the
    other rows are scored and the features' drift tested in full."""
    champion = _champion("int64")
    x, y = champion.rows(REFERENCE_ROWS, seed=0)
    x[0, 2] = np.nan
    x[1, 5] = 0.5
    d = _daemon(tmp_path, champion, Reference(features=x, labels=y.astype(np.float64)))
    try:
        clock = Clock()
        d.evaluator.clock = clock
        _serve(d, clock, 0, champion.rows(WINDOW, seed=3)[0])
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        columns = {c["column"]: c for c in rows["drift"].payload["columns"]}
        assert rows["drift"].status == "ok"
        assert columns[PREDICTION]["n_ref"] == REFERENCE_ROWS - 2
        assert columns["x5"]["n_ref"] == REFERENCE_ROWS  # a fractional value is a value
        assert columns["x2"]["n_ref"] == REFERENCE_ROWS - 1  # a missing one is not
        assert rows["estimate"].status == "ok"
        assert rows["estimate"].payload["n"] == WINDOW
    finally:
        d.close()
