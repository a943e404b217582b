"""A manual retune (``POST /v1/models/{m}/retune``, ``tunewatch retune``): its job and its
``request_retune`` audit entry are written in one transaction, it is answered 202 only
when a job exists (409 naming the cause when nothing was queued), and the job's trigger
names who asked.

The job was queued in a transaction of its own and the audit entry appended after it:
when the append failed (the audit chain's head held past ``lock_timeout_s``), the caller
was answered 503 "retry later" with the job queued, unaudited, and its retry queued a
second job. A request the cool-down, the quota or a missing trigger held back was
answered 202 Accepted, although ``tunewatch retune`` exits 1 for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from tests.tunewatch.conftest import MODEL, break_audit_appends, make_daemon
from tunewatch._actions import Dispatcher
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreError
from tunewatch._example import ExampleModel
from tunewatch.store import Store

OPERATOR = "test-operator"  # the operator token's name (make_daemon)


@pytest.fixture
def store(store_with_model_a: Store) -> Store:
    return store_with_model_a


def _dispatcher(store: Store, *, quota: int = 5) -> Dispatcher:
    return Dispatcher(store, build_config({"tuning": {"max_concurrent_jobs": quota}}, env={}))


def test_a_manual_retune_whose_audit_entry_cannot_be_written_queues_no_job(store: Store) -> None:
    break_audit_appends(store)
    with pytest.raises(StoreError):
        _dispatcher(store).handle("a", "manual", {"reason": "nightly"}, actor="alice")
    assert store.list_jobs() == []
    assert [e.type for e in store.list_events(model="a")] == ["manual"]  # no action event


def test_a_queued_manual_retune_is_audited_with_its_job_and_names_its_requester(
    store: Store,
) -> None:
    outcome = _dispatcher(store).handle("a", "manual", {"reason": "nightly"}, actor="alice")
    [job] = store.list_jobs()
    assert outcome.status == "taken" and outcome.job_id == job.id
    assert job.trigger == {"event": "manual", "reason": "nightly", "actor": "alice"}
    [entry] = store.audit_log(action="request_retune")
    assert (entry.actor, entry.target) == ("alice", "a")
    assert entry.details == {"reason": "nightly", "status": "taken", "job": job.id}
    assert store.verify_audit() is None


def test_a_manual_retune_already_queued_is_audited_as_a_duplicate_of_its_job(
    store: Store,
) -> None:
    d = _dispatcher(store)
    first = d.handle("a", "manual", {"reason": "r"}, dedupe_key="k1", actor="alice")
    again = d.handle("a", "manual", {"reason": "r"}, dedupe_key="k1", actor="bob")
    assert (again.status, again.job_id) == ("duplicate", first.job_id)
    assert len(store.list_jobs()) == 1
    newest, oldest = store.audit_log(action="request_retune")
    assert (oldest.actor, oldest.details["status"]) == ("alice", "taken")
    assert newest.actor == "bob"
    assert newest.details == {
        "reason": "r",
        "status": "duplicate",
        "job": first.job_id,
        "why": again.reason,
    }
    assert store.verify_audit() is None


def test_a_scheduled_retune_is_neither_audited_nor_names_an_actor(store: Store) -> None:
    outcome = _dispatcher(store).handle("a", "schedule", {"reason": "standing schedule"})
    [job] = store.list_jobs()
    assert outcome.job_id == job.id
    assert job.trigger == {"event": "schedule", "reason": "standing schedule"}
    assert store.audit_log(action="request_retune") == []


# -- over HTTP ------------------------------------------------------------------------------


def _daemon(
    tmp_path: Path,
    trained: list[ExampleModel],
    store: dict[str, Any],
    *,
    quota: int = 5,
    triggers: list[dict[str, Any]] | None = None,
) -> tuple[Daemon, dict[str, str]]:
    model: dict[str, Any] = {"name": MODEL, "task": "binary"}
    if triggers is not None:
        model["triggers"] = triggers
    return make_daemon(
        tmp_path / "data",
        trained,
        extra={
            "store": store,
            "scheduler": {"enabled": False},
            "tuning": {"workers": 0, "max_concurrent_jobs": quota},
            "models": [model],
        },
    )


def _client(url: str, tokens: dict[str, str]) -> httpx.Client:
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def _retune(client: httpx.Client, reason: str) -> httpx.Response:
    return client.post(f"/v1/models/{MODEL}/retune", json={"reason": reason})


@pytest.mark.postgres
def test_a_retune_whose_audit_entry_waits_past_the_lock_timeout_is_503_and_queues_nothing(
    tmp_path: Path, trained: list[ExampleModel], pg_url: str
) -> None:
    daemon, tokens = _daemon(tmp_path, trained, {"url": pg_url, "lock_timeout_s": 0.5})
    engine = sa.create_engine(pg_url)
    try:
        with BackgroundServer(daemon.app) as server, _client(server.url, tokens) as client:
            with engine.connect() as holder, holder.begin():  # a long audited transaction
                holder.execute(sa.text("SELECT hash FROM audit_head WHERE id = 1 FOR UPDATE"))
                refused = _retune(client, "nightly")
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "store_unavailable"
            assert daemon.store.list_jobs() == []
            retried = _retune(client, "nightly")
            assert retried.status_code == 202, retried.text
        [job] = daemon.store.list_jobs()
        assert retried.json()["job"] == job.id
        assert job.trigger == {"event": "manual", "reason": "nightly", "actor": OPERATOR}
        [entry] = daemon.store.audit_log(action="request_retune")
        assert (entry.actor, entry.details["job"]) == (OPERATOR, job.id)
        assert daemon.store.verify_audit() is None
    finally:
        engine.dispose()
        daemon.close()


_HELD_BACK = [
    pytest.param(
        {"triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 30}]},
        "cooldown",
        "cooling down: job 1",
        id="cooldown",
    ),
    pytest.param({"quota": 1}, "quota", "quota: 1 tuning jobs active", id="quota"),
]


@pytest.mark.parametrize(("setup", "code", "why"), _HELD_BACK)
def test_a_retune_held_back_is_409_naming_the_cause_and_is_recorded(
    tmp_path: Path,
    trained: list[ExampleModel],
    store_url: str,
    setup: dict[str, Any],
    code: str,
    why: str,
) -> None:
    daemon, tokens = _daemon(tmp_path, trained, {"url": store_url}, **setup)
    try:
        with BackgroundServer(daemon.app) as server, _client(server.url, tokens) as client:
            first = _retune(client, "first")
            assert first.status_code == 202, first.text
            # ended (while queued, it answers a second retune as its duplicate), and the
            # quota's one slot held by another model's job
            daemon.store.finish_job(first.json()["job"], status="succeeded", result={})
            if code == "quota":
                daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
                daemon.store.create_job(model="other", kind="retune", trigger={}, spec={})
            held = _retune(client, "second")
        assert held.status_code == 409, held.text
        body = held.json()
        assert set(body) == {"error", "code"} and body["code"] == code
        assert why in body["error"] and MODEL in body["error"]
        assert [j.id for j in daemon.store.list_jobs(model=MODEL)] == [first.json()["job"]]
        [suppressed] = daemon.store.list_events(model=MODEL, type="action_suppressed")
        assert (suppressed.payload["cause"], suppressed.payload["actor"]) == (code, OPERATOR)
        newest, _ = daemon.store.audit_log(action="request_retune")
        assert newest.details["status"] == "suppressed" and newest.details["job"] is None
        assert why in newest.details["why"]
    finally:
        daemon.close()


def test_a_retune_while_the_model_s_job_is_queued_is_202_duplicate_naming_it(
    tmp_path: Path, trained: list[ExampleModel], store_url: str
) -> None:
    daemon, tokens = _daemon(tmp_path, trained, {"url": store_url})
    try:
        with BackgroundServer(daemon.app) as server, _client(server.url, tokens) as client:
            first = _retune(client, "first")
            second = _retune(client, "second")
        assert (first.status_code, second.status_code) == (202, 202), second.text
        job = first.json()["job"]
        assert second.json() == {
            "action": "retune",
            "status": "duplicate",
            "reason": f"already handled by job {job}",
            "job": job,
        }
        assert [j.id for j in daemon.store.list_jobs(model=MODEL)] == [job]
        newest, _ = daemon.store.audit_log(action="request_retune")
        assert (newest.details["status"], newest.details["job"]) == ("duplicate", job)
    finally:
        daemon.close()


@pytest.mark.parametrize(
    "triggers",
    [
        pytest.param([{"on": "drift_detected", "do": "notify"}], id="no_manual_trigger"),
        pytest.param([{"on": "manual", "do": "notify"}], id="manual_notifies"),
    ],
)
def test_a_retune_of_a_model_with_no_manual_retune_is_409_no_trigger(
    tmp_path: Path, trained: list[ExampleModel], store_url: str, triggers: list[dict[str, Any]]
) -> None:
    daemon, tokens = _daemon(tmp_path, trained, {"url": store_url}, triggers=triggers)
    try:
        with BackgroundServer(daemon.app) as server, _client(server.url, tokens) as client:
            r = _retune(client, "r")
            spec = client.get("/openapi.json").json()
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "no_trigger" and "manual" in r.json()["error"]
        assert daemon.store.list_jobs() == []
        assert "manual" in [e.type for e in daemon.store.list_events(model=MODEL)]
        responses = spec["paths"]["/v1/models/{model}/retune"]["post"]["responses"]
        assert {"202", "409"} <= set(responses)
        schema = responses["409"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    finally:
        daemon.close()


def test_a_retune_asked_for_on_the_command_line_names_its_actor(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    config = tmp_path / "tunewatch.yaml"
    raw = {"data_dir": str(tmp_path / "data"), "models": [{"name": MODEL, "task": "binary"}]}
    config.write_text(yaml.safe_dump(raw))
    features = list(trained[0].metadata.feature_names)
    (tmp_path / "data").mkdir()
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as s:
        s.ensure_model(name=MODEL, task="binary", feature_names=features)
    args = ["--config", str(config), "--actor", "alice", "retune", MODEL, "--reason", "weekly"]
    assert main(args) == 0
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as s:
        [job] = s.list_jobs()
        [entry] = s.audit_log(action="request_retune")
    assert job.trigger == {"event": "manual", "reason": "weekly", "actor": "alice"}
    assert (entry.actor, entry.details["job"]) == ("alice", job.id)


def test_a_retune_on_the_command_line_that_only_notifies_exits_1(
    tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """`manual` set to `do: notify` queues no job: exit 1, as the API's 409 (it exited 0,
    the outcome `taken`, with nothing queued)."""
    config = tmp_path / "tunewatch.yaml"
    model = {"name": MODEL, "task": "binary", "triggers": [{"on": "manual", "do": "notify"}]}
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "models": [model]}))
    (tmp_path / "data").mkdir()
    features = list(trained[0].metadata.feature_names)
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as s:
        s.ensure_model(name=MODEL, task="binary", feature_names=features)
    assert main(["--config", str(config), "--actor", "alice", "retune", MODEL]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "notify" in captured.err
