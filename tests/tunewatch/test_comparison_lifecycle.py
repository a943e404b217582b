"""Tests and watches across interruptions: a store error between two steps of a watch's
start or of its rollback, a challenger taken out of shadow and put back, and a DeLong
test whose planned looks were raised in the config after it started."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    Traffic,
    _promote_a_worse_version,
    copy_daemon,
    feed_better,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tests.tunewatch.test_comparison_watch import _feed, _watch
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError, StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner
from tunewatch.comparison._runner import LEFT_SHADOW
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, LookValues


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


class FailOnce:
    """A store method that raises ``StoreUnavailableError`` (as the store does when the
    database cannot commit) on the first call ``matches``, then calls through."""

    def __init__(self, method: Callable[..., Any], matches: Callable[..., bool]) -> None:
        self.method = method
        self.matches = matches
        self.failed = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed and self.matches(*args, **kwargs):
            self.failed += 1
            raise StoreUnavailableError("the database is locked (injected)")
        return self.method(*args, **kwargs)


# -- the watch's start --------------------------------------------------------------------------


def test_a_watch_whose_move_to_shadow_failed_moves_it_again_and_rolls_back(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch's test was committed, then putting v1 back in shadow failed: the next run
    closed the watch as "v1 left shadow: there is nothing to compare", and a far worse v2
    was never rolled back. (A promotion that did not keep v1 in shadow itself: one by a
    release before, or while the watch was off.)"""
    monkeypatch.setattr(governance, "watch_keeps_previous", lambda *args: False)
    t = _promote_a_worse_version(daemon, trained, 2400)
    loop = runner(daemon)
    failing = FailOnce(daemon.store.set_stage, lambda *a, **kw: a[2] == "shadow")
    monkeypatch.setattr(daemon.store, "set_stage", failing)
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL)
    assert failing.failed == 1
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
    watch = _watch(loop)
    assert watch is not None and (watch.status, watch.action) == ("open", "none"), watch
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    lineup = daemon.runtime.model(MODEL).deployment.lineup
    assert [v.version for v in lineup.challengers] == [1]
    worse = oracle(t.x)[:, ::-1].copy()
    for start in range(400, 2400, BATCH):
        _feed(daemon, t, start, start + BATCH, worse, t.y)
        watch = _watch(loop)
        assert watch is not None
        if watch.action != "none":
            break
    assert watch is not None and watch.action == "rolled_back", watch
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["test_id"] == watch.test_id


def test_an_operator_retiring_the_kept_champion_still_closes_the_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Moving v1 to shadow is retried only until it happened once: after that v1 leaving
    shadow is the operator's choice, and the watch closes."""
    _promote_a_worse_version(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.state["kept_in_shadow"] is True
    daemon.store.set_stage(MODEL, 1, "retired", actor="operator", reason="save the CPU")
    watch = _watch(loop)
    assert watch is not None and watch.action == "closed"
    assert watch.detail == ("v1 left shadow: there is nothing to compare",)
    assert daemon.store.get_version(MODEL, 1).stage == "retired"


# -- the watch's rollback ------------------------------------------------------------------------


def test_a_rollback_whose_event_failed_is_settled_as_the_watch_s_rollback(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch's rollback committed, then recording rollback_triggered failed: the next
    run found the champion changed (v2 to v1, by this very rollback), closed the watch as
    "the champion changed" and no rollback_triggered event was ever written."""
    t = _promote_a_worse_version(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    _feed(daemon, t, 400, 1400, oracle(t.x)[:, ::-1].copy(), t.y)
    failing = FailOnce(daemon.store.add_event, lambda **kw: kw["type"] == "rollback_triggered")
    monkeypatch.setattr(daemon.store, "add_event", failing)
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL)
    assert failing.failed == 1
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1  # the rollback committed
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []
    watch = _watch(loop)
    assert watch is not None and watch.action == "rolled_back", watch
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["test_id"] == watch.test_id
    assert (event.payload["restored"], event.payload["rolled_back"]) == (1, 2)
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert (test.status, test.outcome) == ("decided", {"action": "rolled_back", "restored": 1})
    lineup = daemon.runtime.model(MODEL).deployment.lineup
    assert lineup.champion is not None and lineup.champion.version == 1
    assert _watch(loop) is None
    assert len(daemon.store.list_events(model=MODEL, type="rollback_triggered")) == 1


def test_an_operator_s_rollback_of_a_decided_watch_is_not_recorded_as_the_watch_s(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch decided, its rollback failed; an operator rolled v2 back by hand before
    it was retried. The watch closes: the rollback was not its own."""
    t = _promote_a_worse_version(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    _feed(daemon, t, 400, 1400, oracle(t.x)[:, ::-1].copy(), t.y)
    failing = FailOnce(daemon.store.rollback, lambda *a, **kw: True)
    monkeypatch.setattr(daemon.store, "rollback", failing)
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL)
    daemon.store.rollback(MODEL, actor="operator", reason="v2 is broken")
    watch = _watch(loop)
    assert watch is not None and watch.action == "closed", watch
    assert "champion changed" in watch.detail[0]
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []


# -- a challenger out of shadow and back ---------------------------------------------------------


def test_a_challenger_back_in_shadow_continues_its_test_and_is_promoted(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2 was retired mid-test and put back in shadow: its test had been closed
    ("challenger left shadow") and, closed, still counted as the pair's test, so v2 was
    never compared with v1 again (2,700 clearly better pairs later: nothing)."""
    t = traffic(trained, 3000, seed=7)
    loop = runner(daemon)
    feed_better(daemon, t, 0, 300)
    [first] = loop.run(MODEL)
    assert (first.kind, first.status, first.fed) == ("paired", "open", 300)
    daemon.store.set_stage(MODEL, 2, "retired", actor="operator", reason="save CPU for an hour")
    [paused] = loop.run(MODEL)
    assert (paused.test_id, paused.status) == (first.test_id, "closed")
    daemon.store.set_stage(MODEL, 2, "shadow", actor="operator", reason="compare again")
    result = None
    for start in range(300, 3000, BATCH):
        feed_better(daemon, t, start, start + BATCH)
        [result] = loop.run(MODEL)
        assert result.test_id == first.test_id  # the same test, continued
        if result.action != "none":
            break
    assert result is not None and result.action == "promoted", result
    assert result.look is not None and result.look.n > 300
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    [test] = loop.comparisons.list_tests(MODEL, kind="paired")
    assert test.looks == len(loop.history(MODEL, 2))  # one series of looks, none repeated


def test_a_challenger_that_stays_retired_keeps_its_test_closed(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = traffic(trained, 600, seed=7)
    loop = runner(daemon)
    feed_better(daemon, t, 0, 300)
    loop.run(MODEL)
    daemon.store.set_stage(MODEL, 2, "retired", actor="operator", reason="for good")
    loop.run(MODEL)
    feed_better(daemon, t, 300, 600)
    assert loop.run(MODEL) == []
    [test] = loop.comparisons.list_tests(MODEL, kind="paired")
    assert (test.status, test.n, test.outcome) == (
        "closed",
        300,
        {"reason": "challenger left shadow"},
    )


def _open_tests_of_v1_with_v2_and_v3(
    daemon: Daemon, trained: list[ExampleModel], loop: ComparisonRunner
) -> Traffic:
    """v3 registered beside v2 (both shadow v1); one run opens v1-vs-v2 and v1-vs-v3."""
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    t = traffic(trained, 600, seed=7)
    _feed_three(daemon, t, 0, 200, {1: t.logistic, 2: None, 3: None})
    assert {(r.challenger_version, r.status) for r in loop.run(MODEL)} == {
        (2, "open"),
        (3, "open"),
    }
    return t


def _feed_three(
    daemon: Daemon, t: Traffic, start: int, stop: int, answers: dict[int, np.ndarray | None]
) -> None:
    """Requests ``start``..``stop`` answered by the versions of ``answers`` (the lowest as
    champion); ``None`` stands for the oracle's answer."""
    s = slice(start, stop)
    write(
        daemon.store,
        ids=range(start, stop),
        x=t.x[s],
        y=t.y[s],
        answers={v: oracle(t.x[s]) if a is None else a[s] for v, a in answers.items()},
    )


def test_tests_of_a_replaced_champion_close_when_their_challengers_leave_shadow(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2 retired and v3 promoted by hand within one interval: the runner read only the
    new champion's tests, so v1-vs-v2 and v1-vs-v3 stood open for ever (the dashboard drew
    them running). Closed as their challengers left shadow, v1-vs-v2 goes on where it
    stopped once v1 is champion again and v2 back in shadow."""
    loop = runner(daemon, rollback={"enabled": False})
    t = _open_tests_of_v1_with_v2_and_v3(daemon, trained, loop)
    daemon.store.set_stage(MODEL, 2, "retired", actor="operator", reason="drop")
    daemon.store.promote(MODEL, 3, actor="operator", reason="go")
    loop.run(MODEL)
    loop.run(MODEL)
    tests = loop.comparisons.list_tests(MODEL, kind="paired")
    assert [(x.champion_version, x.challenger_version, x.status, x.outcome) for x in tests] == [
        (1, 2, "closed", {"reason": "challenger left shadow"}),
        (1, 3, "closed", {"reason": "challenger left shadow"}),
    ]
    first = tests[0]
    daemon.store.promote(MODEL, 1, actor="operator", reason="back")
    daemon.store.set_stage(MODEL, 2, "shadow", actor="operator", reason="compare again")
    _feed_three(daemon, t, 200, 400, {1: t.logistic, 2: None})
    [resumed] = loop.run(MODEL)
    assert (resumed.test_id, resumed.status, resumed.fed) == (first.id, "open", 200)
    assert resumed.look is not None and resumed.look.n == first.n + 200
    v3 = loop.comparisons.get_test(tests[1].id)  # v3 retired by v1's promotion: stays closed
    assert (v3.status, v3.outcome) == ("closed", {"reason": "challenger left shadow"})


def test_a_replaced_champion_kept_for_the_rollback_watch_keeps_its_watch_open(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v3 promoted with a paired rollback watch: v1 stays in shadow for the watch. Only
    v1-vs-v3 closes (v3 left shadow); the watch, v1-vs-v2 (v2 still shadows, and a
    rollback restores v1) and v2's new test against v3 stay open."""
    loop = runner(daemon)
    _open_tests_of_v1_with_v2_and_v3(daemon, trained, loop)
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 3, actor="t", reason="go")
    assert outcome.status == "promoted"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    loop.run(MODEL)
    loop.run(MODEL)
    assert [
        (x.kind, x.champion_version, x.challenger_version, x.status, x.outcome)
        for x in loop.comparisons.list_tests(MODEL)
    ] == [
        ("paired", 1, 2, "open", None),
        ("paired", 1, 3, "closed", {"reason": "challenger left shadow"}),
        ("rollback_watch", 1, 3, "open", None),
        ("paired", 3, 2, "open", None),
    ]


# -- DeLong's planned looks ----------------------------------------------------------------------


def test_a_delong_test_ends_at_its_own_planned_looks_after_the_config_raised_them(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``delong_looks`` went from 2 to 4 after a test started: its bounds stay planned for
    two looks (its state), but it was closed only at the config's fourth, and every look
    after its second failed ("all 2 planned looks are spent"): open for ever."""
    d = copy_daemon(
        template,
        tmp_path / "auc",
        models=[{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
    )
    try:
        t = traffic(trained, 800, seed=7)
        rng = np.random.default_rng(0)
        noisy = np.clip(t.logistic + rng.normal(0, 0.02, t.logistic.shape), 0, 1)

        def feed(lo: int, hi: int) -> None:
            write(
                d.store,
                ids=range(lo, hi),
                x=t.x[lo:hi],
                y=t.y[lo:hi],
                answers={1: t.logistic[lo:hi], 2: noisy[lo:hi].astype(np.float32)},
            )

        feed(0, 200)
        [first] = runner(d, delong_looks=2, delong_look_every=200).run(MODEL)
        assert (first.status, first.decision) == ("open", "continue")
        raised = runner(d, delong_looks=4, delong_look_every=200)  # config edited, restarted
        feed(200, 400)
        with caplog.at_level(logging.WARNING, logger="tunewatch.comparison"):
            [second] = raised.run(MODEL)
            feed(400, 600)
            assert raised.run(MODEL) == []
        assert (second.status, second.decision, second.fed) == ("closed", "continue", 200)
        logged = [r.getMessage() for r in caplog.records if r.name.startswith("tunewatch")]
        # (a runner says once that a ROC AUC model's promotions get no rollback watch)
        assert [m for m in logged if "not watched for a rollback" not in m] == []
        [test] = raised.comparisons.list_tests(MODEL, kind="delong")
        assert (test.status, test.looks, test.state["planned_looks"]) == ("closed", 2, 2)
    finally:
        d.close()


# -- the store steps, on both backends -----------------------------------------------------------


def test_a_test_closed_as_its_challenger_left_shadow_reopens_once(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        comparisons = ComparisonStore(store)
        test, _ = comparisons.get_or_create_test(
            model="m",
            kind="paired",
            champion_version=1,
            challenger_version=2,
            correction="holm",
            state={"n": 3},
        )
        other, _ = comparisons.get_or_create_test(
            model="m",
            kind="paired",
            champion_version=1,
            challenger_version=3,
            correction="holm",
            state={},
        )
        comparisons.finish_test(test.id, status="closed", outcome={"reason": LEFT_SHADOW})
        comparisons.finish_test(other.id, status="closed", outcome={"reason": "incomparable"})
        reopened = comparisons.reopen_test(test.id, reason=LEFT_SHADOW)
        assert reopened is not None
        assert (reopened.status, reopened.outcome, reopened.decided_at) == ("open", None, None)
        assert reopened.state == {"n": 3}
        assert comparisons.reopen_test(test.id, reason=LEFT_SHADOW) is None  # once
        assert comparisons.reopen_test(other.id, reason=LEFT_SHADOW) is None
        assert comparisons.get_test(other.id).status == "closed"
        # reopened, its outcome is unset again: the next decision settles it
        settled = comparisons.settle_test(test.id, status="decided", outcome={"action": "x"})
        assert settled is not None and settled.outcome == {"action": "x"}
    finally:
        store.close()


def test_a_test_s_state_is_written_only_over_the_state_it_was_read_with(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        comparisons = ComparisonStore(store)
        test, _ = comparisons.get_or_create_test(
            model="m",
            kind="rollback_watch",
            champion_version=1,
            challenger_version=2,
            correction=None,
            state={"shadow_pending": True},
            promotion_id=7,
        )
        written = comparisons.write_state(test, {"shadow_pending": False})
        assert (written.state, written.looks) == ({"shadow_pending": False}, 0)
        comparisons.consume_unscored(written, ["r1"])  # no look: the state still matches
        looked = comparisons.record_look(
            written,
            consumed=["r2"],
            look=LookValues(
                method="confidence_sequence",
                n=1,
                estimate=0.0,
                ci_low=-1.0,
                ci_high=1.0,
                p_value=1.0,
                adjusted_p_value=1.0,
                decision="continue",
            ),
            state={"shadow_pending": False, "n": 1},
            status="open",
        )
        with pytest.raises(ConflictError) as caught:
            comparisons.write_state(written, {"shadow_pending": True})  # read before the look
        assert caught.value.code == "comparison_moved_on"
        assert comparisons.get_test(test.id).state == looked.state
    finally:
        store.close()
