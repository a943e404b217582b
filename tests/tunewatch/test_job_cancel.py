"""Cancelling a re-tuning job (``POST /v1/jobs/{id}/cancel``, ``tunewatch cancel``).

``cancelled`` was a valid status that nothing set: a job queued by mistake kept its
quota slot, and SIGTERM to its worker only queued it again for the next worker. A queued
or running job is now cancelled (audited as ``cancel_job`` with who and why, in the
transaction that changes its status), freeing its slot at once; its workers stop after
their running trial, registering nothing, and exit 0 without the launcher queueing the
job again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from retune import study_progress
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._actions import Dispatcher
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._example import ExampleModel
from tunewatch._launcher_worker import stderr_tail as _tail
from tunewatch._tuning_results import study_name
from tunewatch.store import Store

MANUAL = [{"on": "manual", "do": "retune", "cooldown_minutes": 0}]
LOGISTIC = {  # one family: quick trials
    "format_version": 1,
    "name": "logistic_only",
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
def store(store_with_model_a: Store) -> Store:
    return store_with_model_a


def _dispatcher(store: Store, *, quota: int) -> Dispatcher:
    raw = {
        "tuning": {"max_concurrent_jobs": quota},
        "models": [{"name": "a", "task": "binary", "triggers": MANUAL}],
    }
    return Dispatcher(store, build_config(raw, env={}))


def test_a_cancelled_queued_job_frees_its_quota_slot_and_is_audited(store: Store) -> None:
    d = _dispatcher(store, quota=1)
    first = d.handle("a", "manual", {"reason": "by mistake"}, actor="alice")
    assert first.status == "taken" and first.job_id is not None
    # another model's: one of a's own, while its job is queued, is that job's duplicate
    store.ensure_model(name="b", task="binary", feature_names=["x"])
    held = d.handle("b", "manual", {"reason": "the real one"}, actor="alice")
    assert (held.status, held.cause) == ("suppressed", "quota")

    job = store.cancel_job(first.job_id, actor="bob", reason="queued by mistake")

    assert job.status == "cancelled" and job.finished_at is not None
    assert job.error is not None and "bob" in job.error and "queued by mistake" in job.error
    assert job.progress["phase"] == "cancelled"
    assert store.count_active_jobs() == 0
    [entry] = store.audit_log(action="cancel_job")
    assert (entry.actor, entry.target) == ("bob", "a")
    assert entry.details == {"job": job.id, "reason": "queued by mistake", "status": "queued"}
    assert store.verify_audit() is None
    [event] = store.list_events(model="a", type="retune_cancelled")
    assert event.payload == {"job": job.id, "actor": "bob", "reason": "queued by mistake"}
    again = d.handle("b", "manual", {"reason": "the real one"}, actor="alice")
    assert again.status == "taken" and again.job_id != first.job_id


def test_a_cancelled_running_job_keeps_its_worker_and_progress(store: Store) -> None:
    job, _ = store.create_job(model="a", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "host:1")
    store.update_job_progress(job.id, {"phase": "tuning", "trials": 3})
    cancelled = store.cancel_job(job.id, actor="bob", reason="wrong window")
    assert (cancelled.status, cancelled.worker) == ("cancelled", "host:1")
    assert cancelled.progress == {"phase": "cancelled", "trials": 3}
    [entry] = store.audit_log(action="cancel_job")
    assert entry.details["status"] == "running"
    # its worker's later reports and its requeue leave the job as it is
    store.update_job_progress(job.id, {"trials": 4})
    assert not store.requeue_job(job.id, "host:1")
    assert store.get_job(job.id).progress == {"phase": "cancelled", "trials": 3}


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancelling_a_finished_job_is_refused_naming_its_status(store: Store, status: str) -> None:
    job, _ = store.create_job(model="a", kind="retune", trigger={}, spec={})
    if status == "cancelled":
        store.cancel_job(job.id, actor="bob", reason="first")
    else:
        store.finish_job(job.id, status=status, result={})  # type: ignore[arg-type]
    before = store.get_job(job.id)
    with pytest.raises(ConflictError) as info:
        store.cancel_job(job.id, actor="carol", reason="second")
    assert info.value.code == "job_finished" and status in info.value.message
    assert store.get_job(job.id) == before
    assert [e.actor for e in store.audit_log(action="cancel_job")] == (
        ["bob"] if status == "cancelled" else []
    )


def test_cancelling_an_unknown_job_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        store.cancel_job(999, actor="bob", reason="typo")
    assert info.value.code == "job_not_found"
    assert store.audit_log(action="cancel_job") == []


# -- the API --------------------------------------------------------------------------------


@pytest.fixture
def served(
    trained: list[ExampleModel], tmp_path: Path
) -> Iterator[tuple[Daemon, BackgroundServer, dict[str, str]]]:
    d, tokens = make_daemon(
        tmp_path / "data",
        trained,
        extra={
            "tuning": {"max_concurrent_jobs": 1},
            "models": [{"name": MODEL, "task": "binary", "triggers": MANUAL}],
        },
    )
    with BackgroundServer(d.app) as server:
        yield d, server, tokens
    d.close()


def test_the_api_cancels_a_job_for_an_operator_and_refuses_the_rest(
    served: tuple[Daemon, BackgroundServer, dict[str, str]],
) -> None:
    d, server, tokens = served

    def call(role: str, path: str, body: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)

    queued = call("operator", f"/v1/models/{MODEL}/retune", {"reason": "oops"})
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job"]
    cancel = f"/v1/jobs/{job_id}/cancel"

    forbidden = call("viewer", cancel, {"reason": "not mine to stop"})
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
    no_reason = call("operator", cancel, {})
    assert no_reason.status_code == 400, no_reason.text
    assert d.store.get_job(job_id).status == "queued"

    done = call("operator", cancel, {"reason": "queued by mistake"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "cancelled" and body["job"]["id"] == job_id
    assert body["job"]["status"] == "cancelled" and body["job"]["finished_at"]
    [entry] = d.store.audit_log(action="cancel_job")
    assert (entry.actor, entry.details["reason"]) == ("test-operator", "queued by mistake")
    # its slot is free at once: under max_concurrent_jobs 1, a retune queues now
    assert call("operator", f"/v1/models/{MODEL}/retune", {"reason": "real"}).status_code == 202

    again = call("admin", cancel, {"reason": "twice"})
    assert (again.status_code, again.json()["code"]) == (409, "job_finished")
    assert "cancelled" in again.json()["error"]
    unknown = call("operator", "/v1/jobs/999/cancel", {"reason": "typo"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "job_not_found")
    listed = httpx.get(
        f"{server.url}/v1/jobs?status=cancelled",
        headers={"Authorization": f"Bearer {tokens['viewer']}"},
        timeout=30,
    ).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


# -- the CLI --------------------------------------------------------------------------------


def test_cli_cancel_exit_codes(
    served: tuple[Daemon, BackgroundServer, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, _, _ = served
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(d.config.model_dump(mode="json")))
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "oops"})
    assert outcome.job_id is not None
    job_id = str(outcome.job_id)
    cli = ["--config", str(config), "--actor", "dana"]

    with pytest.raises(SystemExit) as usage:  # --reason is required
        main([*cli, "cancel", job_id])
    assert usage.value.code == 2
    assert d.store.get_job(outcome.job_id).status == "queued"
    capsys.readouterr()

    assert main([*cli, "cancel", job_id, "--reason", "queued by mistake"]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id} cancelled by dana while queued: queued by mistake" in out
    [entry] = d.store.audit_log(action="cancel_job")
    assert (entry.actor, entry.details["reason"]) == ("dana", "queued by mistake")

    # a worker started for it before it was cancelled exits 0, saying so
    assert main([*cli, "worker", "--job", job_id]) == 0
    assert f"job {job_id} cancelled by dana" in capsys.readouterr().err

    assert main([*cli, "cancel", job_id, "--reason", "again"]) == 1  # finished: nothing to do
    assert "already cancelled" in capsys.readouterr().err
    assert main([*cli, "cancel", "999", "--reason", "typo"]) == 2
    assert "job 999 does not exist" in capsys.readouterr().err


# -- a running job's worker process ---------------------------------------------------------


@pytest.mark.slow
def test_a_cancelled_running_job_s_worker_stops_after_its_trial_and_registers_nothing(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    space = tmp_path / "logistic.yaml"
    space.write_text(yaml.safe_dump(LOGISTIC))
    # a budget it would not reach for minutes: only the cancellation stops it
    raw = _config(tmp_path, search_space=str(space), max_trials=10_000, wall_time_s=600)
    # worker_nice 0: at the default 19 a worker gets ~1.5 % of a core beside CI's other
    # tests (tests/tunewatch/test_worker_priority.py checks the niceness)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 1, "heartbeat_s": 1, "worker_nice": 0}
    raw["store"] = {"url": store_url}
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "by mistake"})
        job_id = outcome.job_id
        assert job_id is not None and d.launcher.tick() == [job_id]
        proc = d.launcher._procs[job_id]
        deadline = time.monotonic() + 120  # a guard against a hang, not an assertion on time
        while d.store.get_job(job_id).progress.get("trials", 0) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no trial ran"
            time.sleep(0.2)

        d.store.cancel_job(job_id, actor="alice", reason="queued by mistake")
        job = d.store.get_job(job_id)
        storage = d.config.tuning_storage_url
        ran = study_progress(storage, study_name(job))
        assert ran is not None

        while proc.poll() is None:  # it stops at its next check between trials
            assert time.monotonic() < deadline, "the worker went on after its job was cancelled"
            time.sleep(0.2)
        assert proc.returncode == 0
        stderr = _tail(d.launcher._stderr[job_id])
        assert "cancelled" in stderr and "queued again" not in stderr
        after = study_progress(storage, study_name(job))
        assert after is not None and after.n_trials <= ran.n_trials + 1  # its running trial

        assert d.launcher.tick() == []  # reaped: not a crash, not a failed start, not queued
        job = d.store.get_job(job_id)
        assert job.status == "cancelled" and job.crashes == 0
        assert job.progress["phase"] == "cancelled"
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]  # nothing registered
        types = {e.type for e in d.store.list_events(model=MODEL)}
        assert "retune_cancelled" in types
        assert not types & {"retune_interrupted", "retune_failed", "challenger_registered"}
        assert d.launcher.failed_start(job_id) is None and d.store.count_active_jobs() == 0
    finally:
        d.launcher.stop()
        d.close()
