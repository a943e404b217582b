"""Tuning figures of an objective where greater is better (ROC AUC, PR AUC, accuracy...)
are shown in the objective's own orientation, named after it. A study minimises
``Objective.loss`` (the value negated), and the stored ``best_value``, fold scores and
nested estimate are losses: the report said "best CV value: -0.745", the CLI "best
-0.7450" and the dashboard -0.745 for a ROC AUC of 0.745. Stored data and the JSON's
``best_value`` stay losses."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboard.scenario import session_cookie
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.one_trial_tuning import SPACE
from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch.dashboard._data import Sources, tuning
from tunewatch.store._schema import jobs


@dataclass
class Retuned:
    daemon: Daemon
    stdout: str
    job_id: int
    viewer: str  # a viewer's token
    url: str  # the daemon's, served while the module's tests run


@pytest.fixture(scope="module")
def retuned(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Retuned]:
    """Model ``credit`` tuned for ``roc_auc`` by ``tunewatch retune --run``: v1 the
    champion registered by hand, v2 the job's winner."""
    tmp = tmp_path_factory.mktemp("roc-auc")
    space = tmp / "logistic.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    raw: Any = _config(tmp, search_space=str(space), max_trials=2)
    raw["models"][0]["objective"] = {"name": "roc_auc"}
    daemon = _daemon(raw, trained)
    config = tmp / "cli.yaml"
    config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main(["--config", str(config), "retune", MODEL, "--run", "--reason", "auc"])
        assert rc == 0, out.getvalue()
        [job] = daemon.store.list_jobs(model=MODEL, limit=5)
        assert job.status == "succeeded", job.error
        viewer = new_token()
        daemon.store.add_token(
            name="viewer", role="viewer", token_hash=hash_token(viewer), actor="test"
        )
        with BackgroundServer(daemon.app) as server:  # a daemon starts once
            yield Retuned(
                daemon=daemon, stdout=out.getvalue(), job_id=job.id, viewer=viewer, url=server.url
            )
    finally:
        daemon.close()


def _best_auc(d: Daemon) -> float:
    """The tuned version's cross-validated ROC AUC, from its stored loss."""
    loss = d.store.get_version(MODEL, 2).details["best_value"]
    assert loss < 0  # a loss: the AUC negated
    return float(-loss)


def test_retune_run_prints_the_best_roc_auc_not_its_loss(retuned: Retuned) -> None:
    auc = _best_auc(retuned.daemon)
    line = retuned.stdout.strip().splitlines()[-1]
    assert line.startswith(f"job {retuned.job_id} succeeded: {MODEL} version 2"), line
    assert f"best roc_auc {auc:.4f}; " in line and "-0." not in line
    # what stopped the study, as GET /v1/jobs/{id} says (`result.stopped_by`)
    stopped_by = retuned.daemon.store.get_job(retuned.job_id).result["stopped_by"]  # type: ignore[index]
    assert line.endswith(f"; stopped by {stopped_by})"), line


def test_the_report_shows_the_best_cv_roc_auc_and_its_folds_as_auc(retuned: Retuned) -> None:
    d = retuned.daemon
    details = d.store.get_version(MODEL, 2).details
    md = build_report(d.store, d.config, MODEL, 2).markdown()
    assert "- **objective**: roc_auc\n" in md
    assert f"- **best CV roc_auc**: {_best_auc(d):.6g}\n" in md
    folds = ", ".join(f"{-s:.6g}" for s in details["fold_scores"])
    assert f"- **fold scores**: {folds}\n" in md
    assert all(s < 0 for s in details["fold_scores"])  # stored as losses, unchanged
    assert "best CV value" not in md


def test_the_dashboard_tuning_json_adds_the_score_and_keeps_the_loss(retuned: Retuned) -> None:
    d = retuned.daemon
    page = tuning(
        Sources(store=d.store, runner=d.comparisons, tuning_storage=d.config.tuning_storage_url),
        MODEL,
    )
    auc = _best_auc(d)
    [job] = page["jobs"]
    assert job["objective"] == "roc_auc" and job["best_score"] == pytest.approx(auc)
    assert job["result"]["best_value"] == pytest.approx(-auc)  # the stored loss
    tuned = next(v for v in page["versions"] if v["version"] == 2)
    assert tuned["objective"] == "roc_auc"
    assert tuned["best_score"] == pytest.approx(auc) and tuned["best_value"] == pytest.approx(-auc)
    losses = d.store.get_version(MODEL, 2).details["fold_scores"]
    assert tuned["fold_scores"] == losses
    assert tuned["objective_fold_scores"] == pytest.approx([-s for s in losses])
    by_hand = next(v for v in page["versions"] if v["version"] == 1)
    assert by_hand["objective"] is None and by_hand["best_score"] is None


def test_the_dashboard_tuning_page_shows_roc_auc_for_finished_and_running_jobs(
    retuned: Retuned,
) -> None:
    """A running job's row has no version yet: its best value is shown as the objective
    the configuration tunes the model for."""
    d = retuned.daemon
    auc = _best_auc(d)
    running = {
        "model": MODEL,
        "kind": "retune",
        "status": "running",
        "trigger": {"event": "manual"},
        "spec": {},
        "progress": {"trials": 3, "max_trials": 9, "best_value": -0.8125, "study": "s"},
        "created_at": datetime.now(UTC),
    }
    with d.store.engine.begin() as conn:
        conn.execute(jobs.insert(), [running])
    url = retuned.url
    cookies = session_cookie(url, retuned.viewer)
    page = httpx.get(f"{url}/dashboard/models/{MODEL}/tuning", cookies=cookies, timeout=60)
    data = httpx.get(f"{url}/v1/dashboard/models/{MODEL}/tuning", cookies=cookies, timeout=60)
    assert data.status_code == 200, data.text
    (shown,) = [j for j in data.json()["jobs"] if j["status"] == "running"]
    assert shown["objective"] == "roc_auc" and shown["best_score"] == pytest.approx(0.8125)
    assert page.status_code == 200, page.text
    assert f"roc_auc {auc:.4g}" in page.text  # the finished job's and v2's
    assert page.text.count(f"roc_auc {auc:.4g}") == 2
    assert "roc_auc 0.8125" in page.text  # the running job's
    assert f"{-auc:.4g}" not in page.text and "-0.8125" not in page.text
    assert "best CV roc_auc" in page.text  # the chart's axis


def test_a_version_registered_with_pr_auc_details_reports_them_as_pr_auc(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Every figure of the section turned: best, folds and the nested estimate (its mean;
    the spread keeps its sign); a log-loss version's figures are its losses as stored."""
    d, _ = make_daemon(tmp_path, trained)
    try:
        details: dict[str, Any] = {
            "objective": "pr_auc",
            "best_value": -0.625,
            "fold_scores": [-0.5, -0.75],
            "fold_spread": 0.25,
            "nested_estimate": {"mean": -0.6, "std": 0.125, "outer_scores": [-0.5, -0.7]},
        }
        meta = dataclasses.replace(trained[0].metadata, details=details, dataset_version="details")
        pr = d.registry.register(MODEL, trained[0].onnx, meta, actor="test").version
        md = build_report(d.store, d.config, MODEL, pr).markdown()
        assert "- **best CV pr_auc**: 0.625\n" in md
        assert "- **fold scores**: 0.5, 0.75\n" in md
        assert "- **fold spread**: 0.25\n" in md
        assert "- **nested CV estimate (outer folds)**: 0.6 ± 0.125 over 2\n" in md
        log = {**details, "objective": "log_loss", "best_value": 0.25, "fold_scores": [0.2, 0.3]}
        meta = dataclasses.replace(trained[0].metadata, details=log, dataset_version="log")
        lower = d.registry.register(MODEL, trained[0].onnx, meta, actor="test").version
        md = build_report(d.store, d.config, MODEL, lower).markdown()
        assert "- **best CV log_loss**: 0.25\n" in md
        assert "- **fold scores**: 0.2, 0.3\n" in md
        # details naming no objective this release knows: the stored loss, said to be one
        unknown = {"best_value": 0.25, "fold_scores": [0.2, 0.3]}
        meta = dataclasses.replace(trained[0].metadata, details=unknown, dataset_version="unknown")
        other = d.registry.register(MODEL, trained[0].onnx, meta, actor="test").version
        md = build_report(d.store, d.config, MODEL, other).markdown()
        assert "- **best CV loss (lower is better)**: 0.25\n" in md
        assert "- **fold scores**: 0.2, 0.3\n" in md
    finally:
        d.close()


def test_the_jobs_and_versions_api_name_the_objective_and_give_its_best_score(
    retuned: Retuned,
) -> None:
    """``/v1/jobs`` and the version JSON gave only ``best_value``, the loss: a client had
    to know the model's objective, and that a ROC AUC is stored negated, to read -0.745.
    The job records the objective it tunes (its progress and result), and both answers
    add it with ``best_score``; the stored losses stay as they were."""
    d = retuned.daemon
    auc = _best_auc(d)
    url, headers = retuned.url, {"Authorization": f"Bearer {retuned.viewer}"}
    job = httpx.get(f"{url}/v1/jobs/{retuned.job_id}", headers=headers)
    listed = httpx.get(f"{url}/v1/jobs", params={"model": MODEL}, headers=headers)
    tuned = httpx.get(f"{url}/v1/models/{MODEL}/versions/2", headers=headers)
    by_hand = httpx.get(f"{url}/v1/models/{MODEL}/versions/1", headers=headers)
    assert job.status_code == 200, job.text
    body = job.json()
    assert body["objective"] == "roc_auc" and body["best_score"] == pytest.approx(auc)
    assert body["result"]["objective"] == body["progress"]["objective"] == "roc_auc"
    assert body["result"]["best_value"] == pytest.approx(-auc)  # the stored loss
    [same] = [j for j in listed.json()["jobs"] if j["id"] == retuned.job_id]
    assert (same["objective"], same["best_score"]) == (body["objective"], body["best_score"])
    assert tuned.status_code == 200, tuned.text
    version = tuned.json()
    assert version["objective"] == "roc_auc" and version["best_score"] == pytest.approx(auc)
    assert version["details"]["best_value"] == pytest.approx(-auc)
    assert (by_hand.json()["objective"], by_hand.json()["best_score"]) == (None, None)
