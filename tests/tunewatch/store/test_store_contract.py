"""Contract suite: every test runs against SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.conftest import PG_BASE_URL
from tests.tunewatch.conftest import break_audit_appends
from tunewatch._errors import (
    ConflictError,
    InvalidValueError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from tunewatch.store import (
    LabelItem,
    OutputRecord,
    RequestRecord,
    Store,
    VersionRow,
    hyperparameter_set_id,
)
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._schema import labels

SHA = "ab" * 32


def _register(store: Store, model: str = "m", **kw: Any) -> VersionRow:
    kw.setdefault("hyperparameters", {"C": 1.0})
    return store.add_version(model=model, artefact_sha256=SHA, size_bytes=100, actor="alice", **kw)


def _request(rid: str, *, rows: int = 2, model: str = "m") -> RequestRecord:
    matrix = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    return RequestRecord(
        model=model,
        request_id=rid,
        received_at=datetime.now(UTC),
        source="infer",
        n_rows=rows,
        n_cols=2,
        inputs=matrix.tobytes(order="C"),
    )


def _output(rid: str, version: int = 1, *, model: str = "m") -> OutputRecord:
    values = np.array([[0.25], [0.75]], dtype=np.float32)
    return OutputRecord(
        model=model,
        request_id=rid,
        version=version,
        role="champion",
        latency_s=0.002,
        n_rows=2,
        n_cols=1,
        values=values.tobytes(),
    )


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- models ------------------------------------------------------------------------------


def test_ensure_model_inserts_once_and_never_changes_the_model(store: Store) -> None:
    """A registration racing the model's first one overwrote its task, features and
    regulated flag, unaudited: the model a regulated team registered became unregulated."""
    first = store.ensure_model(name="m", task="binary", feature_names=["a", "b"], regulated=True)
    second = store.ensure_model(name="m", task="multiclass", feature_names=["a", "b", "c"])
    assert (first.task, first.feature_names, first.regulated) == ("binary", ("a", "b"), True)
    assert second == first
    assert [m.name for m in store.list_models()] == ["m"]


def test_unknown_model_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        store.get_model("nope")
    with pytest.raises(NotFoundError):
        _register(store, model="nope")


def test_invalid_task_is_refused_with_the_valid_choices(store: Store) -> None:
    with pytest.raises(ValueError, match="binary, multiclass, regression"):
        store.ensure_model(name="m", task="ranking", feature_names=[])  # type: ignore[arg-type]


# -- versions and stages -----------------------------------------------------------------


def test_versions_are_numbered_per_model_and_carry_their_hyperparameters(
    model_store: Store,
) -> None:
    model_store.ensure_model(name="other", task="regression", feature_names=["x"])
    v1 = _register(model_store, hyperparameters={"C": 1.0, "penalty": "l2"})
    v2 = _register(
        model_store,
        hyperparameters={"penalty": "l2", "C": 1.0},
        dataset_version="ds1",
        parent_version=1,
        study="s1",
        details={"cv_scores": [0.8, 0.82], "parity_error": 1e-6},
        load_memory_bytes=2048,
    )
    other = _register(model_store, model="other")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.hyperparameter_set_id == v2.hyperparameter_set_id
    assert v1.hyperparameter_set_id == hyperparameter_set_id({"C": 1.0, "penalty": "l2"})
    assert v2.hyperparameters == {"C": 1.0, "penalty": "l2"}
    assert (v2.dataset_version, v2.parent_version, v2.study) == ("ds1", 1, "s1")
    assert v2.details == {"cv_scores": [0.8, 0.82], "parity_error": 1e-6}
    assert (v2.size_bytes, v2.load_memory_bytes, v2.stage) == (100, 2048, "shadow")
    assert model_store.get_version("m", 2) == v2
    assert [v.version for v in model_store.list_versions("m")] == [1, 2]
    with pytest.raises(NotFoundError):
        model_store.get_version("m", 3)
    assert model_store.get_versions("m", [2, 1, 2]) == [v1, v2]
    assert model_store.get_versions("other", [1]) == [other]
    with pytest.raises(NotFoundError, match="has no version 3, 4"):
        model_store.get_versions("m", [4, 1, 3])


def test_a_second_champion_cannot_be_registered_only_promoted(model_store: Store) -> None:
    """Registering straight into champion would skip the approvals promotion applies."""
    v1 = _register(model_store, stage="champion")
    audit_before = len(model_store.audit_log(limit=100))
    with pytest.raises(ConflictError) as info:
        _register(model_store, stage="champion")
    assert info.value.code == "champion_exists"
    assert model_store.champion("m") == v1
    assert [v.version for v in model_store.list_versions("m")] == [1]
    assert len(model_store.audit_log(limit=100)) == audit_before


def test_a_regulated_model_gets_no_champion_by_registration(model_store: Store) -> None:
    """The approval rule was checked only before the candidate's slow sandboxed load: a
    model regulated meanwhile got a champion no approver saw. Checked under the lock."""
    model_store.regulate_model("m", actor="bob", reason="regulated meanwhile")
    audit_before = len(model_store.audit_log(limit=100))
    with pytest.raises(ConflictError) as info:
        _register(model_store, stage="champion")
    assert info.value.code == "approval_required"
    assert "'m' is regulated" in info.value.message and "promote" in info.value.message
    assert model_store.champion("m") is None and model_store.list_versions("m") == []
    assert len(model_store.audit_log(limit=100)) == audit_before
    assert _register(model_store).stage == "shadow"  # a shadow is promoted, with approval


def test_a_version_can_be_registered_retired_in_one_step(model_store: Store) -> None:
    """A bundle's version its source retired was registered in shadow and retired in a
    second transaction: should that fail, it stayed a live challenger, and a repeated
    import found it present and left it so. A retired registration makes no champion,
    needs no approver, and is audited like any other."""
    model_store.regulate_model("m", actor="bob", reason="regulated")
    retired = _register(model_store, stage="retired")
    assert retired.stage == "retired"
    assert model_store.champion("m") is None
    assert model_store.list_versions("m", stage="shadow") == []
    entry = model_store.audit_log(limit=1)[0]
    assert (entry.action, entry.target) == ("register_version", "m/v1")
    assert entry.details["stage"] == "retired"
    # a regulated model's version is promoted through an approval, a retired one too
    request = model_store.request_approval(
        "m", 1, requested_by="bob", reason="later", rules=["regulated model"]
    )
    _, promoted = model_store.decide_approval(
        request.id, approver="carol", approve=True, reason="checked"
    )
    assert promoted is not None and promoted[0].stage == "champion"
    with pytest.raises(ValueError, match="shadow, champion, retired; got 'rolled_back'"):
        _register(model_store, stage="rolled_back")


def test_a_study_registers_once_when_asked_and_under_the_model_lock(model_store: Store) -> None:
    first = _register(model_store, study="m-job1", once_per_study=True)
    with pytest.raises(ConflictError) as info:
        _register(model_store, study="m-job1", once_per_study=True)
    assert info.value.code == "study_registered" and "version 1" in info.value.message
    assert _register(model_store, study="m-job1").version == 2  # a manual registration
    assert _register(model_store, study="m-job2", once_per_study=True).version == 3
    assert model_store.get_version("m", 1) == first


@pytest.mark.parametrize(
    "parent",
    [
        pytest.param(99, id="a-version-no-model-has"),
        pytest.param(3, id="the-new-version-itself"),
        pytest.param(4, id="a-version-only-another-model-has"),
    ],
)
def test_a_version_s_parent_must_be_an_earlier_version_of_its_model(
    model_store: Store, parent: int
) -> None:
    """A parent was stored unchecked: a version no model had, the version itself, or one
    another model had, which lineage reports showed as the parent (and read in loops)."""
    model_store.ensure_model(name="other", task="binary", feature_names=["a", "b"])
    for _ in range(4):
        _register(model_store, model="other")
    _register(model_store)
    _register(model_store, parent_version=1)
    audit_before = len(model_store.audit_log(limit=100))
    with pytest.raises(InvalidValueError) as info:
        _register(model_store, parent_version=parent)
    assert info.value.code == "invalid_value"
    assert info.value.message == (
        f"`parent_version` must be an earlier version of model 'm' (1 to 2), got {parent}"
    )
    assert [v.version for v in model_store.list_versions("m")] == [1, 2]
    assert len(model_store.audit_log(limit=100)) == audit_before
    assert _register(model_store, parent_version=2).parent_version == 2


def test_a_first_version_has_no_parent_to_name(model_store: Store) -> None:
    with pytest.raises(InvalidValueError, match=r"of model 'm' \(it has none yet\), got 1"):
        _register(model_store, parent_version=1)
    assert model_store.list_versions("m") == []


def test_second_champion_is_refused_by_the_database(model_store: Store) -> None:
    _register(model_store, stage="champion")
    _register(model_store)
    with pytest.raises(IntegrityError), model_store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE model_versions SET stage = 'champion' WHERE model = 'm' AND version = 2"
            )
        )
    assert model_store.champion("m") is not None
    assert model_store.champion("m").version == 1  # type: ignore[union-attr]


def test_promote_swaps_champion_and_records_audit_and_event(model_store: Store) -> None:
    _register(model_store, stage="champion")
    _register(model_store)
    new, old = model_store.promote("m", 2, actor="bob", reason="better recall")
    assert (new.version, new.stage) == (2, "champion")
    assert old is not None and (old.version, old.stage) == (1, "retired")
    assert new.stage_changed_at >= new.created_at
    event = model_store.list_events(model="m", type="promoted")[0]
    assert event.payload == {
        "version": 2,
        "previous": 1,
        "reason": "better recall",
        "champion_runs": {"runs": 0, "failures": 0},  # the rollback watch counts from here
    }
    entry = model_store.audit_log(limit=1)[0]
    assert (entry.actor, entry.action, entry.target) == ("bob", "promote", "m/v2")
    assert model_store.verify_audit() is None


def test_promote_without_a_champion_returns_no_previous(model_store: Store) -> None:
    _register(model_store)
    new, old = model_store.promote("m", 1, actor="bob", reason="first")
    assert new.stage == "champion" and old is None


def test_promote_refuses_rolled_back_and_current_champion(model_store: Store) -> None:
    _register(model_store, stage="champion")
    _register(model_store)
    model_store.set_stage("m", 2, "rolled_back", actor="bob", reason="bad latency")
    with pytest.raises(ConflictError, match="rolled back"):
        model_store.promote("m", 2, actor="bob", reason="retry")
    with pytest.raises(ConflictError, match="already the champion"):
        model_store.promote("m", 1, actor="bob", reason="again")
    assert model_store.champion("m").version == 1  # type: ignore[union-attr]


def test_promote_rolls_back_entirely_when_its_audit_append_fails(model_store: Store) -> None:
    _register(model_store, stage="champion")
    _register(model_store)
    events_before = model_store.list_events()
    break_audit_appends(model_store)
    with pytest.raises(StoreError):
        model_store.promote("m", 2, actor="bob", reason="x")
    assert model_store.champion("m").version == 1  # type: ignore[union-attr]
    assert model_store.get_version("m", 2).stage == "shadow"
    assert model_store.list_events() == events_before


def test_set_stage_records_rollback_and_refuses_champion(model_store: Store) -> None:
    _register(model_store)
    row = model_store.set_stage("m", 1, "rolled_back", actor="bob", reason="parity")
    assert row.stage == "rolled_back"
    assert model_store.list_events(type="stage_changed")[0].payload["previous_stage"] == "shadow"
    assert model_store.audit_log(limit=1)[0].action == "set_stage"
    with pytest.raises(ValueError, match="promote"):
        model_store.set_stage("m", 1, "champion", actor="bob", reason="x")  # type: ignore[arg-type]


def test_version_numbers_are_unique_under_concurrent_registration(model_store: Store) -> None:
    per_thread = 5
    results: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(per_thread):
            row = _register(model_store, hyperparameters={"C": float(i * 10 + j)})
            with lock:
                results.append(row.version)

    _run_threads(4, work)
    assert sorted(results) == list(range(1, 4 * per_thread + 1))
    assert model_store.verify_audit() is None
    assert len(model_store.audit_log(limit=1000)) == 4 * per_thread


# -- scoring log -------------------------------------------------------------------------


def test_write_records_round_trips_matrices_and_metadata(model_store: Store) -> None:
    request, output = _request("r1", rows=3), _output("r1")
    assert model_store.write_records([request], [output]) == [True]
    stored = model_store.get_request("m", "r1")
    assert stored == request
    assert stored is not None
    matrix = np.frombuffer(stored.inputs, dtype=np.float32).reshape(stored.n_rows, stored.n_cols)
    assert matrix[2, 1] == 5.0
    assert model_store.get_outputs("m", "r1") == [output]
    assert model_store.get_request("m", "missing") is None


def test_write_records_reports_duplicates_and_skips_their_outputs(model_store: Store) -> None:
    assert model_store.write_records([_request("r1"), _request("r2")], [_output("r1")]) == [
        True,
        True,
    ]
    flags = model_store.write_records(
        [_request("r1"), _request("r3"), _request("r3")],
        [_output("r1", version=2), _output("r3"), _output("r2", version=2)],
    )
    assert flags == [False, True, False]
    assert model_store.request_ids("m") == {"r1", "r2", "r3"}
    assert [o.version for o in model_store.get_outputs("m", "r1")] == [1]  # duplicate: skipped
    assert [o.version for o in model_store.get_outputs("m", "r2")] == [2]  # not in batch: kept
    assert model_store.count_outputs("m") == 3
    assert model_store.count_outputs("m", version=2) == 1


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 700])
def test_write_records_of_any_batch_size_keeps_every_row_once(model_store: Store, n: int) -> None:
    # Batches are written in power-of-two multi-row statements of at most 256 rows on
    # SQLite; sizes around and past the chunk edges must neither lose nor repeat a row.
    assert model_store.write_records([_request("old")], [_output("old")]) == [True]
    ids = [f"r{i:04d}" for i in range(n)]
    requests = [_request(r) for r in [*ids, "old", ids[-1]]]
    flags = model_store.write_records(
        requests,
        [_output(r) for r in ids] + [_output("old", version=2)],
        [_output(r, version=3) for r in ids],
    )
    assert flags == [True] * n + [False, False]
    assert model_store.request_ids("m") == {*ids, "old"}
    assert model_store.count_outputs("m", version=1) == n + 1
    assert model_store.count_outputs("m", version=2) == 0  # the replay's output: skipped
    assert model_store.count_outputs("m", version=3) == n
    assert model_store.get_request("m", ids[-1]) == requests[n - 1]


def test_shadow_outputs_may_arrive_before_their_request(model_store: Store) -> None:
    assert model_store.write_records([], [_output("later", version=2)]) == []
    assert model_store.write_records([], [_output("later", version=2)]) == []  # replay: ignored
    assert model_store.count_outputs("m", version=2) == 1
    assert model_store.write_records([_request("later")], [_output("later")]) == [True]
    assert [o.version for o in model_store.get_outputs("m", "later")] == [1, 2]


def test_external_records_are_read_back_by_id_in_chunks(model_store: Store) -> None:
    """The stored requests among the ids asked for, each with its outputs of role
    ``external`` (the serving stack's answer), read past one chunk of ids; ids not stored
    are left out, other models' rows and other roles' outputs too."""
    ids = [f"x{i:04d}" for i in range(501)]
    mirrored = [dataclasses.replace(_request(r), source="mirror") for r in ids]
    external = [dataclasses.replace(_output(r), role="external") for r in ids]
    scored = _request("scored")
    model_store.ensure_model(name="other", task="binary", feature_names=["a", "b"])
    model_store.write_records(
        [*mirrored, scored, _request(ids[0], model="other")],
        [*external, _output("scored"), _output(ids[0], model="other")],
        [_output(ids[-1], version=2)],  # a challenger's answer: not the serving stack's
    )
    found = model_store.get_external_records("m", [*ids, "scored", "missing"])
    assert sorted(found) == sorted([*ids, "scored"])
    assert found[ids[-1]] == (mirrored[-1], [external[-1]])
    assert found[ids[0]] == (mirrored[0], [external[0]])
    assert found["scored"] == (scored, [])
    assert model_store.get_external_records("m", []) == {}


def test_concurrent_write_records_with_same_ids_insert_once(model_store: Store) -> None:
    ids = [f"r{i:03d}" for i in range(60)]
    flags: list[list[bool]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        order = ids if i % 2 == 0 else list(reversed(ids))
        for start in range(0, len(order), 20):
            chunk = order[start : start + 20]
            result = model_store.write_records(
                [_request(r) for r in chunk], [_output(r) for r in chunk]
            )
            flags[i].extend(result)

    _run_threads(4, work)
    assert sum(sum(f) for f in flags) == len(ids)
    assert model_store.count_requests("m") == len(ids)
    assert model_store.count_outputs("m") == len(ids)


def test_timestamps_come_back_tz_aware_utc(model_store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    sent = datetime(2024, 6, 1, 12, 30, 15, 123456, tzinfo=paris)
    request = RequestRecord("m", "tz", sent, "mirror", 0, 2, b"")
    model_store.write_records([request], [])
    stored = model_store.get_request("m", "tz")
    assert stored is not None
    assert stored.received_at == sent
    assert stored.received_at.tzinfo == UTC
    assert stored.received_at.hour == 10
    for value in (
        model_store.get_model("m").created_at,
        _register(model_store).stage_changed_at,
        model_store.audit_log()[0].at,
        model_store.add_event(model=None, type="t", payload={}).created_at,
    ):
        assert value.tzinfo == UTC


def test_naive_datetimes_and_bad_matrices_are_refused_before_the_database() -> None:
    with pytest.raises(ValueError, match="received_at"):
        RequestRecord("m", "r", datetime(2024, 1, 1), "infer", 0, 2, b"")
    with pytest.raises(ValueError, match="8 bytes"):
        RequestRecord("m", "r", datetime.now(UTC), "infer", 1, 2, b"\0" * 4)
    with pytest.raises(ValueError, match="champion, challenger, external"):
        OutputRecord("m", "r", 1, "boss", None, 0, 1, b"")  # type: ignore[arg-type]


# -- labels ------------------------------------------------------------------------------


def test_labels_replay_with_same_value_is_duplicate(model_store: Store) -> None:
    model_store.write_records([_request("r1", rows=1), _request("r2")], [])
    first = model_store.add_labels("m", [LabelItem("r1", 1), LabelItem("r2", [0.5, 1.5], 3.0)])
    replay = model_store.add_labels(
        "m", [LabelItem("r1", 1.0), LabelItem("r2", [0.5, 1.5], 3.0), LabelItem("r1", 1)]
    )
    assert first == ["created", "created"]
    assert replay == ["duplicate", "duplicate", "duplicate"]
    label = model_store.get_label("m", "r2")
    assert label is not None and (label.value, label.outcome) == ([0.5, 1.5], 3.0)
    assert label.received_at.tzinfo == UTC


# SQLite's own text-to-REAL conversion rounds these 1 ulp off (Python's is exact).
_HARD_FLOATS = (2.434619594169251, 5.463067962873653e-09, 3.513967440118033e220)


def test_a_scalar_label_replays_as_a_duplicate_and_reads_back_exactly(model_store: Store) -> None:
    """SQLite gave the JSON ``value`` column NUMERIC affinity: a scalar label's JSON text
    became a REAL by SQLite's parser, off by 1 ulp, and its replay was a conflict."""
    ids = [f"r{i}" for i in range(len(_HARD_FLOATS))]
    model_store.write_records([_request(r, rows=1) for r in ids], [])
    items = [LabelItem(r, v) for r, v in zip(ids, _HARD_FLOATS, strict=True)]
    assert model_store.add_labels("m", items) == ["created"] * len(ids)
    assert model_store.add_labels("m", items) == ["duplicate"] * len(ids)
    for rid, sent in zip(ids, _HARD_FLOATS, strict=True):
        label = model_store.get_label("m", rid)
        assert label is not None and isinstance(label.value, float)
        assert label.value.hex() == sent.hex()


def test_labels_conflict_and_unknown_requests_change_nothing(model_store: Store) -> None:
    model_store.write_records([_request("r1", rows=1)], [])
    statuses = model_store.add_labels(
        "m",
        [
            LabelItem("r1", 1),
            LabelItem("r1", 0),
            LabelItem("r1", 1, outcome=9.0),
            LabelItem("x", 1),
        ],
    )
    assert statuses == ["created", "conflict", "conflict", "unknown_request"]
    label = model_store.get_label("m", "r1")
    assert label is not None and (label.value, label.outcome) == (1.0, None)
    assert model_store.get_label("m", "x") is None


def test_concurrent_duplicate_label_submissions_create_once(model_store: Store) -> None:
    ids = [f"r{i}" for i in range(30)]
    model_store.write_records([_request(r, rows=1) for r in ids], [])
    results: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        results[i] = list(model_store.add_labels("m", [LabelItem(r, 1.0) for r in ids]))

    _run_threads(4, work)
    created = [sum(s == "created" for s in r) for r in results]
    assert sum(created) == len(ids)
    assert all(s in ("created", "duplicate") for r in results for s in r)


# -- events, audit -----------------------------------------------------------------------


def test_events_are_listed_newest_first_and_filtered(store: Store) -> None:
    store.add_event(model="m", type="drift", payload={"psi": 0.3})
    store.add_event(model=None, type="startup", payload={})
    store.add_event(model="m", type="drift", payload={"psi": 0.4})
    assert [e.type for e in store.list_events()] == ["drift", "startup", "drift"]
    assert [e.payload["psi"] for e in store.list_events(model="m", type="drift")] == [0.4, 0.3]
    assert len(store.list_events(limit=1)) == 1


def test_last_action_is_the_newest_of_the_given_outcomes_for_that_trigger(store: Store) -> None:
    def action(outcome: str, trigger: str, model: str = "m") -> int:
        payload = {"action": "retune", "trigger": trigger, "reason": "r", "job": None}
        return store.add_event(model=model, type=f"action_{outcome}", payload=payload).id

    assert store.last_action("m", trigger="drift_detected", outcomes=("taken",)) is None
    taken = action("taken", "drift_detected")
    action("suppressed", "drift_detected")
    action("taken", "decay_detected")
    action("taken", "drift_detected", model="other")
    store.add_event(model="m", type="drift_detected", payload={"trigger": "drift_detected"})
    last = store.last_action("m", trigger="drift_detected", outcomes=("taken", "none"))
    assert last is not None and last.id == taken
    none = action("none", "drift_detected")
    last = store.last_action("m", trigger="drift_detected", outcomes=("taken", "none"))
    assert last is not None and last.id == none


def test_audit_entries_chain_from_zero_hash(store: Store) -> None:
    a = store.append_audit(actor="alice", action="login", target="ui", details={"n": 1})
    b = store.append_audit(actor="bob", action="retune", target="m", details={"k": (1, 2)})
    assert a.prev_hash == "0" * 64
    assert b.prev_hash == a.hash
    assert b.details == {"k": [1, 2]}
    assert store.audit_log() == [b, a]
    assert store.verify_audit() is None


def test_audit_rows_cannot_be_updated_or_deleted(store: Store) -> None:
    entry = store.append_audit(actor="alice", action="x", target="t", details={})
    for sql in (
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
    ):
        with pytest.raises(IntegrityError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text(sql))
    assert store.audit_log() == [entry]


def test_audit_chain_detects_tampering(store: Store) -> None:
    entries = [
        store.append_audit(actor="alice", action="a", target="t", details={"i": i})
        for i in range(3)
    ]
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(sa.text("DROP TRIGGER audit_entries_no_update"))
        else:
            conn.execute(sa.text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        conn.execute(
            sa.text("UPDATE audit_entries SET actor = 'mallory' WHERE id = :id"),
            {"id": entries[1].id},
        )
    broken = store.verify_audit()
    assert broken is not None and (broken.kind, broken.entry_id) == ("hash", entries[1].id)


# -- tokens and availability ---------------------------------------------------------------


def test_tokens_are_looked_up_by_hash_until_revoked(store: Store) -> None:
    token = store.add_token(name="ci", role="operator", token_hash="1" * 64, actor="alice")
    store.add_token(name="ro", role="viewer", token_hash="2" * 64, actor="alice")
    with pytest.raises(ConflictError):
        store.add_token(name="ci", role="viewer", token_hash="3" * 64, actor="alice")
    assert store.token_by_hash("1" * 64) == token
    revoked = store.revoke_token("ci", actor="bob")
    assert revoked.revoked_at is not None and revoked.revoked_at.tzinfo == UTC
    assert store.token_by_hash("1" * 64) is None
    assert [t.name for t in store.list_tokens()] == ["ci", "ro"]
    with pytest.raises(NotFoundError):
        store.revoke_token("nope", actor="bob")


def test_token_changes_are_audited_in_their_own_transaction(store: Store) -> None:
    store.add_token(
        name="ci", role="operator", token_hash="1" * 64, actor="alice", details={"via": "cli"}
    )
    store.revoke_token("ci", actor="bob", details={"reason": "leaked"})
    entries = [(e.actor, e.action, e.target, e.details) for e in store.audit_log(target="ci")]
    assert entries == [
        ("bob", "revoke_token", "ci", {"reason": "leaked"}),
        ("alice", "create_token", "ci", {"role": "operator", "via": "cli"}),
    ]
    assert store.verify_audit() is None


def test_a_token_change_whose_audit_append_fails_is_not_made(store: Store) -> None:
    """Tokens were stored (or revoked) in one transaction and audited in a second: a
    failing append left an active, unaudited token whose name was taken."""
    store.add_token(name="old", role="admin", token_hash="1" * 64, actor="alice")
    break_audit_appends(store)
    with pytest.raises(StoreError):
        store.add_token(name="new", role="admin", token_hash="2" * 64, actor="alice")
    with pytest.raises(StoreError):
        store.revoke_token("old", actor="alice")
    assert [(t.name, t.revoked_at) for t in store.list_tokens()] == [("old", None)]
    assert store.token_by_hash("2" * 64) is None


def test_ping_succeeds_on_a_reachable_database(store: Store) -> None:
    store.ping()
    assert store.dialect in ("sqlite", "postgresql")


def test_closed_postgres_port_raises_store_unavailable() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/test")
    try:
        with pytest.raises(StoreUnavailableError):
            store.ping()
        with pytest.raises(StoreUnavailableError):
            store.migrate()
    finally:
        store.close()


def test_set_stage_refuses_the_champion_and_a_rolled_back_version(model_store: Store) -> None:
    _register(model_store, stage="champion")
    _register(model_store)
    with pytest.raises(ConflictError) as info:
        model_store.set_stage("m", 1, "retired", actor="bob", reason="x")
    assert info.value.code == "champion_cannot_retire"
    model_store.set_stage("m", 2, "rolled_back", actor="bob", reason="bad latency")
    with pytest.raises(ConflictError) as info:
        model_store.set_stage("m", 2, "retired", actor="bob", reason="tidy up")
    assert info.value.code == "rolled_back_is_final"
    assert [v.stage for v in model_store.list_versions("m")] == ["champion", "rolled_back"]


def test_a_label_stored_before_normalisation_still_replays_as_a_duplicate(
    model_store: Store,
) -> None:
    """Labels used to be stored as sent: a one-row request's ``[1.0]``. Compared with the
    normalised replay (``1.0``) it was a conflict."""
    model_store.write_records([_request("old", rows=1), _request("pair")], [])
    with model_store.engine.begin() as conn:
        conn.execute(
            labels.insert(),
            [
                {
                    "model": "m",
                    "request_id": "old",
                    "value": [1.0],
                    "outcome": None,
                    "received_at": datetime.now(UTC),
                },
                {
                    "model": "m",
                    "request_id": "pair",
                    "value": [-0.0, 1.0],
                    "outcome": 2,
                    "received_at": datetime.now(UTC),
                },
            ],
        )
    statuses = model_store.add_labels(
        "m",
        [
            LabelItem("old", [1]),
            LabelItem("old", 1),
            LabelItem("pair", [0.0, 1.0], 2.0),
            LabelItem("old", 0),
        ],
    )
    assert statuses == ["duplicate", "duplicate", "duplicate", "conflict"]


def test_the_audit_log_of_a_model_matches_its_name_exactly(store: Store) -> None:
    """SQLite's LIKE ignores case: `CREDIT`'s trail held `credit`'s entries."""
    for target in ("credit/v3", "credit", "credit:x", "credit_eu/v1", "creditor/v1"):
        store.append_audit(actor="alice", action="promote", target=target, details={})
    assert store.audit_log(model="CREDIT") == []
    assert store.audit_facets("CREDIT") == ([], [])
    found = {a.target for a in store.audit_log(model="credit")}
    assert found == {"credit/v3", "credit"}  # `credit:x` names another model or a token
    assert {a.target for a in store.audit_log(model="credit_eu")} == {"credit_eu/v1"}


def test_a_model_s_audit_trail_leaves_out_models_and_tokens_whose_names_extend_it(
    store: Store,
) -> None:
    """Targets beginning `credit:` or `credit@` counted as credit's, though nothing writes
    such a target for credit: model names may hold ':' and '@' and a token is audited under
    its own name, so credit's trail listed model credit:eu's versions and token credit@bot,
    and their actors among its filters."""
    for name in ("credit", "credit:eu"):
        store.ensure_model(name=name, task="binary", feature_names=["a", "b"])
    _register(store, "credit")
    store.add_version(
        model="credit:eu", artefact_sha256=SHA, hyperparameters={}, size_bytes=1, actor="eu-team"
    )
    store.add_token(name="credit@bot", role="viewer", token_hash="1" * 64, actor="admin")
    assert [a.target for a in store.audit_log(model="credit")] == ["credit/v1"]
    assert store.audit_facets("credit") == (["register_version"], ["alice"])
    assert [a.target for a in store.audit_log(model="credit:eu")] == ["credit:eu/v1"]


def test_a_model_s_audit_trail_leaves_out_a_token_named_like_it(store: Store) -> None:
    """A token is audited under its own name: `tunewatch tokens create credit` put its
    creation and revocation in model credit's trail, and admin among its actors."""
    store.ensure_model(name="credit", task="binary", feature_names=["a", "b"])
    _register(store, "credit")
    assert store.regulate_model("credit", actor="bob", reason="lending")
    store.add_token(name="credit", role="scorer", token_hash="2" * 64, actor="admin")
    store.revoke_token("credit", actor="admin")
    trail = [(a.action, a.target) for a in store.audit_log(model="credit")]
    assert trail == [("regulate_model", "credit"), ("register_version", "credit/v1")]
    assert store.audit_facets("credit") == (
        ["register_version", "regulate_model"],
        ["alice", "bob"],
    )
    assert [a.action for a in store.audit_log(target="credit")][:2] == [
        "revoke_token",
        "create_token",
    ]


def _timed_outputs(store: Store, version: int, latencies: list[float], start: datetime) -> None:
    """One output of ``version`` per latency, a second apart from ``start``."""
    store.write_records(
        [],
        [
            OutputRecord(
                model="m",
                request_id=f"v{version}-{i}",
                version=version,
                role="champion",
                latency_s=latency,
                n_rows=1,
                n_cols=1,
                values=np.zeros((1, 1), np.float32).tobytes(),
                created_at=start + timedelta(seconds=i),
            )
            for i, latency in enumerate(latencies)
        ],
    )


def test_latencies_of_some_versions_keep_only_the_newest_per_version(model_store: Store) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for version in (1, 2, 3):
        _timed_outputs(model_store, version, [version + i / 100 for i in range(10)], start)
    read = model_store.latencies("m", since=start + timedelta(seconds=2), versions=[1, 2], newest=4)
    assert sorted(read) == [1, 2]
    assert read[1].tolist() == pytest.approx([1.06, 1.07, 1.08, 1.09])
    assert read[2].tolist() == pytest.approx([2.06, 2.07, 2.08, 2.09])
    fewer = model_store.latencies("m", since=start + timedelta(seconds=8), versions=[3], newest=4)
    assert fewer[3].tolist() == pytest.approx([3.08, 3.09])
    everything = model_store.latencies("m", versions=[3])
    assert sorted(everything) == [3] and everything[3].size == 10


def _latencies_at(store: Store, version: int, seconds: list[float], start: datetime) -> None:
    """One output of ``version`` at each of ``seconds`` after ``start``; its latency is
    ``version + seconds / 100`` (so a value tells when it was recorded)."""
    store.write_records(
        [],
        [
            OutputRecord(
                model="m",
                request_id=f"v{version}-{s}",
                version=version,
                role="champion",
                latency_s=version + s / 100,
                n_rows=1,
                n_cols=1,
                values=np.zeros((1, 1), np.float32).tobytes(),
                created_at=start + timedelta(seconds=s),
            )
            for s in seconds
        ],
    )


def test_aligned_latencies_read_the_other_versions_over_the_same_period(
    model_store: Store,
) -> None:
    """The champion answers every second, the challenger every fourth: the challenger's
    newest 3 span 8 seconds, and the champion's newest 3 only 2 of them. Aligned, the
    champion's are read in each slice of the challenger's period (after its latency
    before those, or since ``since``), as many as the challenger's there."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    _latencies_at(model_store, 1, [float(s) for s in range(20)], start)
    _latencies_at(model_store, 2, [2.5, 6.5, 10.5, 14.5, 18.5], start)
    read = model_store.latencies("m", since=start, versions=[1, 2], newest=3, aligned_to=2)
    assert read[2].tolist() == pytest.approx([2.105, 2.145, 2.185])
    assert sorted(read[1].tolist()) == pytest.approx([1.10, 1.14, 1.18])
    every = model_store.latencies("m", since=start, versions=[1, 2], newest=10, aligned_to=2)
    assert every[2].size == 5
    assert sorted(every[1].tolist()) == pytest.approx([1.02, 1.06, 1.10, 1.14, 1.18])


def test_aligned_latencies_of_a_sparser_version_are_those_of_the_period(
    model_store: Store,
) -> None:
    """The champion answers every fourth second, the challenger every second: the
    champion's read are all it recorded in the challenger's period, none before it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    _latencies_at(model_store, 1, [0.0, 4.0, 8.0, 12.0, 16.0], start)
    _latencies_at(model_store, 2, [float(s) for s in range(1, 20)], start)
    read = model_store.latencies("m", since=start, versions=[1, 2], newest=7, aligned_to=2)
    assert read[2].size == 7  # seconds 13 to 19
    assert read[1].tolist() == pytest.approx([1.16])
    wider = model_store.latencies("m", since=start, versions=[1, 2], newest=8, aligned_to=2)
    assert sorted(wider[1].tolist()) == pytest.approx([1.12, 1.16])
    later = model_store.latencies(
        "m", since=start + timedelta(seconds=17), versions=[1, 2], newest=6, aligned_to=2
    )
    assert later[2].tolist() == pytest.approx([2.17, 2.18, 2.19])
    assert 1 not in later  # the champion recorded nothing since


def test_aligned_latencies_need_newest_and_one_of_the_versions(model_store: Store) -> None:
    with pytest.raises(ValueError, match="`aligned_to` needs `newest`"):
        model_store.latencies("m", versions=[1, 2], aligned_to=2)
    with pytest.raises(ValueError, match="`aligned_to` must be one of `versions`"):
        model_store.latencies("m", versions=[1, 2], newest=10, aligned_to=3)


def test_newest_latencies_without_versions_are_refused_with_the_field(
    model_store: Store,
) -> None:
    with pytest.raises(ValueError, match="`newest` needs `versions`"):
        model_store.latencies("m", newest=10)


# -- windows and tie-breaks ------------------------------------------------------------


def _rows_request(rid: str, at: datetime, rows: int) -> RequestRecord:
    return RequestRecord(
        model="m",
        request_id=rid,
        received_at=at,
        source="infer",
        n_rows=rows,
        n_cols=2,
        inputs=np.zeros((rows, 2), np.float32).tobytes(),
    )


def test_the_newest_n_keep_their_rows_when_requests_land_during_the_read(
    model_store: Store, store_url: str
) -> None:
    """`window(last_n=…)` reads the newest requests' sizes, then their rows: on
    PostgreSQL each statement sees its own commits, and 5 one-row requests committed in
    between pushed 5 of the 50-row requests out of a 500-row window (255 rows read)."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    batches = [_rows_request(f"b{i:03d}", t0 + timedelta(seconds=i), 50) for i in range(20)]
    model_store.write_records(batches, [])
    writer = Store.open(store_url)
    landed: list[str] = []

    def land_after_sizes(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not landed and "FROM requests" in statement and "JOIN" not in statement:
            now = datetime.now(UTC)
            singles = [_rows_request(f"s{i}", now + timedelta(milliseconds=i), 1) for i in range(5)]
            writer.write_records(singles, [])
            landed.extend(r.request_id for r in singles)

    sa.event.listen(model_store.engine, "after_cursor_execute", land_after_sizes)
    try:
        w = model_store.window("m", n_features=2, last_n=500, with_features=False)
    finally:
        sa.event.remove(model_store.engine, "after_cursor_execute", land_after_sizes)
        writer.close()
    assert landed, "the concurrent requests never landed: the sizes statement was not seen"
    assert 500 <= w.n_rows <= 500 + 50, f"window of last_n=500 read {w.n_rows} rows"
    assert {f"b{i:03d}" for i in range(10, 20)} <= set(w.request_ids)


# Byte order (SQLite's BINARY): "Beta" < "Zeta" < "alpha" < "gamma"; en-US would give
# alpha < Beta < gamma < Zeta.
_TIED_IDS = ["Zeta", "alpha", "Beta", "gamma"]


def _tied_reads(url: str) -> dict[str, tuple[str, ...]]:
    """What the limited reads take of four requests received, and labelled, at once."""
    store = Store.open(url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        _register(store, stage="champion")
        now = datetime.now(UTC)
        store.write_records(
            [_rows_request(r, now, 2) for r in _TIED_IDS], [_output(r) for r in _TIED_IDS]
        )
        store.add_labels("m", [LabelItem(r, [1.0, 0.0]) for r in _TIED_IDS])
        comparisons = ComparisonStore(store)
        later = now + timedelta(hours=1)
        return {
            "labelled": comparisons.read_labelled(model="m", answered_by=1, limit=2).request_ids,
            "labelled newest first": comparisons.read_labelled(
                model="m", answered_by=1, limit=2, newest_first=True
            ).request_ids,
            "matured": comparisons.read_labelled(
                model="m", answered_by=1, limit=2, matured_before=later
            ).request_ids,
            "matured newest first": comparisons.read_labelled(
                model="m", answered_by=1, limit=2, matured_before=later, newest_first=True
            ).request_ids,
            "window last_n": store.window("m", n_features=2, last_n=4).request_ids,
            "window": store.window("m", n_features=2).request_ids,
        }
    finally:
        store.close()


@pytest.mark.postgres
def test_ties_are_broken_in_byte_order_whatever_the_database_collation(
    pg_available: None, sqlite_url: str
) -> None:
    """Requests tied in time are taken in request-id byte order on both backends: under
    an en-US collation PostgreSQL ordered "alpha" before "Beta", so a look with a limit
    consumed other requests than on SQLite."""
    import psycopg

    name = f"tw_icu_{uuid.uuid4().hex[:12]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    try:
        icu = _tied_reads(sa.make_url(PG_BASE_URL).set(database=name).render_as_string(False))
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    assert icu == _tied_reads(sqlite_url)
    assert icu["labelled"] == ("Beta", "Zeta")
    assert icu["window last_n"] == ("alpha", "alpha", "gamma", "gamma")
