"""Each tuning job's Optuna study is its own, even in an Optuna storage other stores
use: job ids number per store, and a second store sharing `tuning.storage_url` (staging
and prod on one Optuna database, a store recreated or restored from a backup beside the
old optuna.db) joined the first store's study of the same number and failed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from monitor.objectives import make_objective
from retune import study_progress
from retune.space import load_search_space
from tests.tunewatch.conftest import Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_results import study_name
from tunewatch.store import MAX_MODEL_NAME, JobRow, Store
from tunewatch.store._schema import jobs, model_versions

MODEL = "credit"
SPACE = {
    "format_version": 1,
    "name": "test_tiny",
    "params": {
        "estimator": {"type": "categorical", "choices": ["logistic"]},
        "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
    },
}


def _store(
    root: Path, storage: str, trained: list[ExampleModel], *, seed: int, n: int = 240
) -> Daemon:
    """A store of its own under ``root`` whose studies go to the Optuna ``storage``."""
    root.mkdir()
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    raw = {
        "data_dir": str(root / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10, "storage_url": storage},
        "models": [
            {
                "name": MODEL,
                "task": "binary",
                "tuning": {
                    "search_space": str(space),
                    "max_trials": 2,
                    "cv_folds": 2,
                    "patience": None,
                    "wall_time_s": 120,
                    "min_rows": 100,
                },
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    d = Daemon(build_config(raw, env={}), env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    feed(d, Clock(), 0, n, shift=0.5, seed=seed)  # each store its own traffic
    return d


@pytest.fixture
def stores(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """Staging and prod: two stores, one Optuna storage."""
    storage = f"sqlite:///{tmp_path / 'shared-optuna.db'}"
    staging = _store(tmp_path / "staging", storage, trained, seed=3)
    prod = _store(tmp_path / "prod", storage, trained, seed=4, n=260)
    yield staging, prod
    prod.close()
    staging.close()


def _queue(d: Daemon) -> JobRow:
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None, outcome
    return d.store.get_job(outcome.job_id)


def _run(d: Daemon, job: JobRow) -> JobRow:
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="test"
    )
    done = runner.run(job.id)
    assert done.status == "succeeded", done.error
    return done


def _learns_from(d: Daemon) -> tuple[str, ...]:
    """The studies the model's next job's warm start learns from."""
    cfg = d.config.model_or_default(MODEL, "binary")
    assert cfg.tuning.search_space is not None
    plan = warm_start_plan(
        d.store,
        d.config.tuning_storage_url,
        MODEL,
        kind="combined",
        space=load_search_space(cfg.tuning.search_space),
        objective=make_objective(cfg.objective.name, task="binary", **cfg.objective.params),
    )
    return () if plan is None else plan.history_studies


def _as_queued_before_unique_study_names(d: Daemon, job: JobRow) -> JobRow:
    """``job`` as a job queued before jobs recorded their study's name."""
    spec = {k: v for k, v in job.spec.items() if k != "study"}
    with d.store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job.id).values(spec=spec))
    return d.store.get_job(job.id)


def test_two_stores_sharing_an_optuna_storage_tune_their_first_jobs_in_studies_of_their_own(
    stores: tuple[Daemon, Daemon],
) -> None:
    staging, prod = stores
    first, second = _queue(staging), _queue(prod)
    assert first.id == second.id == 1  # job ids number per store
    done_staging = _run(staging, first)
    done_prod = _run(prod, second)  # it joined staging's `credit-job1`, and failed
    assert done_staging.result is not None and done_prod.result is not None
    ours, theirs = done_staging.result["study"], done_prod.result["study"]
    assert ours != theirs
    assert (ours, theirs) == (study_name(first), study_name(second))
    storage = staging.config.tuning_storage_url
    for study in (ours, theirs):
        progress = study_progress(storage, study)
        assert progress is not None and progress.n_complete == 2
    [prod_version] = [v for v in prod.store.list_versions(MODEL) if v.study is not None]
    assert prod_version.study == theirs
    # each store's next job learns from its own studies alone
    assert _learns_from(staging) == (ours,)
    assert _learns_from(prod) == (theirs,)


def test_a_study_named_before_names_were_unique_keeps_its_name_and_warm_starts_its_store(
    stores: tuple[Daemon, Daemon],
) -> None:
    """A job queued before jobs recorded their study's name (a deployment's running job,
    resumed after the upgrade) keeps the study it was given, `{model}-job{id}`, and the
    store's later jobs still learn from it; another store's do not."""
    staging, prod = stores
    old = _as_queued_before_unique_study_names(staging, _queue(staging))
    assert study_name(old) == f"{MODEL}-job{old.id}"
    done_old = _run(staging, old)
    assert done_old.result is not None and done_old.result["study"] == f"{MODEL}-job1"
    done_new = _run(staging, _queue(staging))
    assert done_new.result is not None
    new = done_new.result["study"]
    assert new not in (f"{MODEL}-job1", f"{MODEL}-job2")
    assert _learns_from(staging) == (f"{MODEL}-job1", new)
    # prod's job 1 has a study of its own, and prod learns nothing from staging's
    done_prod = _run(prod, _queue(prod))
    assert done_prod.result is not None
    assert done_prod.result["study"] not in (f"{MODEL}-job1", new)
    assert _learns_from(prod) == (done_prod.result["study"],)


def test_a_queued_job_records_a_study_name_of_its_own_that_fits_a_version_row(
    store_url: str,
) -> None:
    """The name is the job's from the start, so every worker of the job, and every
    resumption, tunes the same study; a version row holds it even for the longest model
    name. On both store backends."""
    store = Store.open(store_url)
    try:
        longest = "m" * MAX_MODEL_NAME
        for name in (MODEL, longest):
            store.ensure_model(name=name, task="binary", feature_names=["a", "b"])
        first, _ = store.create_job(
            model=MODEL, kind="retune", trigger={}, spec={"champion_version": 1}, dedupe_key="k"
        )
        again, created = store.create_job(
            model=MODEL, kind="retune", trigger={}, spec={"champion_version": 1}, dedupe_key="k"
        )
        long_job, _ = store.create_job(model=longest, kind="retune", trigger={}, spec={})
    finally:
        store.close()
    assert re.fullmatch(f"{MODEL}-job{first.id}-[0-9a-f]{{8}}", study_name(first))
    assert first.spec == {"champion_version": 1, "study": study_name(first)}
    assert not created and study_name(again) == study_name(first)
    limit = model_versions.c.study.type.length
    assert limit is not None and len(study_name(long_job)) <= limit
    assert re.fullmatch(f"m+~[0-9a-f]{{16}}-job{long_job.id}-[0-9a-f]{{8}}", study_name(long_job))
