"""Re-tuning jobs end to end: labelled traffic -> warm-started study -> ONNX with a parity
gate -> a shadow challenger; in-process, through the CLI, and in a worker process."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import platform
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import sklearn
import yaml
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.linear_model import LogisticRegression

import tunewatch
from monitor.objectives import make_objective
from retune import study_progress, to_onnx
from retune.cv import (
    GroupKFoldCV,
    KFoldCV,
    NestedCV,
    StratifiedKFoldCV,
    TimeSeriesCV,
    cross_validate,
    dataset_version,
)
from retune.space import fit_pipeline
from retune.warmstart import WarmStartPlan
from shadow import OnnxModel
from tests.tunewatch.conftest import Clock, feed
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConfigError, TuningError
from tunewatch._example import ExampleModel, example_data, feature_names
from tunewatch._launcher import JobLauncher
from tunewatch._reference import Reference
from tunewatch._report import build_report
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_results import study_name
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._oip_request import decode_infer_request
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Role, VersionRow

MODEL = "credit"
SPACE = {
    "format_version": 1,
    "name": "test_small",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic", "gradient_boosting"],
            "when": {
                "logistic": {
                    "C": {
                        "type": "float",
                        "low": 0.01,
                        "high": 10.0,
                        "log": True,
                        # the whole range: which C a few seeded trials reach is not
                        # these tests' business (a winner outside waited for an approver)
                        "safe": [0.01, 10.0],
                    }
                },
                "gradient_boosting": {
                    "gb_n_estimators": {"type": "int", "low": 10, "high": 30, "step": 10},
                    "gb_max_depth": {"type": "int", "low": 1, "high": 3},
                },
            },
        },
    },
}


def _config(tmp_path: Path, **tuning: object) -> dict[str, object]:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    job = {
        "search_space": str(space),
        "max_trials": 4,
        "cv_folds": 2,
        "patience": None,
        "wall_time_s": 120,
        "min_rows": 100,
        **tuning,
    }
    return {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [
            {
                "name": MODEL,
                "task": "binary",
                "tuning": job,
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }


def _daemon(raw: dict[str, object], trained: list[ExampleModel]) -> Daemon:
    d = Daemon(build_config(raw, env={}), env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    feed(d, Clock(), 0, 400, shift=0.5, seed=3)
    return d


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _daemon(_config(tmp_path), trained)
    yield d
    d.close()


def _runner(d: Daemon) -> TuningJobRunner:
    return TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="test"
    )


def test_job_registers_a_shadow_challenger_with_lineage_then_warm_starts(daemon: Daemon) -> None:
    first = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert first.status == "taken" and first.job_id is not None
    job = _runner(daemon).run(first.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None and job.result["version"] == 2
    version = daemon.store.get_version(MODEL, 2)
    assert version.stage == "shadow" and version.parent_version == 1
    assert version.study == study_name(daemon.store.get_job(first.job_id))
    assert version.dataset_version == job.result["dataset_version"]
    assert version.dataset_version.startswith("sha256:")
    assert len(version.details["fold_scores"]) == 2
    assert version.details["parity_error"] <= 1e-4
    # nothing to learn from yet: the plan holds only the serving-cost ceilings
    assert version.details["warm_start_plan"]["strategies"] == ["cost_constraint"]
    assert job.progress["trials"] >= 4 and job.progress["best_value"] is not None
    second = daemon.dispatcher.handle(MODEL, "manual", {"reason": "again"})
    assert second.job_id is not None
    job2 = _runner(daemon).run(second.job_id)
    assert job2.status == "succeeded", job2.error
    plan = daemon.store.get_version(MODEL, 3).details["warm_start_plan"]
    assert plan["strategies"][0] == "combined" and "enqueue_top_k" in plan["strategies"]
    assert plan["history_studies"] == [version.study]
    assert len(plan["enqueue"]) >= 1
    assert daemon.runtime.refresh() == [MODEL]  # the serving lineup picks both up
    lineup = daemon.runtime.model(MODEL).deployment.lineup
    assert [c.version for c in lineup.challengers] == [2, 3]


def test_a_job_learns_only_from_studies_tuned_for_its_objective(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The model's objective changed from log loss to the Brier score: the next job took
    the log-loss study as its history, re-scoring and boxing around what ranked best for
    another loss, and its plan said nothing of it."""
    raw = _config(tmp_path)
    d = _daemon(raw, trained)
    try:
        first = d.dispatcher.handle(MODEL, "manual", {"reason": "history"})
        assert first.job_id is not None
        assert _runner(d).run(first.job_id).status == "succeeded"
        models = [{**raw["models"][0], "objective": {"name": "brier"}}]  # type: ignore[index]
        brier = TuningJobRunner(
            store=d.store,
            registry=d.registry,
            artefacts=d.artefacts,
            config=build_config({**raw, "models": models}, env={}),
            worker="test",
        )
        second = d.dispatcher.handle(MODEL, "manual", {"reason": "new objective"})
        assert second.job_id is not None
        job = brier.run(second.job_id)
        assert job.status == "succeeded", job.error
        plan = d.store.get_version(MODEL, 3).details["warm_start_plan"]
        assert plan["history_studies"] == [] and plan["enqueue"] == []
        assert plan["numeric_box"] == [] and plan["explore_every"] is None
        study = study_name(d.store.get_job(first.job_id))
        assert any(
            "left out 1 earlier study" in note and study in note and "log_loss" in note
            for note in plan["notes"]
        ), plan["notes"]
    finally:
        d.close()


def test_a_job_records_the_warm_start_plan_its_study_ran_by(daemon: Daemon) -> None:
    """A worker joining or resuming a job's study samples by the plan the study stored; the
    version's details and the job's result recorded the worker's own plan instead (here
    its serving-cost ceiling, where the study ran with none)."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    stored = WarmStartPlan(strategies=("enqueue_top_k",), notes=("stored by the first worker",))
    optuna.create_study(
        study_name=study_name(daemon.store.get_job(outcome.job_id)),
        storage=daemon.config.tuning_storage_url,
    ).set_user_attr("warmstart_plan", stored.to_json())
    job = _runner(daemon).run(outcome.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None
    version = daemon.store.get_version(MODEL, job.result["version"])
    assert version.details["warm_start_plan"] == stored.to_dict()
    assert list(job.result["warm_start"]) == ["enqueue_top_k"]


def test_parity_failure_fails_the_job_clearly_and_registers_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, parity_tolerance=1e-12), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed"
        assert job.error is not None and job.error.startswith("ParityError")
        assert "tolerance" in job.error
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
        assert d.store.list_events(model=MODEL, type="retune_failed", limit=1)
    finally:
        d.close()


def test_too_little_labelled_data_fails_with_the_rule(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, min_rows=100_000), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed" and "tuning.min_rows" in (job.error or "")
    finally:
        d.close()


def test_job_progress_counts_the_trials_that_ran_not_those_still_queued(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Progress counted every trial of the job's study, the warm-start configurations
    still queued included: a job of ``max_trials: 2`` after one of 10 reported 5 trials
    of 2 while 2 ran. It counts the trials that ran, as the job's result does."""
    d = _daemon(_config(tmp_path, max_trials=10), trained)
    try:
        first = d.dispatcher.handle(MODEL, "manual", {"reason": "history"})
        assert first.job_id is not None
        assert _runner(d).run(first.job_id).status == "succeeded"
    finally:
        d.close()
    d = Daemon(build_config(_config(tmp_path, max_trials=2), env={}), env={})
    try:
        second = d.dispatcher.handle(MODEL, "manual", {"reason": "lowered budget"})
        assert second.job_id is not None
        seen: list[int] = []
        job = _runner(d).run(second.job_id, on_progress=lambda p: seen.append(p["trials"]))
        assert job.status == "succeeded", job.error
        assert job.result is not None
        storage = optuna.storages.RDBStorage(d.config.tuning_storage_url)
        try:
            study = optuna.load_study(study_name=job.result["study"], storage=storage)
            queued = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
        finally:
            storage.engine.dispose()
        assert queued  # warm-start configurations the budget left untried
        assert seen and max(seen) == seen[-1] == job.result["n_trials"] == 2
        assert job.progress["trials"] == 2
    finally:
        d.close()


def test_cli_retune_runs_with_a_progress_bar_and_jobs_lists_it(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    optuna_logger = logging.getLogger("optuna")
    try:
        assert main(["--config", str(config), "retune", MODEL, "--reason", "cli", "--run"]) == 0
        # Optuna's line per trial, on stderr too, broke the bar into lines of hundreds of
        # characters; it speaks only of warnings unless -v
        assert optuna_logger.level == logging.WARNING
    finally:
        optuna_logger.setLevel(logging.NOTSET)
    captured = capsys.readouterr()
    assert "trials" in captured.err and "[" in captured.err  # the progress bar
    assert "registered in shadow" in captured.out
    assert main(["--config", str(config), "jobs", "--model", MODEL]) == 0
    assert "succeeded" in capsys.readouterr().out


@pytest.mark.slow
def test_the_launcher_runs_queued_jobs_in_worker_processes(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    raw = _config(tmp_path)
    # worker_nice 0: at the default 19 a worker gets ~1.5 % of a core beside CI's other
    # tests (tests/tunewatch/test_worker_priority.py checks the niceness)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 10, "worker_nice": 0}
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert d.launcher.tick() == [outcome.job_id]
        deadline = time.monotonic() + 180
        while d.store.get_job(outcome.job_id).status in ("queued", "running"):  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "the worker did not finish"
            time.sleep(0.2)
        job = d.store.get_job(outcome.job_id)  # type: ignore[arg-type]
        assert job.status == "succeeded", job.error
        assert job.worker is not None and job.worker.split(":")[1] != str(__import__("os").getpid())
    finally:
        d.launcher.stop()
        d.close()


def test_rationale_report_tells_trigger_data_search_and_decision(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunewatch._governance import promote
    from tunewatch._report import build_report, write_report

    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "quarterly refresh"})
    assert outcome.job_id is not None
    assert _runner(daemon).run(outcome.job_id).status == "succeeded"
    promote(daemon.store, daemon.config, MODEL, 2, actor="alice", reason="won in shadow")
    md, page = write_report(daemon.store, daemon.config, MODEL, 2)
    text = md.read_text()
    for expected in (
        "## Trigger",
        "quarterly refresh",
        "## Data",
        "sha256:",
        "## Search space and hyperparameters",
        "## Warm-start plan",
        "Cold start",
        "fold scores",
        "## Decisions and approvals",
        "| promote | alice | won in shadow |",
        "## Hyperparameter importances",
        # four trials: too few for fANOVA, and the report says so (the row was empty)
        "completed trials, fewer than the 10 fANOVA needs",
    ):
        assert expected in text, expected
    assert "<table>" in page.read_text()
    assert build_report(daemon.store, daemon.config, MODEL, 1).markdown().count("register") >= 1
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    assert main(["--config", str(config), "report", MODEL, "2", "--print"]) == 0
    assert "# credit version 2: rationale" in capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_worker_s_job_is_queued_again_keeps_its_slot_and_its_study_resumes(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A worker the OOM killer ends loses its running trial, not the job: the job was
    failed, its completed trials never resumed and its retune lost."""
    raw = _config(tmp_path, max_trials=10_000, wall_time_s=600)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 1, "heartbeat_s": 1, "worker_nice": 0}
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        job_id = outcome.job_id
        assert job_id is not None and d.launcher.tick() == [job_id]
        deadline = time.monotonic() + 120
        while d.store.get_job(job_id).progress.get("trials", 0) < 2:
            assert time.monotonic() < deadline, "the worker never completed two trials"
            time.sleep(0.2)
        # another model's retune (one of MODEL's is the running job's duplicate)
        d.store.ensure_model(name="other", task="binary", feature_names=["x"])
        assert d.dispatcher.handle("other", "manual", {}).cause == "quota"  # the quota is full
        proc = d.launcher._procs[job_id]
        proc.kill()  # SIGKILL: no chance to record anything
        proc.wait()
        trials = d.store.get_job(job_id).progress["trials"]
        assert d.launcher.tick() == []  # reaps it; the next worker waits a moment
        job = d.store.get_job(job_id)
        assert (job.status, job.crashes) == ("queued", 1)
        assert "SIGKILL (-9)" in (job.error or "")
        assert d.store.list_events(model=MODEL, type="retune_failed") == []
        interrupted = d.store.list_events(model=MODEL, type="retune_interrupted")
        assert [e.payload["job"] for e in interrupted] == [job_id]
        assert d.dispatcher.handle("other", "manual", {}).cause == "quota"  # still its slot
        d.launcher.clock = lambda: time.monotonic() + 3600
        assert d.launcher.tick() == [job_id]
        while d.store.get_job(job_id).progress.get("trials", 0) <= trials:
            assert time.monotonic() < deadline + 120, "the study did not resume"
            time.sleep(0.2)
        assert d.store.get_job(job_id).status == "running"
    finally:
        d.launcher.stop()
        d.close()


def _register_as_the_job(d: Daemon, trained: list[ExampleModel], job_id: int) -> VersionRow:
    """Register a version the way job ``job_id``'s worker does (once for its study)."""
    return d.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, study=study_name(d.store.get_job(job_id))),
        actor=f"job:{job_id}",
        once_per_study=True,
    )


def test_of_two_workers_on_one_job_only_the_first_to_finish_registers(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Workers join a running job's study (`tunewatch worker --job`, or `retune --run`
    racing the launcher); each then refitted and registered the same winner as another
    shadow version. Here the other worker registers while this one tunes, and is
    finishing the job. (A version registered before a worker starts finishes the job at
    once: test_a_worker_finding_its_job_s_version_registered_finishes_the_job_without_tuning.)"""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    study = study_name(daemon.store.get_job(outcome.job_id))
    runner = _runner(daemon)
    registry = runner.registry
    registered: list[VersionRow] = []

    class OtherWorkerFirst:
        def __getattr__(self, name: str) -> Any:
            return getattr(registry, name)

        def register(self, *args: Any, **kwargs: Any) -> VersionRow:
            registered.append(_register_as_the_job(daemon, trained, outcome.job_id))
            return registry.register(*args, **kwargs)

    runner.registry = OtherWorkerFirst()  # type: ignore[assignment]
    job = runner.run(outcome.job_id)
    [other] = registered
    assert [v.version for v in daemon.store.list_versions(MODEL) if v.study == study] == [
        other.version
    ]
    assert job.status == "running"  # the worker that registered finishes it
    assert not daemon.store.list_events(model=MODEL, type="retune_failed", limit=1)
    assert not daemon.store.list_events(model=MODEL, type="challenger_registered", limit=1)


@pytest.mark.slow
def test_a_worker_stopped_with_the_daemon_queues_its_job_again(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The launcher stops its workers with SIGTERM when the daemon shuts down. The job was
    left `running` until presumed dead, then failed and never retried: a restart during a
    drift- or alert-triggered job lost that retune."""
    raw = _config(tmp_path, max_trials=10_000, wall_time_s=600)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 1, "heartbeat_s": 1, "worker_nice": 0}
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None and d.launcher.tick() == [outcome.job_id]
        deadline = time.monotonic() + 120
        while d.store.get_job(outcome.job_id).progress.get("trials", 0) < 1:
            assert time.monotonic() < deadline, "the worker never finished a trial"
            time.sleep(0.2)
        proc = d.launcher._procs[outcome.job_id]
        d.launcher.stop()
        assert proc.returncode is not None
        job = d.store.get_job(outcome.job_id)
        assert job.status == "queued" and job.error is None, job.error
        [event] = d.store.list_events(model=MODEL, type="retune_interrupted")
        assert event.payload["job"] == outcome.job_id
        assert not d.store.list_events(model=MODEL, type="retune_failed")
        # the next leader (a stopped launcher starts no worker) picks it up again
        d.launcher = JobLauncher(
            store=d.store, config_path=d.launcher.config_path, workers=1, stale_after_s=60.0
        )
        assert d.launcher.tick() == [outcome.job_id]
    finally:
        d.launcher.stop()
        d.close()


def test_every_worker_of_a_job_trains_on_the_same_window(daemon: Daemon) -> None:
    """A worker joining a job (or resuming it after a restart) read the newest rows and
    labels again; with traffic flowing they differed, the study refused the worker
    (dataset mismatch) and the shared job was marked failed. The window ends when the
    job was created."""
    feed(daemon, Clock(), 9_000, 20, shift=0.5, seed=5, labels=False)  # labelled later
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    runner = _runner(daemon)
    x1, y1, _ = runner._training_window(model, cfg, job)
    later = Clock(job.created_at + timedelta(seconds=5))
    feed(daemon, later, 5_000, 50, shift=0.5, seed=4)  # new labelled traffic
    daemon.store.add_labels(
        MODEL, [LabelItem(request_id=f"r{9_000 + i}", value=1.0) for i in range(20)]
    )  # and labels, arriving now, for requests made before the job
    x2, y2, _ = runner._training_window(model, cfg, job)
    assert dataset_version(x1, y1) == dataset_version(x2, y2)


def test_a_regression_space_that_weights_classes_is_a_config_error(tmp_path: Path) -> None:
    """A regression model's space with `class_weight: [none, balanced]` loaded, and every
    trial that drew `balanced` raised (the pipeline weights classes, not numbers)."""
    space = tmp_path / "regression.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "params": {
                    "class_weight": {"type": "categorical", "choices": ["none", "balanced"]},
                    "estimator": {"type": "categorical", "choices": ["ridge"]},
                },
            }
        )
    )
    raw = _config(tmp_path, search_space=str(space))
    raw["models"] = [{**raw["models"][0], "task": "regression"}]  # type: ignore[index]
    with pytest.raises(
        ConfigError,
        match=r"models\.0\.tuning\.search_space: .*params\.class_weight: `class_weight` "
        r"applies to classifiers only, but the space can pair 'balanced' with the "
        r"regressor\(s\) \['ridge'\]",
    ):
        build_config(raw, env={})


def test_a_regression_model_is_retuned_from_its_own_search_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipelines were classifiers only and the refit's holdout was stratified on the
    label, so every regression job failed; its default space was the binary one, found
    relative to the working directory (a service started elsewhere found none)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.2, size=400)
    champion = fit_pipeline({"estimator": "ridge"}, x[:200], y[:200], seed=0)
    raw = _config(tmp_path, max_trials=3, search_space=None)
    raw["models"] = [{**raw["models"][0], "task": "regression"}]  # type: ignore[index]
    d = Daemon(build_config(raw, env={}), env={})
    try:
        d.registry.register(
            MODEL,
            to_onnx(champion, 4),
            VersionMetadata(task="regression", feature_names=("a", "b", "c", "d")),
            actor="test",
            stage="champion",
        )
        at = datetime.now(UTC) - timedelta(hours=1)
        predicted = champion.predict(x).astype(np.float32).reshape(-1, 1)
        d.store.write_records(
            [
                RequestRecord(
                    model=MODEL,
                    request_id=f"q{i}",
                    received_at=at,
                    source="infer",
                    n_rows=1,
                    n_cols=4,
                    inputs=x[i : i + 1].tobytes(),
                )
                for i in range(400)
            ],
            [
                OutputRecord(
                    model=MODEL,
                    request_id=f"q{i}",
                    version=1,
                    role="champion",
                    latency_s=1e-4,
                    n_rows=1,
                    n_cols=1,
                    values=predicted[i : i + 1].tobytes(),
                )
                for i in range(400)
            ],
        )
        d.store.add_labels(
            MODEL, [LabelItem(request_id=f"q{i}", value=float(y[i])) for i in range(400)]
        )
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        version = d.store.get_version(MODEL, 2)
        assert version.details["search_space"].endswith("regression_tabular.yaml")
        assert version.details["parity_error"] <= 1e-4
        assert version.hyperparameters["estimator"].endswith(("ridge", "_regressor"))
    finally:
        d.close()


def test_a_job_trains_on_the_reference_of_the_champion_it_was_queued_against(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The window was pinned to the job's creation, but the champion's reference rows
    were read when a worker ran: a promotion in between (and a restart that queued the
    job again) gave a joining worker other data, and the study refused it."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = daemon.store.get_job(outcome.job_id)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    runner = _runner(daemon)
    before = dataset_version(*runner._training_window(model, cfg, job)[:2])
    reference = trained[1].reference
    assert reference is not None
    v2 = daemon.registry.register(
        MODEL,
        trained[1].onnx,
        trained[1].metadata,
        actor="t",
        reference=Reference(features=reference.features[:50], labels=reference.labels[:50]),
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="meanwhile")
    assert dataset_version(*runner._training_window(model, cfg, job)[:2]) == before


def test_a_job_whose_worker_died_after_registering_is_finished_as_succeeded(
    daemon: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A worker that registered the winner and died before finishing the job left it
    `running`; it was then failed as stale although its version was in the registry (and
    the study, registering once, would never register another)."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    daemon.store.claim_job(outcome.job_id, "w1")
    study = study_name(daemon.store.get_job(outcome.job_id))
    version = _register_as_the_job(daemon, trained, outcome.job_id)
    # any heartbeat is stale at once: the worker is gone
    launcher = JobLauncher(
        store=daemon.store, config_path=tmp_path / "unused.yaml", workers=0, stale_after_s=0.0
    )
    assert launcher.tick() == []
    job = daemon.store.get_job(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None, job.error
    assert job.result["version"] == version.version and job.result["study"] == study
    assert daemon.store.list_events(model=MODEL, type="retune_failed") == []
    [event] = daemon.store.list_events(model=MODEL, type="challenger_registered")
    assert event.payload["version"] == version.version


def test_a_multiclass_window_missing_a_class_fails_the_job_and_registers_nothing(
    tmp_path: Path,
) -> None:
    """The champion answers three classes; the window's labels hold classes 0 and 1 only.
    The refit answered two columns, passed parity (both renderings were narrow) and was
    registered, to be compared and promoted against a three-class champion."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y3 = np.digitize(x[:, 0] + 0.3 * rng.normal(size=400), [-0.5, 0.5]).astype(np.float64)
    champion = fit_pipeline({"estimator": "logistic", "C": 1.0}, x, y3, seed=0)
    y = np.minimum(y3, 1.0)  # class 2 never labelled in the window
    raw = _config(tmp_path, max_trials=2, search_space=None, include_reference=False)
    raw["models"] = [{**raw["models"][0], "task": "multiclass"}]  # type: ignore[index]
    d = Daemon(build_config(raw, env={}), env={})
    try:
        d.registry.register(
            MODEL,
            to_onnx(champion, 4),
            VersionMetadata(task="multiclass", feature_names=("a", "b", "c", "d")),
            actor="test",
            stage="champion",
        )
        at = datetime.now(UTC) - timedelta(hours=1)
        proba = champion.predict_proba(x).astype(np.float32)
        d.store.write_records(
            [
                RequestRecord(MODEL, f"q{i}", at, "infer", 1, 4, x[i : i + 1].tobytes())
                for i in range(400)
            ],
            [
                OutputRecord(MODEL, f"q{i}", 1, "champion", 1e-4, 1, 3, proba[i].tobytes())
                for i in range(400)
            ],
        )
        d.store.add_labels(MODEL, [LabelItem(f"q{i}", float(y[i])) for i in range(400)])
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed" and "no rows of class(es) [2]" in (job.error or "")
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
    finally:
        d.close()


def test_a_second_job_does_not_train_on_the_first_job_s_traffic_twice(daemon: Daemon) -> None:
    """A job registers its training rows (the reference and its traffic window) as the
    new version's reference; the next job added that reference to a traffic window that
    overlapped the first one, so those rows were in its data twice (shuffled CV scored
    them in both training and test folds) and the reference grew every generation. Nor
    does it take the rows its champion inherited: only the champion's own traffic, less
    what its window reads again (here all of it), so no older regime is carried forward."""
    first = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert first.job_id is not None
    assert _runner(daemon).run(first.job_id).status == "succeeded"
    v2 = daemon.store.get_version(MODEL, 2)
    original = v2.details["rows"] - v2.details["traffic_rows"]
    assert v2.details["traffic_rows"] == 400 and original > 0  # the fixture's traffic
    daemon.store.promote(MODEL, 2, actor="t", reason="tuned")
    second = daemon.dispatcher.handle(MODEL, "manual", {"reason": "again"})
    assert second.job_id is not None
    assert _runner(daemon).run(second.job_id).status == "succeeded"
    v3 = daemon.store.get_version(MODEL, 3)
    assert (v3.details["rows"], v3.details["traffic_rows"]) == (400, 400)


def _slow_gradient_boosting_served(
    daemon: Daemon, trained: list[ExampleModel], role: Role = "champion"
) -> None:
    """A gradient-boosting version, v2, served 50 latencies of 50 ms in ``role`` (as
    champion: on the request path, where the ceiling is timed): far past
    the guardrails' 1.2 x the logistic champion's p99. It is the space's smallest (10
    trees x depth 1): every gradient boosting the space holds is at least as big, so
    costs at least as much (one sample says nothing of smaller ones)."""
    gbm = {"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 10}
    v2 = daemon.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, hyperparameters={**gbm, "gb_max_depth": 1}),
        actor="t",
    )
    daemon.store.write_records(
        [],
        [OutputRecord(MODEL, f"r{i}", v2.version, role, 0.05, 1, 2, bytes(8)) for i in range(50)],
    )


def test_configurations_predicted_too_slow_to_promote_are_not_trained(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Serving telemetry per hyperparameter set never reached a job: the cost constraint
    was built without a predictor, so nothing was rejected. v1 (logistic) answers in
    0.1 ms; a gradient-boosting version served at 50 ms, past the guardrails' 1.2 x the
    champion's p99: the job trains no gradient-boosting configuration."""
    _slow_gradient_boosting_served(daemon, trained)
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = _runner(daemon).run(outcome.job_id)
    assert job.status == "succeeded", job.error
    version = daemon.store.get_version(MODEL, 3)
    plan = version.details["warm_start_plan"]
    assert "cost_constraint" in plan["strategies"]
    assert plan["cost"]["max_latency_p99_s"] == pytest.approx(1.2e-4)
    assert version.details["n_cost_rejected"] > 0
    assert version.hyperparameters["estimator"] == "logistic"
    assert (
        "family gradient_boosting: 1 served configuration, too few (< 3, of two sizes or more) "
        "to fit how its cost grows with its size: one at least as big as a served one is "
        "predicted to cost at least as much, one past the largest served size (trees x depth "
        "for latency, trees x 2**depth / leaf size for memory) in proportion to that size "
        "above the fixed part a served logistic or ridge measured; any other is not screened"
    ) in plan["notes"]


def test_a_family_with_no_serving_telemetry_is_not_screened_and_the_plan_says_so(
    daemon: Daemon,
) -> None:
    """Only the logistic champion was served: gradient boosting, a family with no
    telemetry, was predicted to cost nothing (``(0, 0)``) and the plan claimed every
    configuration screened. Now it is not predicted, not rejected, and the plan says so."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = _runner(daemon).run(outcome.job_id)
    assert job.status == "succeeded", job.error
    version = daemon.store.get_version(MODEL, 2)
    plan = version.details["warm_start_plan"]
    assert plan["strategies"] == ["cost_constraint"]
    assert "no serving-cost telemetry for family gradient_boosting: not screened" in plan["notes"]
    assert version.details["n_cost_rejected"] == 0


def test_job_progress_and_the_jobs_list_count_cost_rejections_apart(
    daemon: Daemon, trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optuna marks a configuration rejected for its serving cost PRUNED: the job's
    progress counted it pruned, where the result does not, and ``tunewatch jobs`` showed
    the trials with the rejections in them ("6/4 trials") while the worker's bar showed
    those trained and the rejections beside. Both count as the result does."""
    _slow_gradient_boosting_served(daemon, trained)
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    seen: list[dict[str, Any]] = []
    job = _runner(daemon).run(outcome.job_id, on_progress=seen.append)
    assert job.status == "succeeded", job.error
    details = daemon.store.get_version(MODEL, 3).details
    rejected, pruned = details["n_cost_rejected"], details["n_pruned"]
    assert rejected > 0
    last = seen[-1]
    assert (last["trials"], last["cost_rejected"]) == (details["n_trials"], rejected)
    assert last["pruned"] == pruned
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    capsys.readouterr()
    assert main(["--config", str(config), "jobs", "--model", MODEL]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith(str(job.id))]
    trained_trials = details["n_trials"] - rejected
    assert f" {trained_trials}/4 trials (+{rejected} rejected for serving cost) " in line


def test_a_tuned_version_s_monitors_calibrate_on_held_out_scores(daemon: Daemon) -> None:
    """A tuned version's reference is its training rows: scored by the version itself
    they are in-sample, so CBPE was calibrated overconfident, the reference accuracy
    inflated (an estimate drop could hardly fire) and the prediction profile too sharp.
    The job stores its winner's out-of-fold scores with the reference; monitors use them."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    assert _runner(daemon).run(outcome.job_id).status == "succeeded"
    version = daemon.store.get_version(MODEL, 2)
    reference = Reference.from_bytes(
        daemon.artefacts.get(version.details["reference_sha256"], ".npz")
    )
    assert reference.scores is not None and reference.scores.shape == (version.details["rows"], 2)
    assert np.isfinite(reference.scores).all()  # stratified folds hold out every row
    baseline = daemon.evaluator._build_baseline(version, daemon.store.get_model(MODEL))
    assert baseline is not None
    # monitors read the snapshot's traffic part, its last `traffic_rows` (the rows before
    # it are the parent's reference, of the regime before)
    traffic = version.details["traffic_rows"]
    assert 0 < traffic < version.details["rows"]
    scores, labels = reference.scores[-traffic:], reference.labels[-traffic:]
    np.testing.assert_array_equal(baseline.scores, scores)
    held_out = float(((scores[:, 1] >= 0.5) == (labels >= 0.5)).mean())
    assert baseline.reference_accuracy == pytest.approx(held_out)


def _failed_as_stale_during(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, then: Exception | None
) -> TuningJobRunner:
    """A runner whose job the launcher fails as stale while it tunes (the worker was slow
    to heartbeat, at the job's crash limit), after which the tuning succeeds or raises
    ``then``."""
    runner = _runner(daemon)
    real = runner._tune

    def slow(job: Any, *args: Any) -> Any:
        result = real(job, *args) if then is None else None
        [failed] = daemon.store.requeue_stale_jobs(older_than=-timedelta(seconds=1), max_crashes=1)
        assert failed.status == "failed"
        if then is not None:
            raise then
        return result

    monkeypatch.setattr(runner, "_tune", slow)
    return runner


def test_a_job_failed_as_stale_whose_worker_registered_its_version_succeeds(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its version is registered and announced: the job recorded `failed` with no result
    contradicted the registry and the events (the launcher, seeing the version first,
    already finishes such a job as succeeded)."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = _failed_as_stale_during(daemon, monkeypatch, None).run(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None
    assert job.result["version"] == 2


def test_a_job_failed_as_stale_is_not_failed_twice(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = _failed_as_stale_during(daemon, monkeypatch, ValueError("late"))
    job = runner.run(outcome.job_id)
    assert job.status == "failed" and "presumed dead" in (job.error or "")
    assert daemon.store.list_events(model=MODEL, type="retune_failed") == []


def test_the_training_window_reads_only_requests_older_than_the_label_maturity(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """With outcome-dependent label delay the newest requests carry only their early
    (positive) labels; the window read them, so the training set over-represented the
    early class. With ``comparison.label_maturity_s`` set it reads, like the comparisons,
    only requests at least that old when the job was queued."""
    raw = _config(tmp_path, include_reference=False)
    raw["models"][0]["comparison"] = {  # type: ignore[index]
        "label_maturity_s": 300,
        "rollback": {"enabled": False},
    }
    d = _daemon(raw, trained)  # 400 labelled requests six hours ago: matured
    try:
        now = datetime.now(UTC)
        # 300 matured requests (1000 s to 700 s old) with every label, then 100 young
        # ones (200 s to 100 s old) with only their positives labelled so far
        feed(d, Clock(now - timedelta(seconds=1000)), 10_000, 300, shift=0.5, seed=3)
        feed(d, Clock(now - timedelta(seconds=200)), 20_000, 100, shift=0.5, seed=4, labels=False)
        _, y_young = example_data(100, seed=4, shift=0.5)
        d.store.add_labels(
            MODEL,
            [
                LabelItem(request_id=f"r{20_000 + i}", value=1.0)
                for i in range(100)
                if y_young[i] == 1
            ],
        )
        _, y_matured = example_data(300, seed=3, shift=0.5)
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = d.store.get_job(outcome.job_id)
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        _, y_window, n_traffic = _runner(d)._training_window(model, cfg, job)
        assert n_traffic == 400 + 300
        assert y_window[-300:].tolist() == y_matured.astype(np.int64).tolist()
    finally:
        d.close()


def test_a_job_trains_only_on_reference_rows_with_a_valid_label(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference may hold unlabelled rows (NaN: the registry takes them, the evaluator
    reads them as "no estimate"); the window cast them to int64 (-2**63) as a class and
    every trial crashed with an IndexError traceback. Rows whose label is not a class of
    the task (registration refuses them now; a reference stored before may hold them)
    are left out."""
    reference = trained[0].reference
    assert reference is not None and reference.labels is not None
    labels = np.asarray(reference.labels, dtype=np.float64).copy()
    labels[::3] = np.nan  # never labelled
    labels[1] = 2.0  # not a class of a binary model
    monkeypatch.setattr(Reference, "check_labels", lambda *_, **__: None)  # stored before
    d = Daemon(build_config(_config(tmp_path, max_trials=2), env={}), env={})
    try:
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=dataclasses.replace(reference, labels=labels),
        )
        feed(d, Clock(), 0, 300, shift=0.5, seed=3)
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = d.store.get_job(outcome.job_id)
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        x, y, n_traffic = _runner(d)._training_window(model, cfg, job)
        valid = np.isin(labels, (0.0, 1.0))
        assert x.shape[0] == int(valid.sum()) + n_traffic
        assert y[: int(valid.sum())].tolist() == labels[valid].astype(np.int64).tolist()
        np.testing.assert_array_equal(x[: int(valid.sum())], reference.features[valid])
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
    finally:
        d.close()


def test_a_job_whose_optuna_storage_is_unreachable_fails_with_one_line(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    raw = _config(tmp_path)
    raw["tuning"] = {  # type: ignore[index]
        **raw["tuning"],  # type: ignore[dict-item]
        "storage_url": f"sqlite:///{tmp_path}/no/such/dir/optuna.db",
    }
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed"
        assert (job.error or "").startswith("StudyError:") and "unable to open" in (job.error or "")
    finally:
        d.close()


def test_a_progress_report_that_fails_is_logged_and_the_job_goes_on(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """The last progress copy ran in a ``finally`` on the main thread and let anything but
    RetuneError/TunewatchError through: a failing report (a storage blip, a progress bar
    writing to a closed terminal) replaced a finished study's result with a crash."""

    def closed_terminal(progress: dict[str, Any]) -> None:
        raise BrokenPipeError("stderr closed")

    outcome = daemon.dispatcher.handle(MODEL, "manual", {})
    assert outcome.job_id is not None
    job = _runner(daemon).run(outcome.job_id, on_progress=closed_terminal)
    assert job.status == "succeeded", job.error
    logged = [r for r in caplog.records if "progress not updated" in r.getMessage()]
    assert logged and logged[-1].exc_info is not None


@pytest.mark.parametrize(
    ("task", "tuning", "expected"),
    [
        ("binary", {}, StratifiedKFoldCV(n_splits=3)),
        ("regression", {}, KFoldCV(n_splits=3)),
        ("regression", {"cv": "time_series", "cv_gap": 20}, TimeSeriesCV(n_splits=3, gap=20)),
        ("binary", {"cv": "time_series", "cv_gap": 5}, TimeSeriesCV(n_splits=3, gap=5)),
        (
            "binary",
            {"cv": "grouped", "cv_group_column": "x7"},
            GroupKFoldCV(n_splits=3),
        ),
        (
            "binary",
            {"cv": "nested", "cv_outer_folds": 4},
            NestedCV(outer=StratifiedKFoldCV(n_splits=4), inner=StratifiedKFoldCV(n_splits=3)),
        ),
        (
            "regression",
            {"cv": "nested"},
            NestedCV(outer=KFoldCV(n_splits=3), inner=KFoldCV(n_splits=3)),
        ),
        (
            "binary",
            {"cv": "nested", "cv_group_column": "x7"},
            NestedCV(outer=GroupKFoldCV(n_splits=3), inner=GroupKFoldCV(n_splits=3)),
        ),
    ],
    ids=[
        "classifier_stratified",
        "regressor_stratified",
        "regressor_gap",
        "classifier_gap",
        "grouped",
        "classifier_nested",
        "regressor_nested",
        "grouped_nested",
    ],
)
def test_a_job_s_cv_follows_tuning_cv_and_its_gap(
    task: str, tuning: dict[str, object], expected: object
) -> None:
    """A regression model's default `cv: stratified` ran forward-chaining time-series CV
    (its first rows never held out, their reference scores NaN), and no key set the time
    series' gap."""
    from tunewatch._config import TuningJobConfig
    from tunewatch._tuning import cv_scheme

    assert cv_scheme(TuningJobConfig(**tuning), task) == expected  # type: ignore[arg-type]


def test_a_time_series_job_records_its_gap_and_test_size() -> None:
    """A tuned version's details named the CV scheme alone: the gap a time-series job left
    between training and test rows was in the Optuna study only."""
    from tunewatch._config import TuningJobConfig
    from tunewatch._tuning import cv_scheme
    from tunewatch._tuning_export import cv_details

    tj = TuningJobConfig(cv="time_series", cv_gap=20, cv_folds=4, seed=7, max_fold_spread=0.2)
    assert cv_details(cv_scheme(tj, "regression"), tj) == {
        "scheme": "time_series",
        "group_column": None,
        "n_splits": 4,
        "gap": 20,
        "test_size": None,
        "seed": 7,
        "max_fold_spread": 0.2,
    }


def _window_of_a_manual_job(d: Daemon) -> tuple[np.ndarray, np.ndarray, int]:
    outcome = d.dispatcher.handle(MODEL, "manual", {})
    assert outcome.job_id is not None
    job = d.store.get_job(outcome.job_id)
    model = d.store.get_model(MODEL)
    return _runner(d)._training_window(model, d.config.model_or_default(MODEL, model.task), job)


def _maturity_longer_than_the_traffic(tmp_path: Path, **tuning: object) -> dict[str, object]:
    raw = _config(tmp_path, **tuning)
    raw["models"][0]["comparison"] = {  # type: ignore[index]
        "label_maturity_s": 30 * 86_400,
        "rollback": {"enabled": False},
    }
    return raw


def test_a_window_emptied_by_the_label_maturity_names_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A ``label_maturity_s`` longer than the model's traffic history left no row in the
    window, and the job said the model "has 0 labelled rows" beside ``tuning.min_rows``
    while the store held 400 labelled requests: the setting that left them out was not
    named."""
    d = _daemon(_maturity_longer_than_the_traffic(tmp_path, include_reference=False), trained)
    try:  # 400 labelled requests six hours old
        with pytest.raises(TuningError) as caught:
            _window_of_a_manual_job(d)
        message = str(caught.value)
        assert "has 0 labelled rows" in message and "tuning.min_rows" in message
        assert "comparison.label_maturity_s (2592000 s) left out 400 labelled rows" in message
    finally:
        d.close()


def test_a_window_the_label_maturity_leaves_to_the_reference_warns(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the champion's reference (the default) the job succeeded silently on the
    reference alone (``traffic_rows`` 0)."""
    d = _daemon(_maturity_longer_than_the_traffic(tmp_path), trained)
    try:
        with caplog.at_level("WARNING", logger="tunewatch._tuning_window"):
            x, _, n_traffic = _window_of_a_manual_job(d)
        assert n_traffic == 0 and x.shape[0] >= 100
        [warning] = [r.getMessage() for r in caplog.records if "label_maturity_s" in r.getMessage()]
        assert "0 traffic rows" in warning and "left out 400 labelled rows" in warning
    finally:
        d.close()


def _customers(x: np.ndarray) -> None:
    """Eight customers, told by feature x7 (the target does not depend on it)."""
    x[:, 7] = np.arange(len(x)) % 8


def _fed(trained: list[ExampleModel], raw: dict[str, object], edit: Any = _customers) -> Daemon:
    d = Daemon(build_config(raw, env={}), env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    feed(d, Clock(), 0, 400, shift=0.5, seed=3, edit=edit)
    return d


def test_grouped_cv_from_config_keeps_each_group_in_one_fold(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Only `stratified` and `time_series` could be configured: group k-fold was reachable
    from the Python API only, and no job passed group ids to the study."""
    raw = _config(tmp_path, cv="grouped", cv_group_column="x7", include_reference=False)
    d = _fed(trained, raw)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        version = d.store.get_version(MODEL, 2)
        # the folds and the seed they were drawn with were in the Optuna study alone
        assert version.details["cv"] == {
            "scheme": "group_kfold",
            "group_column": "x7",
            "n_splits": 2,
            "seed": 0,
            "max_fold_spread": None,
        }
        # no library version was recorded: a refit could not be matched to the artefact
        environment = version.details["environment"]
        assert environment["scikit-learn"] == sklearn.__version__
        assert environment["python"] == platform.python_version()
        assert environment["tunewatch"] == tunewatch.__version__
        for package in ("numpy", "scipy", "optuna", "onnxruntime", "skl2onnx", "onnx"):
            assert environment[package] == importlib.metadata.version(package), package
        md = build_report(d.store, d.config, MODEL, 2).markdown()
        assert "- **CV folds**: 2" in md and "- **CV seed**: 0" in md
        assert f"scikit-learn {sklearn.__version__}" in md
        assert f"Python {platform.python_version()}" in md
        model = d.store.get_model(MODEL)
        x, y, _ = _runner(d)._training_window(
            model, d.config.model_or_default(MODEL, model.task), job
        )
        groups = x[:, 7]
        scheme = GroupKFoldCV(n_splits=2)
        splits = list(scheme.split(x, y, groups=groups, seed=0))
        for train, test in splits:
            assert not set(groups[train]) & set(groups[test])
        # the study scored its winner on exactly these folds (stratified ones score otherwise)
        grouped = cross_validate(
            version.hyperparameters,
            x,
            y,
            scheme=scheme,
            objective=make_objective("log_loss"),
            seed=0,
            groups=groups,
        )
        assert version.details["fold_scores"] == pytest.approx(grouped.scores, rel=1e-9)
    finally:
        d.close()


def test_nested_cv_from_config_scores_the_tuning_on_outer_rows_it_never_saw(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`cv: nested` could not be configured: a job's best value is the minimum over its
    trials of CV estimates, biased low; nested CV re-runs the tuning on each outer
    training part and scores its choice on the outer test part."""
    raw = _config(tmp_path, cv="nested", cv_outer_folds=2, max_trials=2, include_reference=False)
    d = _fed(trained, raw)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        version = d.store.get_version(MODEL, 2)
        assert len(version.details["fold_scores"]) == 2  # the study tuned on inner folds
        estimate = version.details["nested_estimate"]
        assert len(estimate["outer_scores"]) == 2 and len(estimate["chosen"]) == 2
        assert estimate["mean"] == pytest.approx(np.mean(estimate["outer_scores"]))
        model = d.store.get_model(MODEL)
        x, y, _ = _runner(d)._training_window(
            model, d.config.model_or_default(MODEL, model.task), job
        )
        outer = list(StratifiedKFoldCV(n_splits=2).split(x, y, seed=0))
        storage = d.config.tuning_storage_url
        for k, (train, test) in enumerate(outer):
            # each outer part was tuned in a study of its own, on its training rows only
            progress = study_progress(storage, f"{version.study}-outer{k}")
            assert progress is not None and progress.n_complete >= 1
            pipeline = fit_pipeline(estimate["chosen"][k], x[train], y[train], seed=0)
            loss = make_objective("log_loss").loss(y[test], pipeline.predict_proba(x[test]))
            assert estimate["outer_scores"][k] == pytest.approx(loss)
        md = build_report(d.store, d.config, MODEL, 2).markdown()
        assert "- **CV scheme**: nested" in md
        assert version.details["cv"]["outer"] == {"scheme": "stratified_kfold", "n_splits": 2}
        assert version.details["cv"]["inner"] == {"scheme": "stratified_kfold", "n_splits": 2}
        assert "- **CV outer folds**: 2 (stratified_kfold)" in md
        mean, std = estimate["mean"], estimate["std"]
        row = f"- **nested CV estimate (outer folds)**: {mean:.4g} ± {std:.4g} over 2, tuned cold"
        assert row in md
    finally:
        d.close()


def test_nested_cv_tunes_each_outer_part_cold_without_the_job_s_history(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The outer studies got the job's warm-start plan: earlier jobs' best configurations,
    chosen on rows that reappear in this window (outer test parts included), were enqueued
    and the space narrowed around them, so the outer test scores no longer estimated the
    tuning on rows it never saw. The main study still warm-starts."""
    raw = _config(tmp_path, cv="nested", cv_outer_folds=2, max_trials=2, include_reference=False)
    d = _fed(trained, raw)
    try:
        for _ in range(2):  # the second job has the first one's study as history
            outcome = d.dispatcher.handle(MODEL, "manual", {})
            assert outcome.job_id is not None
            job = _runner(d).run(outcome.job_id)
            assert job.status == "succeeded", job.error
        version = d.store.get_version(MODEL, 3)
        assert len(version.details["warm_start_plan"]["enqueue"]) >= 1

        def study(name: str) -> optuna.Study:
            return optuna.load_study(study_name=name, storage=d.config.tuning_storage_url)

        main = study(version.study)
        assert any("fixed_params" in t.system_attrs for t in main.trials)  # re-scored history
        for k in range(2):
            outer = study(f"{version.study}-outer{k}")
            assert outer.trials and not any("fixed_params" in t.system_attrs for t in outer.trials)
            plan = WarmStartPlan.from_json(outer.user_attrs["warmstart_plan"])
            assert plan.is_empty and plan.history_studies == () and plan.explore_every is None
            assert plan.strategies == ("cost_constraint",)  # the serving cost needs no label
        estimate = version.details["nested_estimate"]
        assert estimate["warm_start"] is False
        assert estimate["plan_strategies"] == ["cost_constraint"]
    finally:
        d.close()


def test_nested_cv_that_cannot_split_an_outer_part_fails_before_tuning(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Five customers, 3 outer folds, 4 inner ones: the whole window's 5 customers make 4
    inner folds, but an outer training part holds 3 or 4 of them. Only the whole window was
    checked up front, so the main study spent its whole budget before the first outer
    study found it could not split its rows and failed the job."""

    def five_customers(x: np.ndarray) -> None:
        x[:, 7] = np.arange(len(x)) % 5

    raw = _config(tmp_path, cv="nested", cv_group_column="x7", cv_folds=4, include_reference=False)
    d = _fed(trained, raw, edit=five_customers)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed"
        assert job.error == (
            "TuningError: tuning.cv_folds: `cv: nested` tunes again on each of its 3 outer "
            "training parts, and outer training part 0 (240 rows) cannot be split by the "
            "inner group_kfold: group 4-fold needs >= 4 groups, got 3; lower tuning.cv_folds "
            "(4) or raise tuning.cv_outer_folds (3), which makes each outer training part "
            "larger"
        )
        study = study_name(d.store.get_job(outcome.job_id))
        assert study_progress(d.config.tuning_storage_url, study) is None  # no trial ran
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
    finally:
        d.close()


def test_a_job_whose_nested_outer_part_cannot_be_tuned_fails_before_any_study(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Six customers, each of one class: every outer part splits, but an inner training
    fold holds one class; the job checks with its objective before its main study."""

    def customers_of_one_class(x: np.ndarray) -> None:
        _, y = example_data(len(x), seed=3, shift=0.5)  # what `feed` labels these rows
        x[:, 7] = y * 3 + np.arange(len(x)) % 3

    raw = _config(tmp_path, cv="nested", cv_group_column="x7", cv_folds=2, include_reference=False)
    d = _fed(trained, raw, edit=customers_of_one_class)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed"
        assert job.error is not None and job.error.startswith(
            "TuningError: tuning.cv_folds: `cv: nested` tunes again on each of its 3 outer "
            "training parts, and outer training part"
        )
        assert "has one class only" in job.error
        study = study_name(d.store.get_job(outcome.job_id))
        assert study_progress(d.config.tuning_storage_url, study) is None  # no trial ran
    finally:
        d.close()


def _one_class_per_customer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 customers of 10 rows, each customer's rows of one class (6 of each)."""
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 10).astype(float)
    per_customer = np.array([0, 1] * 6)
    rng.shuffle(per_customer)
    y = per_customer[groups.astype(int)]
    x = rng.normal(size=(len(y), 3))
    x[:, 0] += y
    return x, y, groups


def test_nested_cv_whose_outer_part_cannot_be_tuned_is_refused_before_any_study() -> None:
    """Labels per customer: every outer part splits, but the inner 2-fold of outer part 1
    trains on customers of one class. The up-front check only split the parts; the main
    study and outer study 0 ran their budgets before outer study 1 failed every trial."""
    from tunewatch._config import TuningJobConfig
    from tunewatch._tuning_cv import check_nested, cv_scheme

    x, y, groups = _one_class_per_customer()
    tj = TuningJobConfig(cv="nested", cv_group_column="g", cv_folds=2, cv_outer_folds=3, seed=0)
    cv = cv_scheme(tj, "binary")
    assert isinstance(cv, NestedCV)
    for name in ("log_loss", "roc_auc"):
        with pytest.raises(TuningError) as caught:
            check_nested(cv, tj, x, y, groups, objective=make_objective(name))
        assert str(caught.value) == (
            "tuning.cv_folds: `cv: nested` tunes again on each of its 3 outer training parts, "
            "and outer training part 1 (80 rows) cannot be tuned with the inner group_kfold: "
            "training fold 0 (40 rows) has one class only ([1]); use fewer splits or a longer "
            "window; lower tuning.cv_folds (2) or raise tuning.cv_outer_folds (3), which makes "
            "each outer training part larger"
        )


def test_nested_cv_whose_outer_test_part_the_objective_cannot_score_is_refused() -> None:
    from tunewatch._config import TuningJobConfig
    from tunewatch._tuning_cv import check_nested, cv_scheme

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(9), 20).astype(float)
    x = rng.normal(size=(len(groups), 3))
    y = (x[:, 0] + rng.normal(scale=0.5, size=len(groups)) > 0).astype(np.int64)
    tj = TuningJobConfig(cv="nested", cv_group_column="g", cv_folds=3, cv_outer_folds=3, seed=0)
    cv = cv_scheme(tj, "binary")
    assert isinstance(cv, NestedCV)
    _, test = next(cv.outer.split(x, y, groups=groups, seed=0))
    y[test] = 0  # the customers of outer test part 0 are all of class 0
    check_nested(cv, tj, x, y, groups, objective=make_objective("log_loss"))
    with pytest.raises(TuningError) as caught:
        check_nested(cv, tj, x, y, groups, objective=make_objective("roc_auc"))
    message = str(caught.value)
    assert message.startswith(
        "tuning.cv_outer_folds: `cv: nested` scores the tuning on each of its 3 outer test "
        f"parts, and objective roc_auc cannot be computed on outer test part 0 ({len(test)} "
        "rows): "
    )
    assert message.endswith(
        "lower tuning.cv_outer_folds (3), which makes each outer test part "
        "larger, or choose an objective that scores a part of one class"
    )


def test_a_group_column_with_missing_values_fails_the_job_naming_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    def unknown_customers(x: np.ndarray) -> None:
        _customers(x)
        x[::10, 7] = np.nan

    raw = _config(tmp_path, cv="grouped", cv_group_column="x7", include_reference=False)
    d = _fed(trained, raw, edit=unknown_customers)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "failed"
        assert job.error == (
            "TuningError: tuning.cv_group_column: the group column x7 is missing (NaN) in 40 "
            "of the window's 400 rows; every row needs a group id"
        )
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
    finally:
        d.close()


def test_a_group_column_that_is_not_a_feature_is_refused_when_the_model_registers(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    raw = _config(tmp_path, cv="grouped", cv_group_column="customer")
    d = Daemon(build_config(raw, env={}), env={})
    try:
        with pytest.raises(ConfigError) as caught:
            d.registry.register(
                MODEL, trained[0].onnx, trained[0].metadata, actor="test", stage="champion"
            )
        assert str(caught.value) == (
            "models.0.tuning.cv_group_column: the group column must be a feature of model "
            "'credit', got 'customer'; its features are x0, x1, x2, x3, x4, x5, x6, x7"
        )
        assert d.store.list_versions(MODEL) == []
    finally:
        d.close()


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        (
            {"cv": "grouped"},
            "models.0.tuning: Value error, `cv: grouped` needs `cv_group_column` (the feature "
            "whose value names a row's group), got none",
        ),
        (
            {"cv_group_column": "x7"},
            "models.0.tuning: Value error, `cv_group_column` (x7) applies to `cv: grouped` or "
            "`cv: nested`, got `cv: stratified`",
        ),
        (
            {"cv": "grouped", "cv_group_column": "x7", "cv_outer_folds": 3},
            "models.0.tuning: Value error, `cv_outer_folds` (3) applies to `cv: nested`, got "
            "`cv: grouped`",
        ),
        (
            {"cv": "nested", "cv_outer_folds": 1},
            "models.0.tuning.cv_outer_folds: Input should be greater than or equal to 2, got 1",
        ),
        (
            {"cv": "grouped_kfold"},
            "models.0.tuning.cv: Input should be 'stratified', 'time_series', 'grouped' or "
            "'nested', got 'grouped_kfold'",
        ),
    ],
    ids=[
        "grouped_without_column",
        "column_without_groups",
        "outer_without_nested",
        "one_outer_fold",
        "unknown_scheme",
    ],
)
def test_cv_settings_that_do_not_fit_together_are_config_errors(
    tuning: dict[str, object], message: str
) -> None:
    raw = {"models": [{"name": "m", "task": "binary", "tuning": tuning}]}
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(raw, env={})


def _write_traffic(d: Daemon, n: int = 300) -> None:
    """Labelled single-row requests as the daemon records them (float32 rows), answered
    by version 1."""
    x, y = example_data(n, seed=3, shift=0.3)
    at = datetime.now(UTC) - timedelta(hours=2)
    requests = [
        RequestRecord(
            MODEL, f"r{i}", at + timedelta(seconds=i), "infer", 1, 8, x[i : i + 1].tobytes()
        )
        for i in range(n)
    ]
    outputs = [
        OutputRecord(
            MODEL,
            f"r{i}",
            1,
            "champion",
            1e-4,
            1,
            2,
            np.full((1, 2), 0.5, np.float32).tobytes(),
            created_at=at + timedelta(seconds=i),
        )
        for i in range(n)
    ]
    d.store.write_records(requests, outputs)
    d.store.add_labels(MODEL, [LabelItem(f"r{i}", float(y[i])) for i in range(n)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_tuned_version_takes_the_input_name_and_type_of_the_champion_it_replaces(
    tmp_path: Path, dtype: str
) -> None:
    """The challenger was always exported with input `input: float32`: promoted over a
    champion whose input is `float_input` (skl2onnx's own default) or float64, it refused
    every request written against the champion (unknown_input, dtype_mismatch)."""
    x, y = example_data(500, seed=0)
    estimator = LogisticRegression().fit(x, y)
    tensor = DoubleTensorType if dtype == "float64" else FloatTensorType
    champion_onnx = convert_sklearn(
        estimator,
        initial_types=[("float_input", tensor([None, 8]))],
        options={id(estimator): {"zipmap": False}},
    ).SerializeToString()
    d = Daemon(build_config(_config(tmp_path, max_trials=2), env={}), env={})
    try:
        d.registry.register(
            MODEL,
            champion_onnx,
            VersionMetadata(task="binary", feature_names=feature_names(8)),
            actor="test",
            stage="champion",
        )
        _write_traffic(d)
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded" and job.result is not None, job.error
        champion, tuned = (
            OnnxModel.from_bytes(d.artefacts.get(d.store.get_version(MODEL, v).artefact_sha256))
            for v in (1, job.result["version"])
        )
        assert tuned.signature.input == champion.signature.input
        assert tuned.signature.output_names == champion.signature.output_names
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "float_input",
                        "shape": [1, 8],
                        "datatype": "FP64" if dtype == "float64" else "FP32",
                        "data": [0.1] * 8,
                    }
                ]
            }
        ).encode()
        _, rows, _, _ = decode_infer_request(body, None, tuned.signature, max_rows=1)
        # decoded as the runtime does (rows cast to the model's type after validation)
        scored = tuned.primary(tuned.run(rows.astype(tuned.signature.input.dtype)))
        assert scored.shape == (1, 2)
    finally:
        d.close()


def test_a_job_queued_without_a_champion_trains_on_no_champion_s_reference(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A job queued while the model had no champion (`champion_version: null`) was taken
    for one queued before jobs recorded it: it trained on the reference of whichever
    champion a worker found, and registered as its child."""
    d = Daemon(build_config(_config(tmp_path, max_trials=2), env={}), env={})
    try:
        first = trained[0]
        v1 = d.registry.register(
            MODEL, first.onnx, first.metadata, actor="t", stage="shadow", reference=first.reference
        )
        _write_traffic(d)
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = d.store.get_job(outcome.job_id)
        assert job.spec["champion_version"] is None
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        runner = _runner(d)
        x, y, n_traffic = runner._training_window(model, cfg, job)
        before = dataset_version(x, y)
        d.store.promote(MODEL, v1.version, actor="t", reason="a champion, after the job")
        assert dataset_version(*runner._training_window(model, cfg, job)[:2]) == before
        done = runner.run(outcome.job_id)
        assert done.status == "succeeded" and done.result is not None, done.error
        version = d.store.get_version(MODEL, done.result["version"])
        assert version.parent_version is None
        assert version.details["rows"] == version.details["traffic_rows"] == n_traffic
    finally:
        d.close()


def test_a_worker_finding_its_job_s_version_registered_finishes_the_job_without_tuning(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A worker registered the winner and was killed before finishing (the launcher's
    stop: SIGTERM, then kill, then the job queued again). The next worker tuned the whole
    study again, met `study_registered` and returned, leaving the job `running` with no
    live worker until the launcher presumed it dead."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    daemon.store.claim_job(outcome.job_id, "host:1")
    version = _register_as_the_job(daemon, trained, outcome.job_id)
    assert daemon.store.requeue_job(outcome.job_id, "host:1")
    study = study_name(daemon.store.get_job(outcome.job_id))
    job = _runner(daemon).run(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None, job.error
    assert job.result["version"] == version.version and job.result["study"] == study
    assert study_progress(daemon.config.tuning_storage_url, study) is None  # not tuned again
    assert [v.study for v in daemon.store.list_versions(MODEL)].count(study) == 1
    [event] = daemon.store.list_events(model=MODEL, type="challenger_registered")
    assert event.payload["version"] == version.version


def test_a_job_the_launcher_finished_first_is_announced_once(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The launcher judged the worker's heartbeat stale right after it registered the
    version, and finished the job as succeeded (announcing it); the worker, finding the
    job finished, announced the version a second time."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = _runner(daemon)
    launcher = JobLauncher(
        store=daemon.store, config_path=tmp_path / "unused.yaml", workers=0, stale_after_s=0.0
    )
    registry = runner.registry

    class StaleAfterRegistering:
        def __getattr__(self, name: str) -> Any:
            return getattr(registry, name)

        def register(self, *args: Any, **kwargs: Any) -> VersionRow:
            row = registry.register(*args, **kwargs)
            launcher.tick()  # the heartbeat is stale at once
            return row

    runner.registry = StaleAfterRegistering()  # type: ignore[assignment]
    job = runner.run(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None
    [event] = daemon.store.list_events(model=MODEL, type="challenger_registered")
    assert event.payload["version"] == job.result["version"]


def test_a_job_whose_tuning_crashes_records_retune_failed(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error (numpy's MemoryError on a window too large for the host) failed
    the job and was re-raised, but left no `retune_failed` event: alerts and the event
    feed never heard of the failure the listed errors announce."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = _runner(daemon)

    def out_of_memory(*args: Any) -> Any:
        raise MemoryError("Unable to allocate 7.45 GiB for an array with shape (1000000000,)")

    monkeypatch.setattr(runner, "_tune", out_of_memory)
    with pytest.raises(MemoryError):
        runner.run(outcome.job_id)
    job = daemon.store.get_job(outcome.job_id)
    assert job.status == "failed" and (job.error or "").startswith("MemoryError: Unable")
    [event] = daemon.store.list_events(model=MODEL, type="retune_failed")
    assert event.payload == {"job": outcome.job_id, "error": job.error}


def test_a_job_failed_as_stale_before_its_tuning_crashed_is_announced_once(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher's end stands: the crash announces no failure of its own."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = _failed_as_stale_during(daemon, monkeypatch, MemoryError("Unable to allocate"))
    with pytest.raises(MemoryError):
        runner.run(outcome.job_id)
    job = daemon.store.get_job(outcome.job_id)
    assert job.status == "failed" and "presumed dead" in (job.error or "")
    assert daemon.store.list_events(model=MODEL, type="retune_failed") == []


def test_a_shadow_s_timings_screen_no_configuration(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A shadow is timed in a deprioritised worker thread, the ceiling on the request path:
    one served gradient boosting read p99 4,767 us in shadow against 27 us bare, and every
    gradient boosting at least its size was rejected. Only a version's latencies as
    champion are read: served 50 ms in shadow, v2 rejects nothing. (No memory ceiling:
    v2's load memory is real and its size the space's smallest, so a memory ceiling would
    reject the gradient boostings bigger than it, grown from a served logistic's.)"""
    raw = _config(tmp_path)
    [model] = raw["models"]  # type: ignore[misc]
    model["comparison"] = {"guardrails": {"max_memory_ratio": None}}
    with contextlib.closing(_daemon(raw, trained)) as daemon:
        _slow_gradient_boosting_served(daemon, trained, role="challenger")
        outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(daemon).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        version = daemon.store.get_version(MODEL, 3)
    assert "cost_constraint" in version.details["warm_start_plan"]["strategies"]
    assert version.details["n_cost_rejected"] == 0
