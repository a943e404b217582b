"""A retune a comparison owes (``challenger_worse``, ``srm_detected`` with ``do: retune``)
that the job quota suppressed is tried again later, not taken as done."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from tunewatch._actions import Dispatcher
from tunewatch._config import Config, build_config
from tunewatch._split import SplitConfig, check_split
from tunewatch.comparison._decisions import Decisions
from tunewatch.store import Event, OutputRecord, RequestRecord, Store
from tunewatch.store._comparisons import ComparisonStore


def _config(event: str) -> Config:
    return build_config(
        {
            "tuning": {"max_concurrent_jobs": 1},
            "models": [
                {
                    "name": "a",
                    "task": "binary",
                    "triggers": [{"on": event, "do": "retune", "cooldown_minutes": 0}],
                }
            ],
        },
        env={},
    )


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store.open(sqlite_url)
    for name in ("a", "b"):
        s.ensure_model(name=name, task="binary", feature_names=["x"])
    try:
        yield s
    finally:
        s.close()


def _fill_the_quota(dispatcher: Dispatcher) -> int:
    """Another model's job takes the only slot of the quota; its id."""
    busy = dispatcher.handle("b", "manual", {})
    assert busy.status == "taken" and busy.job_id is not None
    return busy.job_id


def _worse_test(comparisons: ComparisonStore, challenger: int) -> int:
    """A paired test decided ``challenger_worse`` for v``challenger``; its id."""
    test, _ = comparisons.get_or_create_test(
        model="a", kind="paired", champion_version=1, challenger_version=challenger,
        correction=None, state={},
    )  # fmt: skip
    comparisons.settle_test(test.id, status="decided", decision="challenger_worse")
    return test.id


def _events(store: Store, type: str) -> list[Event]:
    return store.list_events(model="a", type=type)


def test_a_worse_challenger_s_retune_the_quota_suppressed_is_queued_once_it_frees(
    store: Store,
) -> None:
    """The comparison test was settled as "notified" although the quota had suppressed
    its retune: later runs found it settled, and the retune was never queued. Then each
    run while the quota held it recorded the event and its suppression again (every
    300 s by default)."""
    config = _config("challenger_worse")
    dispatcher = Dispatcher(store, config)
    busy = _fill_the_quota(dispatcher)
    comparisons = ComparisonStore(store)
    test_id = _worse_test(comparisons, 2)
    decisions = Decisions(store, config, comparisons, dispatcher=dispatcher, on_lineup_change=None)
    settings = config.model_or_default("a", "binary").comparison

    action, detail = decisions.act("a", comparisons.get_test(test_id), settings, blocked=False)
    assert action == "none" and "retune suppressed" in detail[0] and "quota" in detail[0]
    assert comparisons.get_test(test_id).outcome is None  # still owed
    assert store.list_jobs(model="a") == []

    for _ in range(4):  # the quota still full: nothing queued, nothing more recorded
        action, detail = decisions.act("a", comparisons.get_test(test_id), settings, blocked=False)
        assert action == "none" and "quota" in detail[0]
        assert comparisons.get_test(test_id).outcome is None
    assert store.list_jobs(model="a") == []
    [fired] = _events(store, "challenger_worse")
    assert fired.payload["test_id"] == test_id
    [suppressed] = _events(store, "action_suppressed")
    assert suppressed.payload["cause"] == "quota"

    store.finish_job(busy, status="succeeded", result={})
    action, detail = decisions.act("a", comparisons.get_test(test_id), settings, blocked=False)
    [job] = store.list_jobs(model="a")
    assert action == "notified" and f"job {job.id}" in detail[0]
    assert (job.status, job.dedupe_key) == ("queued", f"comparison:{test_id}")
    assert job.trigger == {"event": "challenger_worse", **fired.payload}
    assert comparisons.get_test(test_id).outcome == {"action": "notified", "trigger": "retune"}
    [taken] = _events(store, "action_taken")
    assert (taken.payload["trigger"], taken.payload["job"]) == ("challenger_worse", job.id)
    again, _ = decisions.act("a", comparisons.get_test(test_id), settings, blocked=False)
    assert again == "none" and len(store.list_jobs(model="a")) == 1
    assert len(_events(store, "challenger_worse")) == 1
    assert len(_events(store, "action_suppressed")) == 1


def test_two_worse_challengers_held_by_the_quota_each_record_their_event_once(
    store: Store,
) -> None:
    """Each test retries on its own event: the newest ``challenger_worse`` of the model is
    the other test's."""
    config = _config("challenger_worse")
    dispatcher = Dispatcher(store, config)
    busy = _fill_the_quota(dispatcher)
    comparisons = ComparisonStore(store)
    tests = [_worse_test(comparisons, 2), _worse_test(comparisons, 3)]
    decisions = Decisions(store, config, comparisons, dispatcher=dispatcher, on_lineup_change=None)
    settings = config.model_or_default("a", "binary").comparison

    def run() -> list[str]:
        return [
            decisions.act("a", comparisons.get_test(t), settings, blocked=False)[0]
            for t in tests
            if comparisons.get_test(t).outcome is None
        ]

    for _ in range(3):
        assert run() == ["none", "none"]
    fired = _events(store, "challenger_worse")
    assert sorted(e.payload["test_id"] for e in fired) == tests
    assert len(_events(store, "action_suppressed")) == 2

    store.finish_job(busy, status="succeeded", result={})
    # the first test's job takes the only slot; the second test's retune, on its own
    # event, is that job's duplicate (one retune of the model at a time)
    assert run() == ["notified", "notified"]
    [first] = store.list_jobs(model="a")
    assert first.dedupe_key == f"comparison:{tests[0]}"
    assert first.trigger["test_id"] == tests[0]
    assert run() == []
    [duplicate] = _events(store, "action_duplicate")
    assert duplicate.payload["job"] == first.id
    assert len(_events(store, "challenger_worse")) == 2
    assert len(_events(store, "action_suppressed")) == 2
    assert len(_events(store, "action_taken")) == 1


SPLIT = SplitConfig(challenger=2, percent=50.0, salt="exp-1")


def _champion_answers(store: Store, units: range) -> None:
    """Requests of split units that only the champion (v1) answered: a broken split."""
    at = datetime.now(UTC)
    row = np.zeros((1, 1), np.float32).tobytes()
    answer = np.array([[0.5, 0.5]], np.float32).tobytes()
    store.write_records(
        [RequestRecord("a", f"r{i}", at, "infer", 1, 1, row, f"u{i}") for i in units],
        [OutputRecord("a", f"r{i}", 1, "champion", 0.001, 1, 2, answer) for i in units],
    )


def test_a_sample_ratio_mismatch_s_retune_the_quota_suppressed_is_queued_once_it_frees(
    store: Store,
) -> None:
    """A mismatch raises srm_detected once per episode: when the quota suppressed its
    retune, the later checks of the same episode never tried it again."""
    dispatcher = Dispatcher(store, _config("srm_detected"))
    busy = _fill_the_quota(dispatcher)
    comparisons = ComparisonStore(store)

    def check() -> None:
        row = check_split(comparisons, dispatcher, "a", champion_version=1, split=SPLIT, since=None)
        assert row is not None and row.mismatch

    _champion_answers(store, range(0, 100))
    check()
    assert store.list_jobs(model="a") == []
    _champion_answers(store, range(100, 110))
    check()  # the quota still full: nothing queued, and nothing more recorded
    assert store.list_jobs(model="a") == []
    assert len(store.list_events(model="a", type="action_suppressed")) == 1

    store.finish_job(busy, status="succeeded", result={})
    _champion_answers(store, range(110, 120))
    check()
    [job] = store.list_jobs(model="a")
    assert job.status == "queued" and job.trigger["event"] == "srm_detected"
    _champion_answers(store, range(120, 130))
    check()
    assert len(store.list_jobs(model="a")) == 1
    assert len(store.list_events(model="a", type="srm_detected")) == 1  # one episode
