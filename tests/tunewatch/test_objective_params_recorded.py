"""An objective's parameters are recorded with what was tuned and judged for it, beside its
name: two retunes under `cost` with different cost matrices registered versions, jobs and
rationale reports that said only "objective: cost", so their "best CV cost" figures read
as comparable (an auditor could not tell what a version was tuned for), and the
warm-start note said a `cost` study was left out for being tuned for "another objective
than 'cost'", naming no matrix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor import ServingMetrics
from monitor.objectives import make_objective
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.one_trial_tuning import one_trial_daemon
from tunewatch._daemon import Daemon
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._evaluation_events import export_stored
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch._tuning import TuningJobRunner
from tunewatch.api._jobs import job_json
from tunewatch.store import JobRow

STRICT = [[0, 1], [20, 0]]  # a missed default costs 20 refusals
LENIENT = [[0, 1], [5, 0]]


def _cost_daemon(tmp_path: Path, trained: list[ExampleModel], matrix: list[list[int]]) -> Daemon:
    """A daemon over ``tmp_path``'s store whose model tunes one cheap trial for `cost`
    under ``matrix``, with v1 (by hand) its champion; the store, and the studies in it,
    are kept from one daemon to the next."""
    return one_trial_daemon(
        tmp_path, trained, objective={"name": "cost", "params": {"cost_matrix": matrix}}
    )


def _retune(d: Daemon) -> JobRow:
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
    )
    job = runner.run(outcome.job_id)
    assert job.status == "succeeded", job.error
    return job


def _markdown(d: Daemon, version: int) -> str:
    """``version``'s rationale report in Markdown, unescaped (``\\[`` read as ``[``)."""
    return build_report(d.store, d.config, MODEL, version).markdown().replace("\\", "")


@pytest.fixture
def strict_then_lenient(
    trained: list[ExampleModel], tmp_path: Path
) -> tuple[JobRow, JobRow, str, str]:
    """A retune under the strict matrix, then one under the lenient one: their jobs and
    the Markdown reports of the versions they registered."""
    d = _cost_daemon(tmp_path, trained, STRICT)
    try:
        strict = _retune(d)
        assert strict.result is not None
        strict_report = _markdown(d, strict.result["version"])
    finally:
        d.close()
    d = _cost_daemon(tmp_path, trained, LENIENT)
    try:
        lenient = _retune(d)
        assert lenient.result is not None
        lenient_report = _markdown(d, lenient.result["version"])
        for job in (strict, lenient):
            assert job.result is not None
            version = d.store.get_version(MODEL, job.result["version"])
            assert version.details["objective"] == "cost"  # the name, as every reader reads
            matrix = STRICT if job is strict else LENIENT
            assert version.details["objective_params"] == {"cost_matrix": matrix}
    finally:
        d.close()
    return strict, lenient, strict_report, lenient_report


def test_a_cost_retune_records_its_cost_matrix_with_the_version_and_the_job(
    strict_then_lenient: tuple[JobRow, JobRow, str, str],
) -> None:
    strict, lenient, _, _ = strict_then_lenient
    for job, matrix in ((strict, STRICT), (lenient, LENIENT)):
        assert job.result is not None
        assert job.result["objective"] == "cost"
        assert job.result["objective_params"] == {"cost_matrix": matrix}
        assert job.progress["objective_params"] == {"cost_matrix": matrix}
        shown = job_json(job)
        assert (shown["objective"], shown["objective_params"]) == ("cost", {"cost_matrix": matrix})


def test_the_rationale_report_says_which_cost_matrix_a_version_was_tuned_for(
    strict_then_lenient: tuple[JobRow, JobRow, str, str],
) -> None:
    _, _, strict_report, lenient_report = strict_then_lenient
    assert '**objective**: cost {"cost_matrix": [[0.0, 1.0], [20.0, 0.0]]}\n' in strict_report
    assert '**objective**: cost {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]}\n' in lenient_report


def test_the_warm_start_note_names_both_cost_matrices_of_a_left_out_study(
    strict_then_lenient: tuple[JobRow, JobRow, str, str],
) -> None:
    strict, _, _, lenient_report = strict_then_lenient
    assert strict.result is not None
    study = strict.result["study"]
    assert (
        "left out 1 earlier study tuned for another objective than 'cost': "
        f'{study} (cost {{"cost_matrix": [[0.0, 1.0], [20.0, 0.0]]}}, '
        'not cost {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]})'
    ) in lenient_report


def test_a_decay_verdict_records_the_objective_s_parameters(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _cost_daemon(tmp_path, trained, STRICT)
    try:
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        objective = make_objective("cost", task="binary", cost_matrix=STRICT)
        champion = d.store.champion(MODEL)
        assert champion is not None
        now = datetime.now(UTC)
        _, payload = decay_verdict(d.store, d.metrics, model, cfg, objective, now, champion.version)
        assert payload["objective"] == "cost"
        assert payload["objective_params"] == {"cost_matrix": STRICT}
    finally:
        d.close()


@pytest.mark.parametrize(
    ("recorded", "exported"),
    [
        pytest.param({"objective_params": {"cost_matrix": STRICT}}, True, id="same_matrix"),
        pytest.param({"objective_params": {"cost_matrix": LENIENT}}, False, id="other_matrix"),
        pytest.param({}, True, id="older_verdict_of_the_name_only"),
    ],
)
def test_a_new_leader_exports_a_stored_decay_verdict_only_under_its_own_cost_matrix(
    trained: list[ExampleModel], tmp_path: Path, recorded: dict[str, Any], exported: bool
) -> None:
    """A realised cost under another cost matrix is another figure: a new leader exported
    it as the configured objective's, by name alone. A verdict of an older release, which
    recorded the name only, is read by name as before."""
    d = _cost_daemon(tmp_path, trained, STRICT)
    try:
        windows = [{"end": "-", "value": v, "n": 50, "coverage": 1.0} for v in (0.40, 0.45)]
        now = datetime.now(UTC)
        d.store.add_evaluation(
            model=MODEL,
            version=1,
            kind="decay",
            status="ok",
            window_start=None,
            window_end=now,
            payload={
                "alarm": False,
                "objective": "cost",
                **recorded,
                "slope_per_day": 0.01,
                "windows": windows,
            },
        )
        model = d.store.get_model(MODEL)
        metrics = ServingMetrics()
        export_stored(
            d.store, metrics, model, d.config.model_or_default(MODEL, model.task), now=now
        )
    finally:
        d.close()
    value = metrics.registry.get_sample_value
    realised = value(
        "tunewatch_objective_realised", {"model": MODEL, "version": "1", "objective": "cost"}
    )
    slope = value("tunewatch_decay_slope_per_day", {"model": MODEL})
    assert (realised, slope) == ((0.45, 0.01) if exported else (None, None))
