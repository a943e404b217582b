"""The paired rollback watch: after a promotion the previous champion stays in shadow and
scores the same requests as the new one, so the watch compares the two on the same
traffic. The unpaired watch compared the new champion's losses after the promotion with
the previous champion's before it, and traffic that became harder (drift) looked like a
worse model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shadow.stats import TwoSampleSequentialTest
from shadow.stats._two_sample import unit_sums
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    MODEL,
    Traffic,
    _promote_a_worse_version,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonConfig, ComparisonResult, ComparisonRunner
from tunewatch.comparison._config import RollbackWatchConfig

# After the promotion, labels are flipped with this probability: every model's loss rises.
NOISE = 0.3


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _promote_v2(d: Daemon, trained: list[ExampleModel], n: int = 2400) -> Traffic:
    """v1 (logistic) answers 400 labelled requests of clean traffic an hour ago; v2 is
    promoted."""
    return _promote_a_worse_version(d, trained, n)


def _feed(d: Daemon, t: Traffic, start: int, stop: int, v2: np.ndarray, y: np.ndarray) -> None:
    """Requests answered by v2 (the champion), with v1's shadow output when v1 is in
    shadow, the way the daemon records them."""
    s = slice(start, stop)
    answers = {2: v2[s]}
    if d.store.get_version(MODEL, 1).stage == "shadow":
        answers[1] = t.logistic[s]
    write(
        d.store,
        ids=range(start, stop),
        x=t.x[s],
        y=y[s],
        answers=answers,
        roles={2: "champion", 1: "challenger"},
    )


def _watch(loop: ComparisonRunner) -> ComparisonResult | None:
    found = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    assert len(found) <= 1
    return found[0] if found else None


def _noisy(t: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """Harder traffic after the promotion: labels flipped with probability NOISE. v2
    answers the true probability of the noisy labels (the best possible model), v1 its
    logistic fit of the clean ones."""
    flip = np.random.default_rng(3).random(t.y.size) < NOISE
    y = np.where(flip, 1 - t.y, t.y)
    p = NOISE + (1 - 2 * NOISE) * oracle(t.x)[:, 1]
    return y, np.column_stack([1 - p, p]).astype(np.float32)


def test_the_previous_champion_scores_in_shadow_and_a_worse_version_is_rolled_back(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    # kept in shadow by the promotion itself: the watch's first look counts every request
    # answered since (tests/tunewatch/test_watch_from_promotion.py)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    loop = runner(daemon)
    first = _watch(loop)
    assert first is not None and first.action == "none"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    lineup = daemon.runtime.model(MODEL).deployment.lineup  # type: ignore[union-attr]
    assert [v.version for v in lineup.challengers] == [1]
    [promoted] = daemon.store.list_events(model=MODEL, type="promoted")
    assert promoted.payload["kept_in_shadow"] is True
    assert daemon.store.list_events(model=MODEL, type="stage_changed") == []
    # the kept champion is watched, not compared as a challenger that could be promoted
    assert loop.comparisons.list_tests(MODEL, kind="paired", champion_version=2) == []
    worse = oracle(t.x)[:, ::-1].copy()
    watch = None
    for start in range(400, 2400, BATCH):
        _feed(daemon, t, start, start + BATCH, worse, t.y)
        watch = _watch(loop)
        assert watch is not None
        if watch.action != "none":
            break
    assert watch is not None and watch.action == "rolled_back", watch
    assert watch.look is not None and watch.look.decision == "challenger_worse"
    assert watch.look.estimate is not None and watch.look.estimate > 0
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == "rolled_back"
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["restored"] == 1 and event.payload["paired"] is True
    lineup = daemon.runtime.model(MODEL).deployment.lineup  # type: ignore[union-attr]
    assert lineup.champion.version == 1 and lineup.challengers == ()


def _run_noisy(daemon: Daemon, t: Traffic, loop: ComparisonRunner) -> ComparisonResult:
    y, calibrated = _noisy(t)
    watch = None
    for start in range(400, t.y.size, BATCH):
        _feed(daemon, t, start, start + BATCH, calibrated, y)
        watch = _watch(loop)
        assert watch is not None
        if watch.action != "none":
            break
    assert watch is not None
    return watch


def test_harder_traffic_after_a_promotion_rolled_back_a_better_version_unpaired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The confound the paired watch removes, shown on the unpaired watch: v2 is the best
    possible model of the noisy traffic, and still loses to v1's losses on clean traffic."""
    t = _promote_v2(daemon, trained)
    # v1 answered 400 labelled requests: a burn-in of 300 lets it be the baseline.
    watch = _run_noisy(daemon, t, runner(daemon, rollback={"paired": False, "min_n": 300}))
    assert watch.action == "rolled_back"
    assert daemon.store.get_version(MODEL, 1).stage == "champion"


def test_harder_traffic_after_a_promotion_does_not_roll_back_a_better_version(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained, n=6400)
    watch = _run_noisy(daemon, t, runner(daemon, rollback={"watch_requests": 5000}))
    assert watch.action == "watch_passed", watch
    assert watch.look is not None and watch.look.estimate is not None
    assert watch.look.estimate < 0  # v2's loss is lower than v1's on the same requests
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    assert daemon.store.get_version(MODEL, 1).stage == "retired"  # out of shadow again
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []
    lineup = daemon.runtime.model(MODEL).deployment.lineup  # type: ignore[union-attr]
    assert lineup.challengers == ()


def test_a_previous_champion_already_in_shadow_stays_there_after_the_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "shadow", actor="operator", reason="keep comparing")
    loop = runner(daemon, min_n=100, rollback={"watch_requests": 200})
    _feed(daemon, t, 400, 700, oracle(t.x), t.y)
    watch = _watch(loop)
    assert watch is not None and watch.action == "none"
    watch = _watch(loop)
    assert watch is not None and watch.action == "watch_passed"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"  # the operator's choice


def test_a_watch_overtaken_by_another_promotion_releases_its_shadow(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v1 kept in shadow for v2's watch; v3 is promoted before the watch ends. The old
    watch is closed and v1 retired; the new watch keeps v2."""
    _promote_v2(daemon, trained)
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    loop = runner(daemon)
    _watch(loop)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    daemon.store.promote(MODEL, 3, actor="operator", reason="by hand")
    watch = _watch(loop)
    assert watch is not None and watch.action == "none"
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
    assert daemon.store.get_version(MODEL, 2).stage == "shadow"
    old, new = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert (old.champion_version, old.challenger_version, old.status) == (1, 2, "closed")
    assert (new.champion_version, new.challenger_version, new.status) == (2, 3, "open")


def test_promoting_the_same_pair_again_starts_a_new_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2 over v1, back to v1, v2 again: the second promotion of v2 over v1 found the
    first one's closed watch of the pair and started none, so v1 was retired at once and
    a far worse v2 was never rolled back."""
    t = _promote_v2(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    daemon.store.promote(MODEL, 1, actor="operator", reason="back to v1")
    _watch(loop)
    daemon.store.promote(MODEL, 2, actor="operator", reason="v2 again")
    again = _watch(loop)
    assert again is not None and again.action == "none" and again.status == "open"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    worse = oracle(t.x)[:, ::-1].copy()
    watch = again
    for start in range(400, 2400, BATCH):
        _feed(daemon, t, start, start + BATCH, worse, t.y)
        watch = _watch(loop)
        assert watch is not None
        if watch.action != "none":
            break
    assert watch.action == "rolled_back" and watch.test_id == again.test_id, watch
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    first, back, second = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert [(w.champion_version, w.challenger_version) for w in (first, back, second)] == [
        (1, 2),
        (2, 1),
        (1, 2),
    ]
    assert (first.status, first.outcome) == (
        "closed",
        {"action": "closed", "reason": "a later promotion replaced the watched champion"},
    )
    assert second.id == again.test_id and second.outcome == {"action": "rolled_back", "restored": 1}


def test_a_previous_champion_taken_out_of_shadow_closes_the_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    daemon.store.set_stage(MODEL, 1, "retired", actor="operator", reason="save the CPU")
    watch = _watch(loop)
    assert watch is not None and watch.action == "closed"
    assert "left shadow" in watch.detail[0]
    assert _watch(loop) is None


def test_a_rolled_back_previous_champion_closes_the_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "rolled_back", actor="test", reason="bad too")
    watch = _watch(runner(daemon))
    assert watch is not None and watch.action == "closed"
    assert "rolled back" in watch.detail[0]
    assert daemon.store.get_version(MODEL, 1).stage == "rolled_back"


def test_the_paired_watch_reads_matured_requests_only(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    now = datetime.now(UTC)
    settings = {"label_maturity_s": 7200.0, "rollback": {"watch_s": 86_400.0}}
    early = runner(daemon, clock=lambda: now, **settings)
    _watch(early)  # created at once: v1 must score in shadow from the start
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    _feed(daemon, t, 400, 1400, oracle(t.x)[:, ::-1].copy(), t.y)
    watch = _watch(early)
    assert watch is not None and watch.action == "none" and watch.fed == 0
    later = runner(daemon, clock=lambda: now + timedelta(hours=3), **settings)
    watch = _watch(later)
    assert watch is not None and watch.action == "rolled_back"


def test_a_paired_watch_shorter_than_its_burn_in_is_a_config_error() -> None:
    """With fewer watched requests than the paired burn-in, no look could ever decide:
    every watch passed, a reversed model included."""
    with pytest.raises(ValueError, match="`rollback.watch_requests`"):
        ComparisonConfig.model_validate({"rollback": {"watch_requests": 400}})
    ComparisonConfig.model_validate(
        {"rollback": {"watch_requests": 400, "paired": False, "min_n": 300}}
    )


def test_an_unpaired_watch_shorter_than_its_burn_in_is_a_config_error() -> None:
    for rollback in ({"watch_requests": 400}, {"baseline_requests": 400}):
        with pytest.raises(ValueError, match="the unpaired watch's burn-in"):
            ComparisonConfig.model_validate({"rollback": {"paired": False, **rollback}})


def test_the_unpaired_watch_burn_in_keeps_skewed_equal_losses_under_alpha() -> None:
    """Log losses of one calibrated model (traffic p ~ Beta(0.2, 10)) on both sides of
    the promotion, looked at every 50 requests as the watch would: at the old burn-in of
    30 a quarter of such watches decided, most of them "better" (a watch that passes
    whatever the new champion is)."""
    rng = np.random.default_rng(5)

    def losses(shape: tuple[int, int]) -> np.ndarray:
        p = np.clip(rng.beta(0.2, 10.0, shape), 1e-12, 1 - 1e-12)
        return np.where(rng.random(shape) < p, -np.log(p), -np.log1p(-p))

    rules = RollbackWatchConfig(paired=False)
    looks = np.arange(50, rules.watch_requests + 1, 50)
    rates = {}
    for min_n in (rules.min_n, 30):
        test = TwoSampleSequentialTest(
            alpha=rules.alpha, planned_n=rules.watch_requests, min_n=min_n
        )
        decided = 0
        for _ in range(2):
            base, new = losses((200, rules.baseline_requests)), losses((200, rules.watch_requests))
            n = np.broadcast_to(looks.astype(np.float64), (200, looks.size))
            champion = unit_sums(
                np.full((200, looks.size), float(rules.baseline_requests)),
                np.broadcast_to(base.sum(axis=1, keepdims=True), n.shape),
                np.broadcast_to((base**2).sum(axis=1, keepdims=True), n.shape),
            )
            challenger = unit_sums(
                n, np.cumsum(new, axis=1)[:, looks - 1], np.cumsum(new**2, axis=1)[:, looks - 1]
            )
            decided += int((test.evaluate(champion, challenger).decision != 0).any(axis=1).sum())
        rates[min_n] = decided / 400
    assert rates[rules.min_n] <= 0.05
    assert rates[30] > 0.15


def test_switching_the_watch_off_releases_the_kept_champion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    _watch(runner(daemon))
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    off = runner(daemon, rollback={"enabled": False})
    off.run(MODEL)
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
    [test] = off.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.status == "closed"


def _decide_worse(daemon: Daemon, trained: list[ExampleModel], loop: ComparisonRunner) -> Traffic:
    t = _promote_v2(daemon, trained)
    _watch(loop)
    worse = oracle(t.x)[:, ::-1].copy()
    _feed(daemon, t, 400, 1400, worse, t.y)
    return t


def test_a_rollback_overtaken_by_a_promotion_releases_the_kept_champion(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    loop = runner(daemon)
    real = loop.comparisons.record_look

    def operator_promotes_v3_meanwhile(*args: object, **kwargs: object) -> object:
        saved = real(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("status") == "decided":
            daemon.store.promote(MODEL, 3, actor="operator", reason="by hand")
        return saved

    monkeypatch.setattr(loop.comparisons, "record_look", operator_promotes_v3_meanwhile)
    _decide_worse(daemon, trained, loop)
    watch = _watch(loop)
    assert watch is not None and watch.action == "closed", watch
    assert daemon.store.get_version(MODEL, 1).stage == "retired"


def test_a_rollback_that_failed_once_is_retried(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision was stored, then the rollback raised: the watch stayed decided with
    nothing done, and the kept champion became an ordinary challenger."""
    loop = runner(daemon)
    real = daemon.store.rollback
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon.store, "rollback", flaky)
    _decide_worse(daemon, trained, loop)
    with pytest.raises(OSError):
        loop.run(MODEL)
    assert loop._rollback_watch.held(MODEL) == {1}
    watch = _watch(loop)
    assert watch is not None and watch.action == "rolled_back"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1


def test_a_bounded_objective_gives_the_unpaired_watch_its_loss_range(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    """A baseline that has not shown a rare costly miss looks better than it is: with
    models of equal expected cost under ``[[0, 1], [20, 0]]`` the unpaired watch rolled an
    equally good champion back in 15 % of seeded watches, which the skewness rule cannot
    prevent and the cost matrix's bound as ``loss_range`` does (tests/shadow/
    test_stats_two_sample.py)."""
    cost = {"name": "cost", "params": {"cost_matrix": [[0, 1], [20, 0]]}}
    d = copy_daemon(
        template, tmp_path / "cost", models=[{"name": MODEL, "task": "binary", "objective": cost}]
    )
    try:
        _promote_v2(d, trained)
        loop = runner(
            d,
            method="msprt",
            mixing_sd=0.3,
            rollback={"paired": False, "min_n": 300, "method": "msprt"},
        )
        watch = _watch(loop)
        assert watch is not None
        state = loop.comparisons.get_test(watch.test_id).state
        assert state["config"]["loss_range"] == 20.0
        assert state["config"]["mixing_sd"] == 0.3  # as the paired watch has it
        assert np.asarray(state["stats_with_cubes"]).shape == (2, 10)
        assert state["baseline_n"] == 400
    finally:
        d.close()


@pytest.mark.parametrize("paired", [True, False])
def test_an_msprt_comparison_s_mixing_sd_does_not_stop_a_confidence_sequence_watch(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    paired: bool,
) -> None:
    """`comparison: {method: msprt, mixing_sd: …}` went to the watch, whose own method
    (`rollback.method`, confidence sequence by default) refuses a mixing sd: every run
    logged "rollback watch cannot look" and no watch ever looked."""
    d = copy_daemon(template, tmp_path / "d")
    try:
        _promote_v2(d, trained)
        loop = runner(d, method="msprt", mixing_sd=0.3, rollback={"paired": paired, "min_n": 300})
        watch = _watch(loop)
        assert watch is not None
        state = loop.comparisons.get_test(watch.test_id).state
        assert state["config"]["method"] == "confidence_sequence"
        assert state["config"]["mixing_sd"] is None
    finally:
        d.close()


def test_a_request_to_bring_the_kept_champion_back_outlives_the_watch_s_end(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """An operator asked during the watch to promote v1 again: the watch's end, retiring
    v1 as it was before the watch, closed the request as rejected by tunewatch."""
    t = _promote_v2(daemon, trained)
    loop = runner(daemon, min_n=100, rollback={"watch_requests": 200})
    _watch(loop)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    request = daemon.store.request_approval(
        MODEL, 1, requested_by="alice", reason="v2 looks worse on segment X", rules=["regulated"]
    )
    _feed(daemon, t, 400, 700, oracle(t.x), t.y)
    _watch(loop)
    watch = _watch(loop)
    assert watch is not None and watch.action == "watch_passed"
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
    assert daemon.store.get_approval(request.id).status == "pending"
    decided, promoted = daemon.store.decide_approval(
        request.id, approver="bob", approve=True, reason="agreed"
    )
    assert decided.status == "approved" and promoted is not None
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1


def test_a_watch_between_versions_answering_different_classes_closes_as_incomparable(
    daemon: Daemon,
) -> None:
    """v2 answers two classes, v1 (kept in shadow) three: no request could be scored, the
    watch never looked and never ended (6,000 labelled requests past its 5,000), holding
    v1 in shadow for ever."""
    daemon.store.ensure_model(name="mc", task="multiclass", feature_names=["a"])
    for i, stage in ((1, "champion"), (2, "shadow")):
        daemon.store.add_version(
            model="mc",
            artefact_sha256=f"{i:064d}",
            hyperparameters={},
            size_bytes=1,
            actor="t",
            stage=stage,  # type: ignore[arg-type]
        )
    daemon.store.promote("mc", 2, actor="operator", reason="v2 replaces v1")
    loop = runner(daemon, model="mc", lineup_changed=lambda m: None)
    [start] = [r for r in loop.run("mc") if r.kind == "rollback_watch"]
    assert start.status == "open" and daemon.store.get_version("mc", 1).stage == "shadow"
    rng = np.random.default_rng(0)
    write(
        daemon.store,
        ids=range(200),
        x=np.zeros((200, 8), np.float32),
        y=rng.integers(0, 2, size=200).astype(np.float64),
        answers={2: rng.dirichlet([1, 1], 200), 1: rng.dirichlet([1, 1, 1], 200)},
        roles={2: "champion", 1: "challenger"},
        model="mc",
    )
    [watch] = [r for r in loop.run("mc") if r.kind == "rollback_watch"]
    assert (watch.status, watch.action) == ("closed", "closed"), watch
    assert watch.detail == ("v2 answers 2 classes, v1 3: their losses cannot be compared",)
    assert daemon.store.get_version("mc", 1).stage == "retired"
    assert loop._rollback_watch.held("mc") == set()
    champion = daemon.store.champion("mc")
    assert champion is not None and champion.version == 2
