"""The label-free estimate exports the two accuracies it is judged against beside it: the
realised accuracy of the same decisions (``tunewatch_estimate_realised``) and the
champion's reference accuracy (``tunewatch_estimate_reference``), the line
``TunewatchEstimateDropped`` compares with. Both were stored in the estimate's payload
only: the dashboard drew the estimated accuracy (0.722) against the realised objective,
another metric (log loss, 0.617), and could not show how far off the estimate was.

They follow the estimated accuracy's lifecycle: set by the evaluation, exported again
from the store by a new leader, removed with the champion they describe, dropped by a
process that stops leading, and absent while the payload has no figure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, Clock, champion_answered, feed
from tests.tunewatch.test_evaluation import _champion_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import EvaluationRow

WINDOW = 600
#: the estimate's figures by gauge, each the payload key it exports
FIGURES = {
    "tunewatch_objective_estimated": "estimated",
    "tunewatch_estimate_realised": "realised",
    "tunewatch_estimate_reference": "reference",
}


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """The example champion with its reference; every label matured at once."""
    evaluation = {"window_rows": WINDOW, "drift": {"enabled": False}, "decay": {"maturity_s": 0}}
    d = _champion_daemon(trained, tmp_path, evaluation)
    d.evaluator.clock = Clock()
    yield d
    d.close()


def _estimate(d: Daemon, start: int, *, labels: bool = True) -> EvaluationRow:
    """Feed a window (labelled or not) and evaluate it: its stored estimate."""
    clock = d.evaluator.clock
    assert isinstance(clock, Clock)
    feed(d, clock, start, WINDOW, shift=0.0, seed=100 + start, labels=labels)
    return {r.kind: r for r in d.evaluator.evaluate(MODEL)}["estimate"]


def _exported(d: Daemon) -> dict[str, dict[str, float]]:
    """The model's series of each figure's gauge, by version: ``{gauge: {version: value}}``."""
    out: dict[str, dict[str, float]] = {name: {} for name in FIGURES}
    for family in d.metrics.registry.collect():
        for sample in family.samples:
            if sample.name in FIGURES and sample.labels["model"] == MODEL:
                assert sample.labels["objective"] == "accuracy", sample
                out[sample.name][sample.labels["version"]] = sample.value
    return out


def _as_stored(row: EvaluationRow, version: str) -> dict[str, dict[str, float]]:
    """The series the stored estimate ``row`` exports: a figure it lacks, none."""
    return {
        name: {} if row.payload[key] is None else {version: row.payload[key]}
        for name, key in FIGURES.items()
    }


def test_the_estimate_exports_the_realised_and_reference_accuracy_it_stores(
    daemon: Daemon,
) -> None:
    row = _estimate(daemon, 0)
    assert row.status == "ok", row.payload
    p = row.payload
    assert p["n_labelled"] == WINDOW and 0.6 < p["realised"] < 0.9 and 0.6 < p["reference"] < 0.9
    assert _exported(daemon) == _as_stored(row, "1")


def test_an_estimate_with_no_label_due_exports_no_realised_accuracy(daemon: Daemon) -> None:
    """The realised accuracy of a window without labels is no figure: none exported, and
    the previous window's not held over."""
    assert _estimate(daemon, 0).payload["realised"] is not None
    row = _estimate(daemon, WINDOW, labels=False)
    assert row.status == "ok" and row.payload["realised"] is None
    exported = _exported(daemon)
    assert exported == _as_stored(row, "1")
    assert exported["tunewatch_estimate_realised"] == {}


def test_the_estimate_s_figures_are_exported_again_from_the_store(daemon: Daemon) -> None:
    """A process that stops leading drops them; one that takes the lease exports the
    stored ones (as a restart or a failover does)."""
    row = _estimate(daemon, 0)
    daemon.metrics.clear_evaluation()
    assert _exported(daemon) == {name: {} for name in FIGURES}
    daemon.metrics.exports_evaluation = True  # leads from now on
    daemon.evaluator.export_stored(MODEL)
    assert _exported(daemon) == _as_stored(row, "1")


def test_a_replaced_champion_s_estimate_figures_leave_with_it(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The old champion's reference accuracy, kept, would draw a second line the
    estimate is no longer judged against."""
    _estimate(daemon, 0)
    v2 = daemon.registry.register(
        MODEL, trained[1].onnx, trained[1].metadata, actor="t", reference=trained[1].reference
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="replace")
    daemon.metrics.exports_evaluation = True
    daemon.evaluator.export_stored(MODEL)  # as the daemon does when the champion changes
    assert _exported(daemon) == {name: {} for name in FIGURES}  # v2 has no estimate yet
    row = _estimate(daemon, WINDOW)  # a window scored by v2 only
    assert row.status == "ok", row.payload
    assert _exported(daemon) == _as_stored(row, str(v2.version))


def test_an_evaluation_that_cannot_estimate_exports_none_of_its_figures(
    daemon: Daemon,
) -> None:
    """A window the champion answered too little of (its runs failed: requests recorded
    without an output) has no estimate, and no figure is held over from the last."""
    _estimate(daemon, 0)
    clock = daemon.evaluator.clock
    assert isinstance(clock, Clock)
    x, _ = example_data(WINDOW, seed=7)
    unanswered = []
    for i in range(WINDOW):
        clock.now += timedelta(seconds=1)
        request, _ = champion_answered(f"u{i}", clock.now, x[i : i + 1], x[i : i + 1], version=1)
        unanswered.append(request)
    daemon.store.write_records(unanswered, [])
    row = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["estimate"]
    assert row.status == "insufficient_data", row.payload
    assert _exported(daemon) == {name: {} for name in FIGURES}
