"""The leader's daily archiving of old Optuna studies (`tuning.archive_after_days`,
DESIGN.md §6: "old studies are archived, not lost"): the studies of this store's jobs
finished long enough ago are moved to the archive storage, never those of a queued or
running job nor another store's; each run is audited; warm start and the dashboard read
the moved studies from the archive, learning exactly what they learned before."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
import yaml

from monitor.objectives import make_objective
from retune import archive_study, study_names
from retune.space import load_search_space
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_tuning import _config as _tuning_config
from tests.tunewatch.test_tuning import _daemon as _tuning_daemon
from tests.tunewatch.test_tuning import _runner
from tunewatch import ConfigError, build_config
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch._scheduler import Scheduler
from tunewatch._study_archive import ARCHIVE_TASK, LEASE_NAME, archive_studies, archive_task
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_results import study_name
from tunewatch.dashboard._data import TrialCache
from tunewatch.store import Store

SPACE = {
    "format_version": 1,
    "name": "test_archive",
    "params": {
        "estimator": {"type": "categorical", "choices": ["logistic"]},
        "C": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
    },
}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def store(m_store: Store) -> Store:
    return m_store


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


@pytest.fixture
def archive(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna-archive.db'}"


def _study(storage: str, name: str, n_trials: int = 3, seed: int = 0) -> None:
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
    )
    study.set_user_attr("objective", {"name": "log_loss", "params": {}})
    study.optimize(
        lambda t: (
            t.suggest_categorical("estimator", ["logistic"]),
            abs(t.suggest_float("C", 0.01, 100.0, log=True) - 1.0),
        )[1],
        n_trials=n_trials,
    )


def _job(store: Store, storage: str, status: str, *, outer: int = 0, seed: int = 0) -> str:
    """A retune of ``m`` that ended ``status`` (``running``: still running) with its study
    (and ``outer`` outer studies of nested CV) in ``storage``; its study's name."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w")
    name = study_name(job)
    _study(storage, name, seed=seed)
    outers = [f"{name}-outer{k}" for k in range(outer)]
    for o in outers:
        _study(storage, o, n_trials=2)
    if status == "succeeded":
        nested = {"studies": outers} if outers else None
        store.finish_job(
            job.id, status="succeeded", result={"study": name, "nested": nested}, worker="w"
        )
    elif status == "failed":
        store.finish_job(job.id, status="failed", error="boom", worker="w")
    elif status == "cancelled":
        store.cancel_job(job.id, actor="admin", reason="test")
    return name


def _later(store: Store, days: float) -> Callable[[], datetime]:
    """The database's clock ``days`` on: the jobs finished now are that old."""
    return lambda: store.database_now() + timedelta(days=days)


def test_studies_of_jobs_finished_past_the_setting_are_archived_and_audited(
    store: Store, storage: str, archive: str
) -> None:
    succeeded = _job(store, storage, "succeeded", outer=2)
    failed = _job(store, storage, "failed")
    cancelled = _job(store, storage, "cancelled")
    running = _job(store, storage, "running")
    _study(storage, "m-job1-0123abcd")  # another store's job 1, sharing the storage

    early = archive_studies(
        store, storage=storage, archive=archive, archive_after_days=90, now=_later(store, 89)
    )
    assert early.archived == {} and store.audit_log(action=ARCHIVE_TASK) == []

    run = archive_studies(
        store, storage=storage, archive=archive, archive_after_days=90, now=_later(store, 91)
    )

    moved = {succeeded, f"{succeeded}-outer0", f"{succeeded}-outer1", failed, cancelled}
    assert set(run.archived) == moved and run.failed == {} and run.outcome == "done"
    assert run.archived[succeeded] == 3 and run.archived[f"{succeeded}-outer0"] == 2
    assert study_names(storage) == {running, "m-job1-0123abcd"}
    assert study_names(archive) == moved
    [entry] = store.audit_log(action=ARCHIVE_TASK)
    assert entry.actor == "scheduler"
    assert entry.details["archived"] == run.archived
    assert entry.details["failed"] == {} and entry.details["outcome"] == "done"


def test_a_run_while_another_holds_the_lease_moves_nothing(
    store: Store, storage: str, archive: str
) -> None:
    """Two runs at once (a leader that lost the scheduler's lease goes on with its run
    while the new leader starts one) met on one study: one deleted the other's copy,
    judged partial, while the other deleted the study, which was then in neither."""
    name = _job(store, storage, "succeeded")
    assert store.acquire_lease(LEASE_NAME, "archive_studies:other", ttl_s=60)
    run = archive_studies(
        store, storage=storage, archive=archive, archive_after_days=90, now=_later(store, 91)
    )
    assert (run.outcome, run.archived) == ("busy", {})
    assert name in study_names(storage) and store.audit_log(action=ARCHIVE_TASK) == []
    store.release_lease(LEASE_NAME, "archive_studies:other")
    run = archive_studies(
        store, storage=storage, archive=archive, archive_after_days=90, now=_later(store, 91)
    )
    assert (run.outcome, list(run.archived)) == ("done", [name])


def test_a_shutdown_ends_a_run_between_studies_and_it_is_not_the_last_run(
    store: Store, storage: str, archive: str
) -> None:
    name = _job(store, storage, "succeeded")
    stop = threading.Event()
    stop.set()  # the daemon is stopping
    task = archive_task(
        store,
        storage=storage,
        archive=archive,
        archive_after_days=1,
        stop=stop,
        now=_later(store, 2),
    )

    task.run()

    assert study_names(storage) == {name}
    [entry] = store.audit_log(action=ARCHIVE_TASK)
    assert entry.details["outcome"] == "stopped" and entry.details["archived"] == {}
    assert task.last_run() == datetime(1970, 1, 1, tzinfo=UTC)

    archive_task(
        store, storage=storage, archive=archive, archive_after_days=1, now=_later(store, 2)
    ).run()

    assert study_names(archive) == {name}
    assert task.last_run() == store.audit_log(1, action=ARCHIVE_TASK)[0].at


@pytest.mark.postgres
def test_a_study_that_cannot_be_archived_does_not_stop_the_others(
    empty_store: Store, storage: str, pg_url: str
) -> None:
    """A study the archive refuses (a user attribute's key longer than PostgreSQL's
    column for it, which SQLite took) is recorded as failed; the others are moved."""
    store = empty_store
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    first = _job(store, storage, "succeeded")
    refused = _job(store, storage, "succeeded")
    last = _job(store, storage, "succeeded")
    optuna.load_study(study_name=refused, storage=storage).set_user_attr("k" * 600, 1)

    run = archive_studies(
        store, storage=storage, archive=pg_url, archive_after_days=1, now=_later(store, 2)
    )

    assert set(run.archived) == {first, last}
    assert list(run.failed) == [refused] and "StudyError" in run.failed[refused]
    assert study_names(storage) == {refused}  # still whole where it was
    [entry] = store.audit_log(action=ARCHIVE_TASK)
    assert list(entry.details["failed"]) == [refused]


def _plan(store: Store, storage: str, tmp_path: Path, archive: str | None) -> Any:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return warm_start_plan(
        store,
        storage,
        "m",
        kind="combined",
        space=load_search_space(path),
        objective=make_objective("log_loss", task="binary"),
        archive=archive,
    )


def test_warm_start_learns_the_same_from_archived_studies(
    store: Store, storage: str, archive: str, tmp_path: Path
) -> None:
    names = [_job(store, storage, "succeeded", seed=seed) for seed in range(3)]
    before = _plan(store, storage, tmp_path, archive)
    assert before is not None and before.history_studies == tuple(names)
    for name in names[:2]:  # the oldest two archived, the newest still in the storage
        archive_study(storage, archive, name)

    assert _plan(store, storage, tmp_path, archive) == before
    # read without the archive, the plan leaves the archived studies out
    assert _plan(store, storage, tmp_path, None).history_studies == (names[2],)


def test_the_dashboard_reads_archived_trials(storage: str, archive: str) -> None:
    _study(storage, "m-job1-aaaaaaaa", n_trials=4)
    _study(storage, "m-job2-bbbbbbbb", n_trials=2)
    before = TrialCache().trials_of(storage, ["m-job1-aaaaaaaa", "m-job2-bbbbbbbb"])
    archive_study(storage, archive, "m-job1-aaaaaaaa")

    after = TrialCache().trials_of(storage, ["m-job1-aaaaaaaa", "m-job2-bbbbbbbb"], archive=archive)

    assert after == before and after["m-job1-aaaaaaaa"] is not None


# -- configuration ------------------------------------------------------------------------------


def _config(tmp_path: Path, **tuning: Any) -> Any:
    return build_config({"data_dir": str(tmp_path), "tuning": tuning}, env={})


def test_the_archive_is_a_file_beside_the_default_storage(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.tuning.archive_after_days == 90
    assert config.tuning_archive_url == f"sqlite:///{tmp_path.resolve() / 'optuna-archive.db'}"


def test_a_configured_storage_has_no_archive_unless_one_is_named(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    assert _config(tmp_path, storage_url=shared).tuning_archive_url is None
    named = f"sqlite:///{tmp_path / 'shared-archive.db'}"
    config = _config(tmp_path, storage_url=shared, archive_storage_url=named)
    assert config.tuning_archive_url == named


def test_a_relative_archive_path_is_read_beside_the_config_file(tmp_path: Path) -> None:
    config = build_config(
        {"tuning": {"archive_storage_url": "sqlite:///archive.db"}},
        env={},
        config_dir=tmp_path,
    )
    assert config.tuning_archive_url == f"sqlite:///{tmp_path / 'archive.db'}"


@pytest.mark.parametrize("days", [0, -1, 1e9], ids=["zero", "negative", "past_ten_years"])
def test_archive_after_days_outside_its_bounds_is_refused(tmp_path: Path, days: float) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.archive_after_days"):
        _config(tmp_path, archive_after_days=days)


def test_null_archive_after_days_keeps_every_study(tmp_path: Path) -> None:
    assert _config(tmp_path, archive_after_days=None).tuning.archive_after_days is None


def test_a_blank_archive_url_is_refused_naming_the_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.archive_storage_url.*optuna-archive\.db"):
        _config(tmp_path, archive_storage_url=" ")


def test_an_archive_url_no_worker_can_open_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.archive_storage_url.*backend 'foo'"):
        _config(tmp_path, archive_storage_url="foo://x")


def test_an_archive_in_the_tuning_storage_or_the_store_is_refused(tmp_path: Path) -> None:
    default_storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(ConfigError, match=r"archive_storage_url.*tuning storage"):
        _config(tmp_path, archive_storage_url=default_storage)
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    with pytest.raises(ConfigError, match=r"archive_storage_url.*tuning storage"):
        _config(tmp_path, storage_url=shared, archive_storage_url=shared)
    with pytest.raises(ConfigError, match=r"archive_storage_url.*store's own database"):
        _config(tmp_path, archive_storage_url=f"sqlite:///{tmp_path / 'tunewatch.db'}")


@pytest.mark.parametrize("spelling", ["link", "dotdot"])
def test_a_journal_archive_naming_the_journal_storage_another_way_is_refused(
    tmp_path: Path, spelling: str
) -> None:
    """A journal file's path through a link or with ``..`` was compared as written:
    accepted, and every archived study deleted (the "copy" matched the study itself)."""
    (tmp_path / "shared" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "shared")
    storage = str(tmp_path / "shared" / "optuna.log")
    other = {
        "link": tmp_path / "link" / "optuna.log",
        "dotdot": tmp_path / "shared" / "sub" / ".." / "optuna.log",
    }[spelling]
    with pytest.raises(ConfigError, match=r"archive_storage_url.*tuning storage"):
        _config(tmp_path, storage_url=storage, archive_storage_url=str(other))


# -- the scheduler --------------------------------------------------------------------------------


def test_the_leader_archives_daily_by_default(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = Store.open(config.store_url)
    scheduler = Scheduler(store=store, config=config, jobs=[])
    scheduler.start()
    try:
        assert scheduler.leader
        job = scheduler._aps.get_job(ARCHIVE_TASK)
        assert job is not None and "interval[1 day" in str(job.trigger)
    finally:
        scheduler.shutdown()
        store.close()


@pytest.mark.parametrize(
    ("tuning", "said"),
    [
        ({"archive_after_days": None}, None),
        ({"storage_url": "sqlite:///{}/shared.db"}, "tuning.archive_storage_url"),
    ],
    ids=["switched_off", "shared_storage_without_archive"],
)
def test_no_archiving_is_scheduled_when_off_or_without_an_archive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tuning: dict[str, Any], said: str | None
) -> None:
    tuning = {k: v.format(tmp_path) if isinstance(v, str) else v for k, v in tuning.items()}
    config = _config(tmp_path, **tuning)
    store = Store.open(config.store_url)
    with caplog.at_level(logging.INFO, logger="tunewatch._scheduler"):
        scheduler = Scheduler(store=store, config=config, jobs=[])
    try:
        assert ARCHIVE_TASK not in [t.name for t in scheduler.tasks]
        if said is not None:
            assert said in caplog.text and "not archived" in caplog.text
        else:
            assert "archived" not in caplog.text
    finally:
        store.close()


def test_a_job_warm_starts_from_a_study_the_leader_archived(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The daemon's own job (not the planner called by hand) reads the archive: with the
    first job's study moved, the second still learns from it."""
    d = _tuning_daemon(_tuning_config(tmp_path, max_trials=2), trained)
    try:
        first = d.dispatcher.handle(MODEL, "manual", {"reason": "first"})
        assert first.job_id is not None
        assert _runner(d).run(first.job_id).status == "succeeded"
        study = study_name(d.store.get_job(first.job_id))
        archive = d.config.tuning_archive_url
        assert archive is not None
        run = archive_studies(
            d.store,
            storage=d.config.tuning_storage_url,
            archive=archive,
            archive_after_days=90,
            now=_later(d.store, 91),
        )
        assert list(run.archived) == [study]
        assert study not in study_names(d.config.tuning_storage_url)
        second = d.dispatcher.handle(MODEL, "manual", {"reason": "again"})
        assert second.job_id is not None
        job = _runner(d).run(second.job_id)
        assert job.status == "succeeded", job.error
        assert job.result is not None
        plan = d.store.get_version(MODEL, job.result["version"]).details["warm_start_plan"]
        assert plan["history_studies"] == [study], plan
        # the dashboard's tuning page shows the archived study's trials, as before
        viewer = new_token()
        d.store.add_token(name="v", role="viewer", token_hash=hash_token(viewer), actor="t")
        with BackgroundServer(d.app) as server:
            page = httpx.get(
                f"{server.url}/v1/dashboard/models/{MODEL}/tuning",
                headers={"Authorization": f"Bearer {viewer}"},
                timeout=60,
            )
        assert page.status_code == 200, page.text
        [shown] = [j for j in page.json()["jobs"] if j["id"] == first.job_id]
        assert len(shown["trials"]) == 2, shown
    finally:
        d.close()
