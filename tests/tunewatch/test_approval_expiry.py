"""``approvals.expire_after_days``: the setting, and the scheduler leader's hourly closing of
expired approval requests (:mod:`tunewatch._approval_expiry`). A request stayed pending,
and approvable, for ever."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tunewatch import ConfigError, build_config
from tunewatch._approval_expiry import (
    EXPIRY_INTERVAL_S,
    EXPIRY_TASK,
    expire_approvals,
    expiry_task,
)
from tunewatch._scheduler import Scheduler
from tunewatch.store import Store


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """Model ``m``: v1 champion, v2 in shadow with a pending request to promote it."""
    s = Store.open(sqlite_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    for i, stage in enumerate(("champion", "shadow"), start=1):
        s.add_version(
            model="m",
            artefact_sha256=f"{i:064d}",
            hyperparameters={"C": i},
            size_bytes=10,
            actor="ci",
            stage=stage,
        )  # type: ignore[arg-type]
    s.request_approval("m", 2, requested_by="alice", reason="it won", rules=["regulated"])
    try:
        yield s
    finally:
        s.close()


def test_requests_expire_after_thirty_days_unless_set_otherwise() -> None:
    assert build_config({}, env={}).approvals.expire_after_days == 30
    never = build_config({"approvals": {"expire_after_days": None}}, env={})
    assert never.approvals.expire_after_days is None
    assert build_config({"approvals": {"expire_after_days": 0.5}}, env={}).approvals == (
        type(never.approvals)(expire_after_days=0.5)
    )


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (0, "approvals.expire_after_days: Input should be greater than 0, got 0"),
        (-3, "approvals.expire_after_days: Input should be greater than 0, got -3"),
        (True, "approvals.expire_after_days: Input should be a number, not a flag, got True"),
    ],
    ids=["zero", "negative", "flag"],
)
def test_a_limit_that_is_not_a_positive_number_of_days_is_refused_naming_it(
    value: object, said: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"approvals": {"expire_after_days": value}}, env={})
    assert said in info.value.message


def test_a_misspelt_approvals_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"approvals\.expire_days: Extra inputs"):
        build_config({"approvals": {"expire_days": 3}}, env={})


def test_the_leader_sweeps_hourly_whatever_its_own_limit(tmp_path: Path, store: Store) -> None:
    for days in (30, None):
        task = expiry_task(store, days)
        assert (task.name, task.interval_s) == (EXPIRY_TASK, EXPIRY_INTERVAL_S)
        raw = {"data_dir": str(tmp_path), "approvals": {"expire_after_days": days}}
        scheduler = Scheduler(store=store, config=build_config(raw, env={}), jobs=[])
        assert EXPIRY_TASK in [t.name for t in scheduler.tasks]
    assert (EXPIRY_TASK, EXPIRY_INTERVAL_S) == ("expire_approvals", 3600)


def test_a_leader_setting_no_limit_closes_requests_past_the_deadline_they_were_made_under(
    store: Store,
) -> None:
    """A request keeps the deadline of the limit it was made under: a leader whose config
    sets none (``null``) ran no sweep, and such a request stayed pending, offered for
    approval in the listing and the dashboard, past its ``expires_at``."""
    store.add_version(
        model="m", artefact_sha256=f"{3:064d}", hyperparameters={"C": 3}, size_bytes=10, actor="ci"
    )
    stamped = store.request_approval(
        "m", 3, requested_by="alice", reason="it won", rules=["regulated"], expire_after_days=7
    )
    [unstamped] = [a for a in store.list_approvals(status="pending") if a.id != stamped.id]
    later = stamped.created_at + timedelta(days=8)
    task = expiry_task(store, None, now=lambda: later)
    task.run()
    closed = store.get_approval(stamped.id)
    assert (closed.status, closed.decided_by) == ("rejected", "tunewatch")
    assert "past the 7-day limit it was made under" in (closed.decision_reason or "")
    assert store.get_approval(unstamped.id).status == "pending"  # no limit applies to it


def test_the_sweep_closes_an_expired_request_as_the_daemon(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    [pending] = store.list_approvals(status="pending")
    assert expire_approvals(store, expire_after_days=30, now=lambda: pending.created_at) == []
    later = pending.created_at + timedelta(days=45)
    task = expiry_task(store, 30, now=lambda: later)
    with caplog.at_level("INFO", logger="tunewatch._approval_expiry"):
        task.run()
    closed = store.get_approval(pending.id)
    assert (closed.status, closed.decided_by) == ("rejected", "tunewatch")
    assert closed.decision_reason == (
        "not promoted: requested 45 days ago; approvals.expire_after_days is 30 (it won)"
    )
    assert store.champion("m").version == 1  # type: ignore[union-attr]
    assert [r.getMessage() for r in caplog.records] == [
        f"approval={pending.id} model=m version=2 closed unpromoted by 'tunewatch': "
        f"{closed.decision_reason!r}"
    ]
