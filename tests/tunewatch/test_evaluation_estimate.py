"""The label-free estimate kind on a real store: which reference rows calibrate it, the
direction its alarm fires in, the realised accuracy stored beside it (of matured requests
only), and the sign of the exported decay slope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shadow import OnnxModel
from tests.tunewatch.conftest import Clock, champion_answered, feed
from tests.tunewatch.test_evaluation import _write_hour
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch.store import LabelItem

MODEL = "credit"
WINDOW = 600


@contextmanager
def _daemon(
    tmp_path: Path,
    champion: ExampleModel,
    reference: Reference,
    *,
    evaluation: dict[str, object] | None = None,
    model: dict[str, object] | None = None,
) -> Iterator[Daemon]:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {"window_rows": WINDOW, **(evaluation or {})},
                    **(model or {}),
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    try:
        d.registry.register(
            MODEL,
            champion.onnx,
            champion.metadata,
            actor="test",
            stage="champion",
            reference=reference,
        )
        yield d
    finally:
        d.close()


def _estimate(
    tmp_path: Path,
    champion: ExampleModel,
    reference: Reference,
    *,
    edit: Callable[[np.ndarray], None] | None = None,
    evaluation: dict[str, object] | None = None,
) -> tuple[Any, list[str]]:
    """The estimate row of one evaluation of a window of seeded traffic (``edit``
    changes its inputs), and the types of the events that evaluation raised."""
    with _daemon(tmp_path, champion, reference, evaluation=evaluation) as d:
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=0.0, seed=5, edit=edit)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        events = [e.type for e in d.store.list_events(model=MODEL, limit=20)]
        return rows["estimate"], events


def _reference(trained: list[ExampleModel]) -> Reference:
    reference = trained[0].reference
    assert isinstance(reference, Reference)
    return reference


def test_a_reference_row_whose_label_is_unknown_is_left_out_of_the_estimate(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """NaN is an unknown reference label: it reached CBPE's calibration, which refused it,
    and every estimate of that champion was "no labelled reference snapshot"."""
    reference = _reference(trained)
    assert reference.labels is not None
    labels = np.asarray(reference.labels, dtype=np.float64).copy()
    labels[0] = np.nan
    unknown = Reference(features=reference.features, labels=labels, scores=reference.scores)
    without = Reference(
        features=reference.features[1:],
        labels=reference.labels[1:],
        scores=None if reference.scores is None else reference.scores[1:],
    )
    got, _ = _estimate(tmp_path / "unknown", trained[0], unknown)
    expected, _ = _estimate(tmp_path / "without", trained[0], without)
    assert got.status == "ok", got.payload
    assert got.payload["reference"] == pytest.approx(expected.payload["reference"])
    assert got.payload["estimated"] == pytest.approx(expected.payload["estimated"])


def test_a_reference_without_a_known_label_says_so(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    reference = _reference(trained)
    unknown = Reference(
        features=reference.features,
        labels=np.full(len(reference.features), np.nan),
        scores=reference.scores,
    )
    row, _ = _estimate(tmp_path, trained[0], unknown)
    assert row.status == "insufficient_data"
    assert row.payload["reason"] == "no reference row has both a score and a known label"


def test_an_estimate_that_falls_past_max_drop_raises_estimate_dropped(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Inputs pulled toward the decision boundary make the champion unsure: the estimated
    accuracy falls about 0.2 below the reference's."""
    row, events = _estimate(
        tmp_path,
        trained[0],
        _reference(trained),
        edit=lambda x: x.__imul__(0.1),
        evaluation={"estimate": {"consecutive": 1, "max_drop": 0.05}},
    )
    assert row.payload["drop"] > 0.05
    assert row.payload["alarm"] is True
    assert events.count("estimate_dropped") == 1


def test_an_estimate_that_rises_past_max_drop_raises_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Inputs pushed away from the boundary make the champion surer: the estimate rises
    about 0.15 above the reference accuracy, which is no drop."""
    row, events = _estimate(
        tmp_path,
        trained[0],
        _reference(trained),
        edit=lambda x: x.__imul__(3.0),
        evaluation={"estimate": {"consecutive": 1, "max_drop": 0.05}},
    )
    assert row.payload["drop"] < -0.05
    assert row.payload["alarm"] is False
    assert "estimate_dropped" not in events


def _write_requests(
    d: Daemon, at: list[datetime], *, accuracy: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One request per time in ``at`` (ids ``r0``, ``r1``, ...), answered by the champion,
    without labels; returns which of them the champion predicts right (with probability
    ``accuracy``) and their labels, for :func:`_label` to add."""
    x, _ = example_data(len(at), seed=seed)
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    probs = session.primary(session.run(x))
    requests, outputs = [], []
    for i, when in enumerate(at):
        request, output = champion_answered(
            f"r{i}", when, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)
    predicted = (probs[:, 1] >= 0.5).astype(float)
    right = np.random.default_rng(seed).random(len(at)) < accuracy
    return right, np.where(right, predicted, 1.0 - predicted)


def _label(d: Daemon, truth: np.ndarray, which: np.ndarray) -> None:
    """Label the requests ``which`` selects now (the store stamps the real time)."""
    d.store.add_labels(
        MODEL,
        [LabelItem(request_id=f"r{i}", value=float(truth[i])) for i in np.flatnonzero(which)],
    )


def test_the_realised_accuracy_waits_for_the_window_to_mature(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Requests two hours old under a day's maturity, the right predictions labelled first:
    the labels that came are the fast, right ones, and the realised accuracy stored beside
    the estimate was 1.0 of a window whose accuracy is 0.7. It is none until the requests
    have matured, then the accuracy over all their labels."""
    with _daemon(
        tmp_path, trained[0], _reference(trained), evaluation={"decay": {"maturity_s": 86_400}}
    ) as d:
        now = datetime.now(UTC)
        at = [now - timedelta(hours=2) + timedelta(seconds=i) for i in range(WINDOW)]
        right, truth = _write_requests(d, at, accuracy=0.7, seed=7)
        _label(d, truth, right)  # the wrong ones' labels are still to come
        d.evaluator.clock = lambda: now + timedelta(minutes=1)
        young = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["estimate"]
        _label(d, truth, ~right)  # within the day: their requests mature with them
        d.evaluator.clock = lambda: now + timedelta(days=1)
        matured = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["estimate"]
    assert young.status == "ok" and young.payload["n"] == WINDOW
    assert young.payload["realised"] is None
    assert young.payload["n_labelled"] == 0
    assert matured.payload["realised"] == pytest.approx(right.mean())
    assert matured.payload["n_labelled"] == WINDOW


def test_the_realised_accuracy_reads_the_matured_part_of_the_window_only(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Half the window a maturity old and all labelled, half younger with only its right
    predictions labelled yet: the realised accuracy is the older half's."""
    with _daemon(
        tmp_path, trained[0], _reference(trained), evaluation={"decay": {"maturity_s": 86_400}}
    ) as d:
        now = datetime.now(UTC)
        half = WINDOW // 2
        at = [now - timedelta(hours=3) + timedelta(seconds=i) for i in range(half)]
        at += [now - timedelta(hours=1) + timedelta(seconds=i) for i in range(half)]
        right, truth = _write_requests(d, at, accuracy=0.7, seed=8)
        old = np.arange(WINDOW) < half
        _label(d, truth, old | right)
        # a day after the older half was received, not yet after the younger
        d.evaluator.clock = lambda: now + timedelta(days=1) - timedelta(hours=2)
        row = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["estimate"]
    assert row.payload["n"] == WINDOW
    assert row.payload["realised"] == pytest.approx(right[old].mean())
    assert row.payload["n_labelled"] == half


@pytest.mark.parametrize("objective", ["accuracy", "log_loss"])
def test_the_exported_decay_slope_is_positive_when_the_objective_gets_worse(
    trained: list[ExampleModel], tmp_path: Path, objective: str
) -> None:
    """The gauge is the trend signed so that > 0 is getting worse, whichever way the
    objective points; the stored verdict keeps the objective's own sign."""
    with _daemon(
        tmp_path,
        trained[0],
        _reference(trained),
        evaluation={
            "decay": {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24, "horizon_days": 1}
        },
        model={"objective": {"name": objective}},
    ) as d:
        t0 = datetime.now(UTC) + timedelta(hours=1)  # every label has matured
        d.evaluator.clock = lambda: t0 + timedelta(hours=24)
        for hour in range(1, 24):  # accuracy 0.90 → 0.70
            _write_hour(d, t0, hour, 200, 0.90 - 0.20 * (hour - 1) / 22, seed=100 + hour)
        decay = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"].payload
        gauge = d.metrics.registry.get_sample_value(
            "tunewatch_decay_slope_per_day", {"model": MODEL}
        )
    greater_is_better = objective == "accuracy"
    assert (decay["slope_per_day"] < 0) == greater_is_better
    assert gauge == pytest.approx(abs(decay["slope_per_day"]))
    assert gauge > 0
