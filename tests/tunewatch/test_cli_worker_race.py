"""`tunewatch worker --job` sharing its job with another worker that registers first."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry
from tunewatch._tuning_results import study_name
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import VersionRow

MODEL = "credit"
SPACE = {
    "format_version": 1,
    "name": "test_small",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic"],
            "when": {"logistic": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}}},
        },
    },
}


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    space = tmp_path / "logistic.yaml"  # one family: quick trials
    space.write_text(yaml.safe_dump(SPACE))
    d = _daemon(_config(tmp_path, search_space=str(space), max_trials=2), trained)
    yield d
    d.close()


def test_cli_worker_whose_job_another_worker_registered_first_reports_it_and_succeeds(
    daemon: Daemon,
    trained: list[ExampleModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The launcher's worker registered the study's version while this one tuned, and is
    finishing the job: `tunewatch worker --job` printed "job N running: None" and exited
    1, although the job was succeeding."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "race"})
    assert outcome.job_id is not None
    job_id = outcome.job_id
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    register = Registry.register
    theirs: list[VersionRow] = []

    def other_worker_first(
        self: Registry, model: str, onnx: bytes, metadata: VersionMetadata, **kw: Any
    ) -> VersionRow:
        if kw.get("once_per_study"):  # this worker's registration: the other one's first
            other = dataclasses.replace(trained[1].metadata, study=metadata.study)
            theirs.append(
                register(
                    self, model, trained[1].onnx, other, actor=f"job:{job_id}", once_per_study=True
                )
            )
        return register(self, model, onnx, metadata, **kw)

    monkeypatch.setattr(Registry, "register", other_worker_first)
    optuna_logger = logging.getLogger("optuna")
    try:
        rc = main(["--config", str(config), "worker", "--job", str(job_id)])
    finally:
        optuna_logger.setLevel(logging.NOTSET)
    out = capsys.readouterr().out
    [other] = theirs
    assert rc == 0
    assert (
        f"job {job_id}: {MODEL} version {other.version} of study "
        f"{study_name(daemon.store.get_job(job_id))} was "
        "registered by another worker, which finishes the job" in out
    ), out
    job = daemon.store.get_job(job_id)
    assert job.status == "running"  # the other worker finishes it
    assert [v.version for v in daemon.store.list_versions(MODEL) if v.study == other.study] == [
        other.version
    ]


def test_a_late_cli_worker_on_a_job_that_succeeded_names_its_version_and_succeeds(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker started on a second machine after the job ended printed "error: job 1 is
    succeeded" and exited 2: a failure for a job that had succeeded."""
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "late"})
    assert outcome.job_id is not None
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    optuna_logger = logging.getLogger("optuna")
    try:
        assert main(["--config", str(config), "worker", "--job", str(outcome.job_id)]) == 0
        first = capsys.readouterr().out
        rc = main(["--config", str(config), "worker", "--job", str(outcome.job_id)])
    finally:
        optuna_logger.setLevel(logging.NOTSET)
    captured = capsys.readouterr()
    job = daemon.store.get_job(outcome.job_id)
    assert job.status == "succeeded" and job.result is not None
    assert f"job {job.id} succeeded: {MODEL} version {job.result['version']}" in first
    assert rc == 0, captured.err
    assert (
        f"job {job.id} had succeeded already: {MODEL} version {job.result['version']} "
        f"registered in shadow (study {job.result['study']})" in captured.out
    ), captured.out


def test_a_late_cli_worker_on_a_failed_job_is_refused(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "late"})
    assert outcome.job_id is not None
    daemon.store.finish_job(outcome.job_id, status="failed", error="boom")
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    assert main(["--config", str(config), "worker", "--job", str(outcome.job_id)]) == 2
    assert f"job {outcome.job_id} is failed" in capsys.readouterr().err
