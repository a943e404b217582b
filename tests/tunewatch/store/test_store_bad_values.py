"""Values the database cannot hold are a caller's error (400), not a store failure (500),
and both backends agree on them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tunewatch._errors import InvalidValueError, NotFoundError
from tunewatch.store import MAX_ACTOR_LENGTH, Store, valid_actor
from tunewatch.store._schema import alert_episodes, approvals, audit_entries, events


@pytest.mark.parametrize("name", ["a\x00b", "x" * 201, ""])
def test_a_model_name_the_store_cannot_hold_is_refused_as_a_value_error(
    model_store: Store, name: str
) -> None:
    with pytest.raises(ValueError):
        model_store.ensure_model(name=name, task="binary", feature_names=["a"])


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000])
def test_looking_up_an_impossible_name_finds_nothing_or_is_a_value_error(
    model_store: Store, name: str
) -> None:
    with pytest.raises((NotFoundError, ValueError)):
        model_store.get_model(name)


def test_a_model_named_before_names_could_not_be_paths_is_still_found(model_store: Store) -> None:
    """Names with `/` are refused for new models; one registered before stayed listed but
    could not be looked up, which stopped the daemon from starting."""
    from datetime import UTC, datetime

    from tunewatch.store._schema import models

    with model_store.engine.begin() as conn:
        conn.execute(
            models.insert().values(
                name="team/credit",
                task="binary",
                feature_names=["a"],
                regulated=False,
                created_at=datetime.now(UTC),
            )
        )
    assert model_store.get_model("team/credit").name == "team/credit"


def test_the_actor_limit_is_the_length_of_every_column_that_names_an_actor() -> None:
    """The CLI refuses an `--actor` past ``MAX_ACTOR_LENGTH`` before writing: the limit
    must be the columns' own, or PostgreSQL refuses an audit entry the check let through."""
    columns = (audit_entries.c.actor, approvals.c.requested_by, approvals.c.decided_by)
    assert [getattr(c.type, "length", None) for c in columns] == [MAX_ACTOR_LENGTH] * 3
    assert valid_actor("a" * MAX_ACTOR_LENGTH) and not valid_actor("a" * (MAX_ACTOR_LENGTH + 1))
    assert not valid_actor("") and not valid_actor("ops\n")


@pytest.mark.parametrize("field", ["dataset_version", "study"])
@pytest.mark.parametrize(
    "value", ["d" * 201, "a\x00b", "\ud800"], ids=["too-long", "nul", "unpaired-surrogate"]
)
def test_a_version_text_the_store_cannot_hold_is_refused_on_both_backends(
    model_store: Store, field: str, value: str
) -> None:
    """SQLite took a `dataset_version` of 300 characters or with a NUL that PostgreSQL
    refused, and neither driver could encode an unpaired surrogate (a `UnicodeEncodeError`
    escaped the store): a bundle checked on one backend failed half-way on the other."""
    with pytest.raises(InvalidValueError, match=f"`{field}` must be at most 200 characters"):
        model_store.add_version(
            model="m",
            artefact_sha256="a" * 64,
            hyperparameters={},
            size_bytes=1,
            actor="t",
            **{field: value},
        )
    assert model_store.list_versions("m") == []
    assert model_store.audit_log(limit=5) == []
    row = model_store.add_version(
        model="m",
        artefact_sha256="a" * 64,
        hyperparameters={},
        size_bytes=1,
        actor="t",
        **{field: "é" * 200},  # characters, not bytes
    )
    assert getattr(row, field) == "é" * 200


_NUL_WRITES: dict[str, Callable[[Store], object]] = {
    "event": lambda s: s.add_event(model="m", type="alert_received", payload={"x": ["a\x00b"]}),
    "job-trigger": lambda s: s.create_job(
        model="m", kind="retune", trigger={"labels": {"no\x00te": "b"}}, spec={}
    ),
    "alert-labels": lambda s: s.claim_alert_episode(
        fingerprint="fp", starts_at="t0", model="m", alertname="A", labels={"note": "a\x00b"}
    ),
}


@pytest.mark.parametrize("write", list(_NUL_WRITES.values()), ids=list(_NUL_WRITES))
def test_a_json_value_holding_a_nul_is_refused_on_both_backends(
    model_store: Store, write: Callable[[Store], object]
) -> None:
    """PostgreSQL's `json` stored a NUL (as \\u0000) that `->>` cannot read back: every
    query reading a field of the row (a model's last action, each evaluation run) failed
    from then on. SQLite held it, so the backends disagreed too."""
    with pytest.raises(InvalidValueError, match="NUL"):
        write(model_store)
    assert model_store.list_events(model="m") == []
    assert model_store.list_jobs(model="m") == []
    with model_store.engine.begin() as conn:
        assert conn.execute(select(alert_episodes)).first() is None


def test_a_nul_stored_before_it_was_refused_does_not_break_the_last_action(
    model_store: Store,
) -> None:
    """A row written before the store refused NULs: PostgreSQL's planner read the trigger
    out of every event of the model, that row too, before it filtered on the type."""
    with model_store.engine.begin() as conn:
        conn.execute(
            events.insert().values(
                model="m",
                type="alert_received",
                payload={"trigger": "a\x00b", "labels": {"note": "a\x00b"}},
                created_at=datetime.now(UTC),
            )
        )
    model_store.add_event(model="m", type="action_taken", payload={"trigger": "drift_detected"})
    outcomes = ["taken", "duplicate", "none", "refused", "pending_approval", "suppressed"]
    last = model_store.last_action("m", trigger="drift_detected", outcomes=outcomes)
    assert last is not None and last.payload["trigger"] == "drift_detected"
    assert model_store.last_action("m", trigger="decay_detected", outcomes=outcomes) is None
