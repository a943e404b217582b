"""The retry of a retune a sample-ratio mismatch owes is keyed as its first dispatch was
(``srm:{model}:{salt}:{check id}``), so it queues no second job for the same episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tunewatch._actions import Dispatcher
from tunewatch._config import Config, build_config
from tunewatch._errors import StoreUnavailableError
from tunewatch._split import SplitConfig, check_split
from tunewatch.store import OutputRecord, RequestRecord, Store
from tunewatch.store import _events as event_rows
from tunewatch.store._comparisons import ComparisonStore

SPLIT = SplitConfig(challenger=2, percent=50.0, salt="exp-1")


def _config() -> Config:
    return build_config(
        {
            "tuning": {"max_concurrent_jobs": 1},
            "models": [
                {
                    "name": "a",
                    "task": "binary",
                    "triggers": [{"on": "srm_detected", "do": "retune", "cooldown_minutes": 0}],
                }
            ],
        },
        env={},
    )


@pytest.fixture
def store(store_with_model_a: Store) -> Store:
    return store_with_model_a


def _champion_answers(store: Store, units: range) -> None:
    """Requests of split units that only the champion (v1) answered: a broken split."""
    at = datetime.now(UTC)
    row = np.zeros((1, 1), np.float32).tobytes()
    answer = np.array([[0.5, 0.5]], np.float32).tobytes()
    store.write_records(
        [RequestRecord("a", f"r{i}", at, "infer", 1, 1, row, f"u{i}") for i in units],
        [OutputRecord("a", f"r{i}", 1, "champion", 0.001, 1, 2, answer) for i in units],
    )


def _check(comparisons: ComparisonStore, dispatcher: Dispatcher) -> None:
    row = check_split(comparisons, dispatcher, "a", champion_version=1, split=SPLIT, since=None)
    assert row is not None and row.mismatch


def test_a_mismatch_s_retune_queued_whose_action_event_was_lost_is_not_queued_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event is stamped by the host's clock (here 2 minutes ahead), its job by the
    database's: beyond the tolerance, owed() took the job for an earlier one and the
    retune for owed still, and the retry, keyed by the event rather than by the check
    that raised it, queued a second job for the same mismatch."""
    monkeypatch.setattr(event_rows, "utcnow", lambda: datetime.now(UTC) + timedelta(minutes=2))
    dispatcher = Dispatcher(store, _config())
    comparisons = ComparisonStore(store)
    real = store.add_event

    def no_action_events(*, model: str | None, type: str, payload: Any) -> Any:
        if type.startswith("action_"):
            raise StoreUnavailableError("the database is restarting")
        return real(model=model, type=type, payload=payload)

    _champion_answers(store, range(0, 100))
    store.add_event = no_action_events  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        _check(comparisons, dispatcher)
    store.add_event = real  # type: ignore[method-assign]
    [job] = store.list_jobs(model="a")
    first = comparisons.latest_split_check("a")
    assert first is not None and job.dedupe_key == f"srm:a:exp-1:{first.id}"
    assert store.list_events(model="a", type="action_taken") == []
    # it ran already: the quota would not hold a second one back
    store.finish_job(job.id, status="succeeded", result={})

    _champion_answers(store, range(100, 110))
    _check(comparisons, dispatcher)  # the same episode: its retune is not owed
    assert [j.id for j in store.list_jobs(model="a")] == [job.id]
    assert len(store.list_events(model="a", type="srm_detected")) == 1


def test_a_retune_owed_by_a_mismatch_an_older_version_recorded_is_keyed_by_its_event(
    store: Store,
) -> None:
    """An ``srm_detected`` recorded before events named their check (no ``check_id``)
    whose job was never queued: the retry queues it, keyed by the event as before."""
    dispatcher = Dispatcher(store, _config())
    comparisons = ComparisonStore(store)
    _champion_answers(store, range(0, 100))
    comparisons.add_split_check(
        model="a", champion_version=1, challenger_version=2, salt="exp-1", percent=50.0,
        n_champion=100, n_challenger=0, chi2=100.0, p_value=1e-20, mismatch=True,
        since=None, settings_since=None,
    )  # fmt: skip
    fired = store.add_event(
        model="a",
        type="srm_detected",
        payload={"champion_version": 1, "challenger_version": 2, "salt": "exp-1"},
    )
    _champion_answers(store, range(100, 110))
    _check(comparisons, dispatcher)
    [job] = store.list_jobs(model="a")
    assert job.dedupe_key == f"srm_detected:{fired.id}"
    [taken] = store.list_events(model="a", type="action_taken")
    assert taken.payload["job"] == job.id
