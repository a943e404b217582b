"""Acting on decided comparisons: once per test whoever runs the loop (a scheduled run, a
POST /compare, the CLI on another host), never for a version that left shadow, at the
error rate of the challengers compared now, and with a champion scored elsewhere."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    Traffic,
    auc_daemon,  # noqa: F401  (fixture)
    copy_daemon,
    daemon,  # noqa: F401  (fixture)
    feed_better,
    oracle,
    promote_actions,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner, GuardrailSettings
from tunewatch.comparison._results import needs_action
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore

# -- one action per decided test -------------------------------------------------------------


def _decided_unacted(d: Daemon, t: Traffic, answers: Any) -> int:
    """Feed v1 and v2's answers (``answers(start, stop)``) until v2's paired test decides,
    without acting on it (as a run that stopped after its look); the test's id."""
    loop = runner(d)
    loop._decisions.act = lambda *a, **k: ("none", ())  # type: ignore[method-assign]
    for start in range(0, 2000, 100):
        write(
            d.store,
            ids=range(start, start + 100),
            x=t.x[start : start + 100],
            y=t.y[start : start + 100],
            answers=answers(start, start + 100),
        )
        [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
        if paired.status == "decided":
            test = loop.comparisons.get_test(paired.test_id)
            assert test.outcome is None
            return test.id
    raise AssertionError("v2's test never decided")


def _meeting_in_act(loops: list[ComparisonRunner]) -> threading.Barrier:
    """Hold each runner's action on a decided test until the other's arrives there too
    (the interleaving of two runs that both found the test still to act on); a run
    alone there waits out the barrier's timeout."""
    barrier = threading.Barrier(2, timeout=2.0)
    for loop in loops:
        real = loop._decisions.act

        def meeting(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            return _real(*args, **kwargs)

        loop._decisions.act = meeting  # type: ignore[method-assign]
    return barrier


def _at_once(*runs: Any) -> list[Any]:
    out: list[Any] = [None] * len(runs)

    def go(i: int) -> None:
        out[i] = runs[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _better(t: Traffic) -> Any:
    return lambda lo, hi: {1: t.logistic[lo:hi], 2: oracle(t.x[lo:hi])}


def _worse(t: Traffic) -> Any:
    return lambda lo, hi: {1: oracle(t.x[lo:hi]), 2: t.logistic[lo:hi]}


def _types(d: Daemon) -> list[str]:
    return [e.type for e in d.store.list_events(model=MODEL, limit=200)]


def test_two_runs_of_one_model_in_one_process_promote_once(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """The scheduled run and a POST /compare share one runner: both acted on the decided
    test — two challenger_better events, and the promoting test ended closed ("the
    champion changed") with a refused promotion beside the one that was taken. Runs of
    one model now take turns; the first waits out the barrier alone."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _better(t))
    loop = runner(daemon)
    _meeting_in_act([loop, loop])
    _at_once(lambda: loop.run(MODEL), lambda: loop.run(MODEL))
    test = loop.comparisons.get_test(test_id)
    assert test.outcome is not None
    notes = test.outcome.pop("guardrail_notes")  # the replayed latency ratio
    assert notes[0].startswith("latency ratio by replay")
    assert (test.status, test.outcome) == (
        "decided",
        {"action": "promoted", "guardrails": "passed"},
    )
    events = _types(daemon)
    assert events.count("challenger_better") == 1 and events.count("promoted") == 1
    assert [kind for kind, _ in promote_actions(daemon)] == ["action_taken"]


def test_a_second_process_notifies_a_worse_challenger_not_again(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """Another process's run that read the decided test before this one acted on it
    notified again. A notice goes to the dispatcher before the test is settled (at least
    once: a store failure between the two sends it at the next run, not never), and a
    run reads the test again first: one that finds it settled records nothing."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _worse(t))
    first, second = runner(daemon), runner(daemon)
    stale = first.comparisons.get_test(test_id)  # as the other process read it
    [acted] = [r for r in first.run(MODEL) if r.test_id == test_id]
    assert acted.action == "notified"
    action, detail = second._decisions.act(MODEL, stale, second.settings(MODEL), blocked=False)
    assert action == "none" and "another comparison run" in detail[0]
    assert _types(daemon).count("challenger_worse") == 1
    test = first.comparisons.get_test(test_id)
    assert test.outcome == {"action": "notified", "trigger": "notify"}


def test_a_notice_the_store_failed_to_record_is_sent_at_the_next_run(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """Settled before its notice, a test whose notice then failed (the store unavailable
    for the event) was never notified."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _worse(t))
    loop = runner(daemon)
    real = loop._decisions.dispatcher.handle

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("store add_event: database unavailable")

    loop._decisions.dispatcher.handle = failing  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL)
    assert needs_action(loop.comparisons.get_test(test_id))
    loop._decisions.dispatcher.handle = real  # type: ignore[method-assign]
    [acted] = [r for r in loop.run(MODEL) if r.test_id == test_id]
    assert acted.action == "notified"
    assert _types(daemon).count("challenger_worse") == 1


def test_a_second_process_does_not_overwrite_a_promotion(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """The other process's run, finding the champion changed under it, closed the test
    the first had just promoted from ("the champion changed") and recorded a refused
    promotion. The promotion's outcome stands and the loser records no refusal."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _better(t))
    loops = [runner(daemon), runner(daemon)]
    _meeting_in_act(loops)
    _at_once(*(lambda loop=loop: loop.run(MODEL) for loop in loops))
    test = loops[0].comparisons.get_test(test_id)
    assert test.outcome is not None
    notes = test.outcome.pop("guardrail_notes")  # the replayed latency ratio
    assert notes[0].startswith("latency ratio by replay")
    assert (test.status, test.outcome) == (
        "decided",
        {"action": "promoted", "guardrails": "passed"},
    )
    events = _types(daemon)
    assert events.count("challenger_better") == 1 and events.count("promoted") == 1
    assert [kind for kind, _ in promote_actions(daemon)] == ["action_taken"]
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def test_two_runs_past_the_last_check_record_challenger_better_once(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes' runs both found the test still to act on just before recording its
    event (it is settled only after the promotion), and both recorded challenger_better;
    one promoted. Each now records it only where no run has."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _better(t))
    barrier = threading.Barrier(2, timeout=5.0)

    def checked_together(test: Any) -> bool:
        found = needs_action(test)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # both runs past the check before either records
        return found

    monkeypatch.setattr("tunewatch.comparison._decisions.needs_action", checked_together)
    loops = [runner(daemon), runner(daemon)]
    _at_once(*(lambda loop=loop: loop.run(MODEL) for loop in loops))
    events = _types(daemon)
    assert events.count("challenger_better") == 1 and events.count("promoted") == 1
    test = loops[0].comparisons.get_test(test_id)
    assert test.outcome is not None and test.outcome["action"] == "promoted"


def test_a_run_that_died_after_the_event_leaves_the_promotion_to_the_next_unrecorded_again(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """A run records challenger_better, then its store fails before the promotion: the
    test is not settled, and the next run promotes without recording the event again."""
    t = traffic(trained, 2000, seed=7)
    test_id = _decided_unacted(daemon, t, _better(t))
    dead = runner(daemon)

    def dying(*args: Any, **kwargs: Any) -> Any:  # the event is recorded before its action
        raise StoreUnavailableError("store add_event: database unavailable")

    dispatcher = dead._decisions.dispatcher
    real = dispatcher._act
    dispatcher._act = dying  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        dead.run(MODEL)
    dispatcher._act = real  # type: ignore[method-assign]
    assert needs_action(dead.comparisons.get_test(test_id))
    assert _types(daemon).count("challenger_better") == 1
    [acted] = [r for r in runner(daemon).run(MODEL) if r.test_id == test_id]
    assert acted.action == "promoted"
    events = _types(daemon)
    assert events.count("challenger_better") == 1 and events.count("promoted") == 1
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


@pytest.fixture
def comparisons(store_url: str) -> Iterator[ComparisonStore]:
    store = Store.open(store_url)
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    try:
        yield ComparisonStore(store)
    finally:
        store.close()


def test_a_test_is_settled_once_on_both_backends(comparisons: ComparisonStore) -> None:
    """Settling is a compare-and-set on the outcome: a second finisher writes nothing
    and learns it (``None``); a promotion blocked by a sample-ratio mismatch may still be
    settled, since it retries; ``finish_test`` returns the test as it stands."""
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={},
    )
    blocked = {"action": "blocked_srm"}
    first = comparisons.settle_test(test.id, status="decided", outcome=blocked, replaces="unset")
    assert first is not None and first.outcome == blocked and first.decided_at is not None
    again = comparisons.settle_test(test.id, status="decided", outcome=blocked, replaces="unset")
    assert again is None  # blocked already: whoever blocked it raised the event
    done = comparisons.settle_test(test.id, status="decided", outcome={"action": "promoted"})
    assert done is not None and done.outcome == {"action": "promoted"}
    late = {"action": "closed", "reason": "the champion changed before promotion"}
    assert comparisons.settle_test(test.id, status="closed", outcome=late) is None
    stands = comparisons.finish_test(test.id, status="closed", outcome=late)
    assert (stands.status, stands.outcome) == ("decided", {"action": "promoted"})
    forced = comparisons.settle_test(
        test.id, status="decided", outcome={"action": "promoted", "n": 1}, replaces="any"
    )
    assert forced is not None and forced.outcome == {"action": "promoted", "n": 1}


# -- a winner that left shadow ---------------------------------------------------------------


def test_a_winner_the_operator_retired_is_closed_not_promoted(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """v2 won while a broken split blocked promotions; the operator retired v2 and
    removed the split. The next run promoted the retired version anyway. (The split's
    challenger is v3: a split challenger never shadows, so it has no paired test.)"""
    t = traffic(trained, 2000, seed=7)
    daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")  # v3
    split = {"challenger": 3, "percent": 50, "salt": "exp1"}
    loop = runner(daemon, split=split)
    action = "none"
    for start in range(0, 2000, 100):  # every unit answered by the champion: a mismatch
        feed_better(
            daemon, t, start, start + 100, units=[f"u{i}" for i in range(start, start + 100)]
        )
        [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
        action = paired.action
        if action != "none":
            break
    assert action == "blocked_srm"
    daemon.store.set_stage(MODEL, 2, "retired", actor="ops", reason="v2 broke the split")
    [paired] = [
        r for r in runner(daemon).run(MODEL) if r.kind == "paired" and r.challenger_version == 2
    ]
    assert paired.action == "closed" and "retired" in paired.detail[0], paired
    test = loop.comparisons.get_test(paired.test_id)
    assert test.status == "closed" and "v2 is retired" in test.outcome["reason"]  # type: ignore[index]
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == "retired"
    assert "promoted" not in _types(daemon)


def _retired_while_deciding(loop: ComparisonRunner) -> None:
    """An operator retires the winner while the run decides (after its check that the
    winner is in shadow, before the promotion): during the guardrails' latency reads."""
    decisions = loop._decisions
    checked = decisions.guardrails

    def guardrails(*args: Any, **kwargs: Any) -> Any:
        out = checked(*args, **kwargs)
        decisions.store.set_stage(MODEL, 2, "retired", actor="alice", reason="never serve v2")
        return out

    decisions.guardrails = guardrails  # type: ignore[method-assign]


def _closed_as_retired(d: Daemon, loop: ComparisonRunner) -> None:
    [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert paired.action == "closed", paired
    assert paired.detail[0].startswith("v2 is retired, not in shadow"), paired
    test = loop.comparisons.get_test(paired.test_id)
    assert test.status == "closed"
    assert test.outcome["reason"].startswith("v2 is retired, not in shadow")  # type: ignore[index]
    champion = d.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert d.store.get_version(MODEL, 2).stage == "retired"
    assert d.store.list_approvals(model=MODEL) == []
    assert "promoted" not in _types(d) and "approval_requested" not in _types(d)
    [(kind, why)] = promote_actions(d)
    assert kind == "action_refused" and why.startswith("v2 is retired, not in shadow")


def test_a_winner_retired_while_the_run_decides_is_closed_not_promoted(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """The run checked that v2 was in shadow, read its latencies, and promoted it: the
    retirement that landed in between was overridden, retired → champion."""
    t = traffic(trained, 2000, seed=7)
    _decided_unacted(daemon, t, _better(t))
    loop = runner(daemon)
    _retired_while_deciding(loop)
    _closed_as_retired(daemon, loop)


def test_a_winner_retired_while_the_run_decides_gets_no_approval_request(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    """A winner outside the model's safe ranges waits for an approver: the request opened
    for the version the operator had just retired, and approving it promoted it."""
    safe = {"estimator": {"choices": ["logistic"]}}  # v2 is gradient boosting
    d = copy_daemon(
        template, tmp_path / "data", models=[{"name": MODEL, "task": "binary", "safe_ranges": safe}]
    )
    try:
        t = traffic(trained, 2000, seed=7)
        _decided_unacted(d, t, _better(t))
        loop = runner(d)
        _retired_while_deciding(loop)
        _closed_as_retired(d, loop)
    finally:
        d.close()


# -- DeLong tests at the family's alpha --------------------------------------------------------


def test_a_delong_test_decides_at_the_alpha_of_the_challengers_compared_now(
    auc_daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """v2's test started alone (alpha 0.05); v3 and v4 joined at its second look. v2 was
    promoted at its fifth look with p = 0.0375 (3p = 0.11 recorded as its adjusted
    p-value): the family spent 0.05 + 2 x 0.05/3. Its looks now use alpha / 3."""
    d = auc_daemon
    t = traffic(trained, 3000, seed=11)
    noise = np.random.default_rng(0).normal(size=3000)
    p = np.clip(0.85 * t.logistic[:, 1] + 0.15 * oracle(t.x)[:, 1] + 0.05 * noise, 0.001, 0.999)
    v2 = np.column_stack([1 - p, p]).astype(np.float32)  # a marginally better ranker
    loop = runner(d, delong_look_every=500, delong_looks=5)
    for start in range(0, 2500, 500):
        part = slice(start, start + 500)
        answers = {1: t.logistic[part], 2: v2[part]}
        if start > 0:
            answers |= {3: t.logistic[part], 4: t.logistic[part]}
        write(d.store, ids=range(start, start + 500), x=t.x[part], y=t.y[part], answers=answers)
        loop.run(MODEL)
        if start == 0:  # two more challengers join after v2's test started
            for i in range(2):  # each of its own dataset: the same again is a retry
                again = dataclasses.replace(trained[0].metadata, dataset_version=f"copy-{i}")
                d.registry.register(MODEL, trained[0].onnx, again, actor="t")
    champion = d.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    [test] = [
        t for t in loop.comparisons.list_tests(MODEL, kind="delong") if t.challenger_version == 2
    ]
    assert test.decision == "continue" and test.status == "closed"  # five looks spent
    assert test.state["alpha"] == pytest.approx(0.05 / 3)
    looks = loop.history(MODEL, 2)
    assert [look.family_size for look in looks] == [1, 3, 3, 3, 3]
    assert looks[-1].p_value < 0.05 < looks[-1].adjusted_p_value  # enough alone, not of three


# -- a champion scored elsewhere ---------------------------------------------------------------


def _mirrored(
    d: Daemon, t: Traffic, start: int, stop: int, *, champion_role: str = "external"
) -> None:
    """Requests the champion answered elsewhere (mirror mode: role ``external``, no
    latency), shadowed here by v2 (1 ms each)."""
    part = slice(start, stop)
    write(
        d.store,
        ids=range(start, stop),
        x=t.x[part],
        y=t.y[part],
        answers={1: t.logistic[part], 2: oracle(t.x[part])},
        roles={1: champion_role, 2: "challenger"},
        latency={1: None, 2: 0.001},  # type: ignore[dict-item]
    )


def test_a_winner_over_a_mirrored_champion_passes_the_latency_ratio_with_the_reason(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """Mirror mode records the champion's answers without a latency, so the latency ratio
    refused every winner for good ("need 20 recorded latencies per version … got {1: 0,
    2: 900}"). The ratio cannot apply: it passes, and the outcome says why."""
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    action = "none"
    for start in range(0, 2000, 100):
        _mirrored(daemon, t, start, start + 100)
        [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
        action = paired.action
        if action != "none":
            break
    assert action == "promoted", paired
    test = loop.comparisons.get_test(paired.test_id)
    assert test.outcome is not None
    # v1's artefact is registered: the ratio is measured by replaying recorded requests
    notes = test.outcome["guardrail_notes"]
    assert any(n.startswith("latency ratio by replay: v2 p99 ") for n in notes), notes
    [better] = daemon.store.list_events(model=MODEL, type="challenger_better")
    assert better.payload["guardrails"]["notes"] == test.outcome["guardrail_notes"]


@pytest.mark.parametrize(
    ("cap_s", "refused"),
    [(None, False), (0.01, False), (1e-6, True)],
    ids=["no-cap", "under-the-cap", "over-the-cap"],
)
def test_a_mirrored_champion_leaves_the_challenger_its_absolute_latency_cap(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
    cap_s: float | None,
    refused: bool,
) -> None:
    """The cap reads v2's replayed p99 (its run alone, some 10 µs here: far under 10 ms,
    and no onnxruntime run finishes within 1 µs), not its recorded 1 ms."""
    t = traffic(trained, 200, seed=7)
    _mirrored(daemon, t, 0, 200)
    settings = GuardrailSettings(max_memory_ratio=100.0, max_latency_p99_s=cap_s)
    loop = runner(daemon, guardrails=settings)
    champion = daemon.store.champion(MODEL)
    assert champion is not None
    result = loop.guardrails(MODEL, champion, 2, loop.settings(MODEL))
    if not refused:
        assert result.violations == ()
        return
    [violation] = result.violations
    assert violation.startswith("max_latency_p99_s: challenger p99 latency "), violation
    assert violation.endswith(" s exceeds 1e-06 s (v2's p99 by replay)"), violation


def test_a_champion_answering_here_without_latencies_still_checks_the_ratio(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """Not taken for mirror mode: the ratio is checked, by replay (it refused with "need
    20 recorded latencies per version" when the recorded latencies decided it)."""
    t = traffic(trained, 200, seed=7)
    _mirrored(daemon, t, 0, 200, champion_role="champion")
    loop = runner(daemon)
    champion = daemon.store.champion(MODEL)
    assert champion is not None
    result = loop.guardrails(MODEL, champion, 2, loop.settings(MODEL))
    assert [n for n in result.notes if n.startswith("latency ratio by replay")], result
    assert not any("scored elsewhere" in n for n in result.notes)
