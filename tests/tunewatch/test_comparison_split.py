"""Live splits: sticky routing with the configured share, and the sample-ratio check that
raises srm_detected and blocks promotions while it fails."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from shadow.stats import TwoSampleSequentialTest
from tests.tunewatch.test_comparison_loop import (
    MODEL,
    Traffic,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch import _governance as governance
from tunewatch._config import load_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConfigError
from tunewatch._example import ExampleModel
from tunewatch._split import SplitConfig, route
from tunewatch.comparison import ComparisonRunner
from tunewatch.store._schema import split_checks

SPLIT = SplitConfig(challenger=2, percent=50.0, salt="exp-1")


def test_route_is_sticky_and_matches_the_share() -> None:
    split = SplitConfig(challenger=2, percent=20.0, salt="exp-20")
    keys = [f"user-{i}" for i in range(10_000)]
    first = [route((1, 2), split, k) for k in keys]
    assert [route((1, 2), split, k) for k in keys] == first
    share = first.count(2) / len(keys)
    assert share == pytest.approx(0.20, abs=0.012)  # 3 binomial standard deviations
    other = SplitConfig(challenger=2, percent=20.0, salt="exp-21")
    assert [route((1, 2), other, k) for k in keys] != first  # a new salt reshuffles
    assert route((1, 2), split, None) == 1  # no unit: the champion answers
    assert route((1, 3), split, "user-1") == 1  # split challenger not in the lineup
    assert route((1, 2), None, "user-1") == 1


def test_split_config_refuses_a_long_salt() -> None:
    with pytest.raises(ValueError, match="at most 64 bytes"):
        SplitConfig(challenger=2, percent=10, salt="x" * 65)


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"])
def test_split_config_refuses_a_start_that_has_no_utc_time(start: str) -> None:
    """It loaded, and every store read bound to it failed with an OverflowError."""
    with pytest.raises(ValueError, match="`start` must be a time in UTC's range"):
        SplitConfig(challenger=2, percent=10, salt="s", start=start)  # type: ignore[arg-type]


@pytest.mark.parametrize("offset", ["+05:99", "-08:60", "+24:00"])
def test_split_config_refuses_a_start_whose_offset_is_no_rfc3339_offset(offset: str) -> None:
    with pytest.raises(ValueError, match=r"an offset's hours 00-23, its minutes 00-59\)"):
        SplitConfig(challenger=2, percent=10, salt="s", start=f"2026-06-01T10:00:00{offset}")  # type: ignore[arg-type]


def test_a_yaml_split_start_whose_offset_minutes_pass_59_is_a_config_error(
    tmp_path: Path,
) -> None:
    """Refused as pydantic's "unexpected extra characters at the end of the input", which
    did not say that an offset's minutes stop at 59."""
    path = tmp_path / "tw.yaml"
    path.write_text(
        "version: 1\ndata_dir: d\nmodels:\n  - name: m\n    task: binary\n"
        "    comparison:\n      split: {challenger: 2, percent: 10, salt: s,"
        " start: '2026-06-01T10:00:00+05:99'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert "models.0.comparison.split.start: Value error, `start` must be an RFC 3339" in message
    assert message.endswith("minutes 00-59), got '2026-06-01T10:00:00+05:99'"), message


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _split_traffic(
    d: Daemon, trained: list[ExampleModel], champion_share: float, *, unkeyed: int = 0
) -> None:
    """10,000 split units of one request each: the champion answers ``champion_share`` of
    them (shadowed by v3, clearly better, labelled); v2, the split's challenger, answers
    the rest alone (it never shadows: it has no paired test). Then ``unkeyed`` requests
    without a unit key, which the champion answers, v3 shadowing."""
    d.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="shadow")
    n = 10_000
    n_champion = round(n * champion_share)
    t = traffic(trained, n + unkeyed, seed=7)
    write(
        d.store,
        ids=range(n_champion),
        x=t.x[:n_champion],
        y=t.y[:n_champion],
        answers={1: t.logistic[:n_champion], 3: oracle(t.x[:n_champion])},
        units=[f"u{i}" for i in range(n_champion)],
    )
    rest = slice(n_champion, n)
    write(
        d.store,
        ids=range(n_champion, n),
        x=t.x[rest],
        y=np.zeros(n - n_champion),
        answers={2: oracle(t.x[rest])},
        roles={2: "challenger"},
        units=[f"u{i}" for i in range(n_champion, n)],
    )
    if unkeyed:
        extra = slice(n, n + unkeyed)
        write(
            d.store,
            ids=range(n, n + unkeyed),
            x=t.x[extra],
            y=t.y[extra],
            answers={1: t.logistic[extra], 3: oracle(t.x[extra])},
        )


def test_srm_on_a_53_47_split_fires_once_and_blocks_promotion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _split_traffic(daemon, trained, 0.53)
    loop = runner(daemon, split=SPLIT.model_dump())
    result = next(r for r in loop.run(MODEL) if r.kind == "paired")
    [event] = daemon.store.list_events(model=MODEL, type="srm_detected")
    assert event.payload["n_champion"] == 5300 and event.payload["n_challenger"] == 4700
    assert event.payload["p_value"] < 0.001 and event.payload["fixed_p_value"] < 1e-8
    # v3 is clearly better on the champion's requests, but the split is broken.
    assert result.decision == "challenger_better" and result.action == "blocked_srm"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert [r.action for r in loop.run(MODEL) if r.kind == "paired"] == ["blocked_srm"]
    assert len(daemon.store.list_events(model=MODEL, type="srm_detected")) == 1
    assert len(daemon.store.list_events(model=MODEL, type="promotion_blocked")) == 1


@pytest.mark.parametrize("unkeyed", [0, 1000], ids=["keyed", "with-unkeyed-traffic"])
def test_balanced_split_passes_the_check_and_promotes(
    daemon: Daemon, trained: list[ExampleModel], unkeyed: int
) -> None:
    # Requests without a unit key were never split: counted in the champion arm they
    # made a balanced split look like 55/45.
    _split_traffic(daemon, trained, 0.50, unkeyed=unkeyed)
    result = next(
        r for r in runner(daemon, split=SPLIT.model_dump()).run(MODEL) if r.kind == "paired"
    )
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []
    assert result.action == "promoted"


def test_split_test_counts_units_not_their_requests(daemon: Daemon) -> None:
    """40 units per arm answering 50 requests each: a unit's losses share the unit's
    level. The challenger arm's units happen to be easier by 0.1 nats, well inside the
    spread between units. Read as 4,000 independent requests the difference looks
    decisive; read per unit it is not, and the test keeps looking."""
    rng = np.random.default_rng(21)
    per_unit, units = 50, 40
    level = rng.normal(0.0, 0.3, (2, units)) + np.array([[0.6], [0.5]])
    loss = np.clip(
        np.tile(level, per_unit) + rng.normal(0.0, 0.05, (2, units * per_unit)),
        0.05,
        3.0,
    )
    p = np.exp(-loss)  # every label is 1, so each request's log loss is -log(p)
    n = units * per_unit
    loop = runner(
        daemon, split=SPLIT.model_dump(), min_n=30, planned_n=400, rollback={"enabled": False}
    )
    for half in (slice(0, n // 2), slice(n // 2, n)):  # units come back after the first look
        for arm, version in ((0, 1), (1, 2)):
            write(
                daemon.store,
                ids=range(arm * n + half.start, arm * n + half.stop),
                x=np.zeros((n // 2, 8), dtype=np.float32),
                y=np.ones(n // 2),
                answers={version: np.column_stack([1 - p[arm, half], p[arm, half]])},
                roles={version: "champion" if version == 1 else "challenger"},
                units=[f"a{arm}-u{i % units}" for i in range(half.start, half.stop)],
            )
        split = next(r for r in loop.run(MODEL) if r.kind == "split")
        assert split.look is not None and split.look.n == units  # units of the challenger arm
        assert split.look.decision == "continue" and split.action == "none"
    test = loop.comparisons.get_test(split.test_id)
    assert test.state["stats"][1][:2] == [units, n]  # 40 units, 2,000 outcomes
    naive = TwoSampleSequentialTest(alpha=0.05, min_n=30, planned_n=400)
    per_request = naive.update(champion=loss[0], challenger=loss[1])
    assert per_request.decision == "challenger_better"  # what counting requests concluded
    assert split.look.ci_high - split.look.ci_low > 3 * (per_request.ci_high - per_request.ci_low)


def _mismatched_split(d: Daemon, t: Traffic) -> None:
    """5,300 units in the champion's arm against 4,700 in v2's, of a 50 % split; the arms
    are served side by side (the latency guardrail compares them over the same moments):
    100 requests of each at a time."""
    n_champion = 5300
    for lo in range(0, n_champion, 100):
        ids = range(lo, lo + 100)
        write(  # the champion's arm: v2 does not shadow it, so only the split test decides
            d.store,
            ids=ids,
            x=t.x[lo : lo + 100],
            y=t.y[lo : lo + 100],
            answers={1: t.logistic[lo : lo + 100]},
            units=[f"u{i}" for i in ids],
        )
        arm = range(n_champion + lo, min(n_champion + lo + 100, 10_000))
        if arm:
            write(
                d.store,
                ids=arm,
                x=t.x[arm.start : arm.stop],
                y=t.y[arm.start : arm.stop],
                answers={2: oracle(t.x[arm.start : arm.stop])},
                roles={2: "challenger"},
                units=[f"u{i}" for i in arm],
            )


def _more_challenger_units(d: Daemon, t: Traffic, ids: range, at: datetime | None = None) -> None:
    more = slice(ids.start, ids.stop)
    write(
        d.store,
        ids=ids,
        x=t.x[more],
        y=t.y[more],
        answers={2: oracle(t.x[more])},
        roles={2: "challenger"},
        units=[f"u{i}" for i in ids],
        received_at=at,
    )


def test_a_detected_mismatch_stays_detected_while_the_arms_even_out(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The always-valid evidence is the largest Bayes factor seen: once past 1/alpha the
    split is known broken. The check re-read the current counts, so arms that evened out
    (or noise, in 35 % of simulated real 48.5/51.5 mismatches) unblocked the promotion."""
    t = traffic(trained, 12_000, seed=7)
    _mismatched_split(daemon, t)
    loop = runner(daemon, split=SPLIT.model_dump())
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "blocked_srm"  # 5,300 against 4,700 units
    first = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert first is not None and first.mismatch
    _more_challenger_units(daemon, t, range(10_000, 10_600))  # 5,300 against 5,300
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "blocked_srm"
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert (
        check is not None
        and check.mismatch
        and (check.n_champion, check.n_challenger)
        == (
            5300,
            5300,
        )
    )
    assert check.p_value == first.p_value  # the running minimum: the evidence seen
    assert len(daemon.store.list_events(model=MODEL, type="srm_detected")) == 1
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1


def test_a_split_decision_blocked_by_a_mismatch_acts_once_a_new_start_counts_afresh(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A decided split test returned early at every later run, so a promotion blocked by
    the sample-ratio check was never retried (paired tests retry). A mismatch ends when
    the operator restarts the count (a later `start`, after fixing the assignment)."""
    t = traffic(trained, 12_000, seed=7)
    _mismatched_split(daemon, t)
    loop = runner(daemon, split=SPLIT.model_dump())
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "blocked_srm"
    restart = datetime.now(UTC)
    later = restart + timedelta(seconds=1)
    for lo in range(10_000, 11_000, 100):  # the fixed assignment: 500 units in each arm
        ids = range(lo, lo + 50)
        write(
            daemon.store,
            ids=ids,
            x=t.x[lo : lo + 50],
            y=t.y[lo : lo + 50],
            answers={1: t.logistic[lo : lo + 50]},
            units=[f"u{i}" for i in ids],
            received_at=later,
        )
        _more_challenger_units(daemon, t, range(lo + 50, lo + 100), at=later)
    loop = runner(daemon, split=SPLIT.model_dump() | {"start": restart})
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "promoted"
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert check is not None and not check.mismatch
    assert (check.n_champion, check.n_challenger) == (500, 500)
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def _serve_split(
    d: Daemon,
    t: Traffic,
    units: range,
    champion: int,
    *,
    shadowed: bool,
    received_at: datetime | None = None,
) -> int:
    """One request per unit, routed by ``SPLIT`` between ``champion`` (answering like the
    logistic model) and v2 (the oracle); ``shadowed``: v2 scores the champion's requests
    too, as a split challenger in the lineup does. Returns how many units v2 answered."""
    arm = {u: route((champion, 2), SPLIT, f"u{u}") for u in units}
    ours = [u for u in units if arm[u] == champion]
    theirs = [u for u in units if arm[u] == 2]
    answers = {champion: t.logistic[ours]}
    if shadowed:
        answers[2] = oracle(t.x[ours])
    write(
        d.store,
        ids=ours,
        x=t.x[ours],
        y=t.y[ours],
        answers=answers,
        roles={champion: "champion", 2: "challenger"},
        units=[f"u{u}" for u in ours],
        received_at=received_at,
    )
    write(
        d.store,
        ids=theirs,
        x=t.x[theirs],
        y=t.y[theirs],
        answers={2: oracle(t.x[theirs])},
        roles={2: "challenger"},
        units=[f"u{u}" for u in theirs],
        received_at=received_at,
    )
    return len(theirs)


def test_a_promotion_during_a_split_is_no_sample_ratio_mismatch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """After another version was promoted mid-split, the champion arm counted only the new
    champion's units since the split began, the challenger arm all of v2's: a false
    mismatch that raised srm_detected and blocked every promotion (v2's too). The check
    counts every unit a champion answered since the split began; the split test starts
    again at the promotion: the new champion's split test is not fed v2's units from
    before it."""
    v3 = trained[0]  # another shadow challenger: a copy of the logistic champion
    copy = dataclasses.replace(v3.metadata, dataset_version="copy")  # v1 again: a retry
    daemon.registry.register(
        MODEL, v3.onnx, copy, actor="t", stage="shadow", reference=v3.reference
    )  # type: ignore[arg-type]
    t = traffic(trained, 5000, seed=7)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    split = SPLIT.model_copy(update={"start": an_hour_ago - timedelta(hours=1)})
    loop = runner(daemon, split=split.model_dump())
    _serve_split(daemon, t, range(0, 1000), 1, shadowed=False, received_at=an_hour_ago)
    loop.run(MODEL)
    before = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
    assert before is not None and not before.mismatch
    governance.promote(daemon.store, daemon.config, MODEL, 3, actor="op", reason="by hand")
    for lo in range(1000, 5000, 200):  # v2 shadows the new champion: it wins, paired
        alone = _serve_split(daemon, t, range(lo, lo + 200), 3, shadowed=True)
        results = loop.run(MODEL)
        check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
        assert check is not None and not check.mismatch, check
        if lo == 1000:
            assert (check.n_champion + check.n_challenger, check.champion_version) == (1200, 3)
            [test] = [r for r in results if r.kind == "split"]
            assert test.champion_version == 3 and test.look is not None
            assert test.look.n == alone
        if daemon.store.get_version(MODEL, 2).stage == "champion":
            break
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []
    assert daemon.store.list_events(model=MODEL, type="promotion_blocked") == []
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def test_a_promotion_does_not_clear_a_real_sample_ratio_mismatch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The sample-ratio check's window moved to the newest promotion: a split sending 40 %
    of units to v2 (50 % configured) counted from zero after v3 was promoted, the first
    checks found no mismatch, and a challenger far better on the new champion's requests
    (v4 here) was promoted while the routing was still broken. The check counts from the
    split's start (every unit a champion answered is the champion arm's); only the split
    test, the new champion's, starts at the promotion."""
    v3 = trained[0]  # another shadow challenger: a copy of the logistic champion
    copy = dataclasses.replace(v3.metadata, dataset_version="copy")  # v1 again: a retry
    daemon.registry.register(
        MODEL, v3.onnx, copy, actor="t", stage="shadow", reference=v3.reference
    )  # type: ignore[arg-type]
    # v4 shadows the champions (v2, the split's challenger, never does)
    v4 = trained[1]
    daemon.registry.register(MODEL, v4.onnx, v4.metadata, actor="t", stage="shadow")
    t = traffic(trained, 2100, seed=7)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    split = SPLIT.model_copy(update={"start": an_hour_ago - timedelta(hours=1)})
    loop = runner(daemon, split=split.model_dump(), rollback={"enabled": False}, min_n=100)

    def serve(units: range, champion: int, **kw: object) -> None:
        """40 % of ``units`` answered by v2 alone, the rest by ``champion`` shadowed by
        v4 scoring close to each label (far better)."""
        theirs = [u for u in units if u % 5 < 2]
        ours = [u for u in units if u % 5 >= 2]
        near = np.clip(t.y[ours], 0.1, 0.9)
        for ids, answers, roles in (
            (ours, {champion: t.logistic[ours], 4: np.column_stack([1 - near, near])}, None),
            (theirs, {2: oracle(t.x[theirs])}, {2: "challenger"}),
        ):
            write(
                daemon.store,
                ids=ids,
                x=t.x[ids],
                y=t.y[ids],
                answers=answers,
                roles=roles or {champion: "champion", 4: "challenger"},
                units=[f"u{u}" for u in ids],
                labelled=[False] * len(ids) if champion == 1 else None,
                **kw,  # type: ignore[arg-type]
            )

    serve(range(0, 1500), 1, received_at=an_hour_ago)
    loop.run(MODEL)
    before = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
    assert before is not None and before.mismatch  # 900 against 600 units
    governance.promote(daemon.store, daemon.config, MODEL, 3, actor="op", reason="by hand")
    for lo in range(1500, 2100, 200):  # the same broken routing goes on
        serve(range(lo, lo + 200), 3)
        paired = next(r for r in loop.run(MODEL) if r.kind == "paired")
        check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
        assert check is not None and check.mismatch, check
        assert (check.champion_version, check.n_champion + check.n_challenger) == (3, lo + 200)
        if paired.decision == "challenger_better":
            assert paired.action == "blocked_srm"
    assert paired.decision == "challenger_better"
    assert len(daemon.store.list_events(model=MODEL, type="srm_detected")) == 1  # one episode
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3


def test_a_bounded_objective_gives_the_split_test_its_loss_range_and_cube_sums(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    """A cost matrix bounds what one request can cost: the split test allows for a costly
    miss neither arm has shown yet, and keeps the cube sums its skewness rule needs
    (shadow.stats.TwoSampleSequentialTest: 35 % of seeded equal-cost splits were called
    for the rare-miss model without them)."""
    cost = {"name": "cost", "params": {"cost_matrix": [[0, 1], [20, 0]]}}
    d = copy_daemon(
        template, tmp_path / "cost", models=[{"name": MODEL, "task": "binary", "objective": cost}]
    )
    try:
        t = traffic(trained, 200, seed=8)
        for arm, version in ((0, 1), (1, 2)):
            rows = slice(arm * 100, arm * 100 + 100)
            write(
                d.store,
                ids=range(rows.start, rows.stop),
                x=t.x[rows],
                y=t.y[rows],
                answers={version: oracle(t.x[rows])},
                roles={version: "champion" if version == 1 else "challenger"},
                units=[f"u{i}" for i in range(rows.start, rows.stop)],
            )
        loop = runner(
            d,
            split=SPLIT.model_dump(),
            rollback={"enabled": False},
            method="msprt",
            mixing_sd=0.3,
        )
        [split] = [r for r in loop.run(MODEL) if r.kind == "split"]
        state = loop.comparisons.get_test(split.test_id).state
        assert state["config"]["loss_range"] == 20.0
        assert state["config"]["mixing_sd"] == 0.3  # as the paired tests have it
        assert np.asarray(state["stats_with_cubes"]).shape == (2, 10)
        assert state["stats"][1][:2] == [100, 100]
    finally:
        d.close()


def test_a_promoted_split_challenger_raises_no_mismatch_and_blocks_nothing(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Once the split's own challenger (v2) is champion, every unit is counted in the
    champion arm: the check reported a mismatch (srm_detected) and blocked every later
    promotion — v3's here — until an operator changed the split. A split whose challenger
    left shadow splits nothing: it is not checked and blocks nothing."""
    t = traffic(trained, 3000, seed=7)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    split = SPLIT.model_copy(update={"start": an_hour_ago - timedelta(hours=1)})
    loop = runner(daemon, split=split.model_dump(), rollback={"enabled": False})
    _serve_split(daemon, t, range(0, 1000), 1, shadowed=False, received_at=an_hour_ago)
    loop.run(MODEL)
    before = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
    assert before is not None and not before.mismatch
    governance.promote(daemon.store, daemon.config, MODEL, 2, actor="op", reason="split won")
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    paired = None
    for lo in range(1000, 3000, 200):  # v2 answers every unit; v3 shadows it, far better
        ids = range(lo, lo + 200)
        near = np.clip(t.y[lo : lo + 200], 0.1, 0.9)
        write(
            daemon.store,
            ids=ids,
            x=t.x[lo : lo + 200],
            y=t.y[lo : lo + 200],
            answers={2: t.logistic[lo : lo + 200], 3: np.column_stack([1 - near, near])},
            roles={2: "champion", 3: "challenger"},
            units=[f"u{u}" for u in ids],
        )
        paired = next(r for r in loop.run(MODEL) if r.kind == "paired")
        if paired.action != "none":
            break
    assert paired is not None and paired.action == "promoted", paired
    assert loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt) == before
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []
    assert daemon.store.list_events(model=MODEL, type="promotion_blocked") == []
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3


def test_a_split_challenger_back_in_shadow_is_checked_from_its_return(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2, the split's challenger, was champion for a while and then kept in shadow (as a
    rollback watch keeps a replaced champion): the check counted from the split's start,
    every unit of v2's time as champion in the champion arm, and a balanced split after
    its return read as a mismatch that blocked promotions. Units count from when the
    challenger last entered shadow."""
    t = traffic(trained, 3000, seed=7)
    now = datetime.now(UTC)
    split = SPLIT.model_copy(update={"start": now - timedelta(hours=3)})
    loop = runner(daemon, split=split.model_dump(), rollback={"enabled": False})
    # no watch (the loop's rollback is off): the promotions below keep nothing in shadow
    monkeypatch.setattr(governance, "watch_keeps_previous", lambda *args: False)
    _serve_split(daemon, t, range(0, 1000), 1, shadowed=False, received_at=now - timedelta(hours=2))
    loop.run(MODEL)
    before = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
    assert before is not None and not before.mismatch
    governance.promote(daemon.store, daemon.config, MODEL, 2, actor="op", reason="split won")
    write(  # v2 answers every unit as champion
        daemon.store,
        ids=range(1000, 2000),
        x=t.x[1000:2000],
        y=t.y[1000:2000],
        answers={2: t.logistic[1000:2000]},
        roles={2: "champion"},
        units=[f"u{u}" for u in range(1000, 2000)],
        received_at=now - timedelta(hours=1),
    )
    daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")  # v3
    governance.promote(daemon.store, daemon.config, MODEL, 3, actor="op", reason="by hand")
    daemon.store.set_stage(MODEL, 2, "shadow", actor="op", reason="kept for the watch")
    _serve_split(daemon, t, range(2000, 3000), 3, shadowed=False)
    loop.run(MODEL)
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt)
    assert check is not None and check.champion_version == 3
    assert check.n_champion + check.n_challenger == 1000 and not check.mismatch, check
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []


@pytest.fixture
def split_daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    """The example models with ``SPLIT`` configured, so the runtime routes by it."""
    d = copy_daemon(
        template,
        tmp_path / "split",
        models=[{"name": MODEL, "task": "binary", "comparison": {"split": SPLIT.model_dump()}}],
    )
    yield d
    d.close()


def _answered(d: Daemon, t: Traffic, units: range) -> dict[int, int]:
    """How many of one request per unit each version answers as the runtime routes them,
    and (key 0) how many of them v2 shadowed."""
    served = d.runtime.model(MODEL)
    counts: dict[int, int] = {}
    for u in units:
        scored = d.runtime.score(served, t.x[u : u + 1], unit_key=f"u{u}")
        counts[scored.version.version] = counts.get(scored.version.version, 0) + 1
        if 2 in [c.version for c in scored.challengers]:
            counts[0] = counts.get(0, 0) + 1
    return counts


def _v2_kept_for_v3_s_watch(d: Daemon, trained: list[ExampleModel]) -> ComparisonRunner:
    """v2, the split's challenger, won and was promoted; v3 replaced it later: v3's
    paired rollback watch compares it with v2, kept in shadow."""
    v3 = trained[0]
    d.registry.register(MODEL, v3.onnx, v3.metadata, actor="t", stage="shadow")
    loop = runner(d, split=SPLIT.model_dump())
    governance.promote(d.store, d.config, MODEL, 2, actor="op", reason="v2 won the split")
    loop.run(MODEL)
    governance.promote(d.store, d.config, MODEL, 3, actor="op", reason="v3 now")
    d.runtime.load(MODEL)
    return loop


def test_a_split_challenger_kept_for_a_rollback_watch_only_shadows(
    split_daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v3's watch moved v2 back to shadow; v2 being the split's challenger, it answered
    half the live traffic (602 of 1,200 requests), never shadowed v3 (the watch got no
    pair: open for ever), and a split test v3 vs v2 started that could promote v2 back.
    While a watch keeps it, it shadows the champion and nothing splits."""
    d = split_daemon
    t = traffic(trained, 600, seed=7)
    loop = _v2_kept_for_v3_s_watch(d, trained)
    [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    assert (watch.champion_version, watch.challenger_version, watch.status) == (2, 3, "open")
    assert d.store.get_version(MODEL, 2).stage == "shadow"
    assert _answered(d, t, range(0, 200)) == {3: 200, 0: 200}  # v3 answers, v2 shadows
    write(  # as the runtime records them: v3 answers, v2 shadows
        d.store,
        ids=range(0, 400),
        x=t.x[:400],
        y=t.y[:400],
        answers={3: t.logistic[:400], 2: oracle(t.x[:400])},
        roles={3: "champion", 2: "challenger"},
        units=[f"u{u}" for u in range(400)],
    )
    results = loop.run(MODEL)
    [watch] = [r for r in results if r.kind == "rollback_watch"]
    assert watch.fed == 400 and watch.look is not None and watch.look.n == 400
    assert [r for r in results if r.kind == "split"] == []
    assert loop.comparisons.list_tests(MODEL, kind="split", champion_version=3) == []
    assert loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2) is None


def test_a_split_resumes_after_the_watch_that_paused_it_from_the_watch_s_end(
    split_daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2 was back in shadow (the operator's doing) when v3's watch began: the watch
    compares with it and leaves it there. When the watch ends the split answers again
    (a replica's refresh notices), and its sample-ratio check counts from the watch's end:
    every unit of the watch was the champion's, no mismatch."""
    d = split_daemon
    t = traffic(trained, 2000, seed=7)
    loop = _v2_kept_for_v3_s_watch(d, trained)
    d.store.set_stage(MODEL, 2, "shadow", actor="operator", reason="keep comparing")
    [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    assert (watch.champion_version, watch.challenger_version, watch.status) == (2, 3, "open")
    assert _answered(d, t, range(0, 200)) == {3: 200, 0: 200}
    # During the watch v3 answers 300 units, v2 shadows them (both alike): received
    # after v2's return to shadow (stamped from it: 10 ms of requests), before the end.
    returned = d.store.get_version(MODEL, 2).stage_changed_at
    for lo in range(0, 300, 10):
        write(
            d.store,
            ids=range(lo, lo + 10),
            x=t.x[lo : lo + 10],
            y=t.y[lo : lo + 10],
            answers={3: t.logistic[lo : lo + 10], 2: t.logistic[lo : lo + 10]},
            roles={3: "champion", 2: "challenger"},
            units=[f"u{u}" for u in range(lo, lo + 10)],
            received_at=returned + timedelta(milliseconds=1),
        )
    assert d.runtime.refresh() == []
    runner(d, split=SPLIT.model_dump(), rollback={"enabled": False}).run(MODEL)
    [ended] = loop.comparisons.list_tests(MODEL, kind="rollback_watch", champion_version=2)
    assert ended.status == "closed" and d.store.get_version(MODEL, 2).stage == "shadow"
    assert ended.decided_at is not None and ended.decided_at > returned + timedelta(seconds=0.02)
    assert d.runtime.refresh() == [MODEL]
    counts = _answered(d, t, range(1000, 2000))
    assert 0 not in counts and 450 <= counts[2] <= 550  # 50 % of 1,000 units, 3 standard deviations
    _serve_split(d, t, range(1000, 2000), 3, shadowed=False)
    loop.run(MODEL)
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert check is not None and check.n_champion + check.n_challenger == 1000, check  # not 1300
    assert not check.mismatch
    assert d.store.list_events(model=MODEL, type="srm_detected") == []


def _serve_arms(
    d: Daemon, t: Traffic, n: int, champion_share: float, *, first_id: int, at: datetime
) -> tuple[int, int]:
    """Labelled requests ``first_id`` … of ``n`` units, one each (rows of ``t`` from its
    first): ``champion_share`` of them answered by the champion (v1, not shadowed), the
    rest by v2 alone. Returns the units of each arm."""
    k = round(n * champion_share)
    for rows, answers, roles in (
        (slice(0, k), {1: t.logistic[:k]}, {1: "champion"}),
        (slice(k, n), {2: oracle(t.x[k:n])}, {2: "challenger"}),
    ):
        ids = range(first_id + rows.start, first_id + rows.stop)
        write(
            d.store,
            ids=ids,
            x=t.x[rows],
            y=t.y[rows],
            answers=answers,
            roles=roles,
            units=[f"u{i}" for i in ids],
            received_at=at,
        )
    return k, n - k


def _broken_split_blocks(d: Daemon, t: Traffic) -> None:
    """The mismatched split of 5,300 against 4,700 units: the check finds the mismatch
    and blocks the decided split test's promotion."""
    _mismatched_split(d, t)
    split = next(r for r in runner(d, split=SPLIT.model_dump()).run(MODEL) if r.kind == "split")
    assert split.action == "blocked_srm"


def test_a_new_start_clears_a_mismatch_when_it_counts_more_units_than_the_mismatch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The count restarted at a later `start` (the assignment fixed) already held more
    units than the check that found the mismatch: judged "the same count grown" by its
    total alone, the check kept the old mismatch and p-value (a balanced 5,500/5,500
    read as a mismatch) and blocked promotions for good. A check carries
    evidence over only from a check of the same split counted from the same start."""
    _broken_split_blocks(daemon, traffic(trained, 12_000, seed=7))
    restart = datetime.now(UTC)
    later = restart + timedelta(seconds=1)
    t = traffic(trained, 11_000, seed=8)
    fixed = _serve_arms(daemon, t, 11_000, 0.5, first_id=20_000, at=later)
    loop = runner(daemon, split=SPLIT.model_dump() | {"start": restart})
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert check is not None and (check.n_champion, check.n_challenger) == fixed == (5500, 5500)
    assert not check.mismatch and check.p_value > 0.001
    assert split.action == "promoted"
    assert len(daemon.store.list_events(model=MODEL, type="srm_detected")) == 1
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def test_a_new_start_under_the_minimum_count_does_not_fall_back_on_the_old_mismatch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """While the restarted count is under `srm_min_requests` the check has nothing to
    say: the runner read the newest check instead, the mismatch of the count before the
    restart, and kept blocking. Only a check of the same split and start stands in."""
    _broken_split_blocks(daemon, traffic(trained, 12_000, seed=7))
    restart = datetime.now(UTC)
    later = restart + timedelta(seconds=1)
    _serve_arms(daemon, traffic(trained, 200, seed=8), 200, 0.5, first_id=20_000, at=later)
    loop = runner(daemon, split=SPLIT.model_dump() | {"start": restart}, srm_min_requests=1000)
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "promoted"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def _serve_routed(
    d: Daemon,
    t: Traffic,
    split: SplitConfig,
    ids: range,
    keys: range,
    received_at: datetime | None = None,
) -> tuple[int, int]:
    """Requests ``ids``, one for each unit of ``keys``, answered as ``split`` routes them
    and recorded as the inference path records them; not labelled (no test decides).
    Returns the units of each arm."""
    arm = [route((1, 2), split, f"u{k}") for k in keys]
    ours = [i for i, a in zip(ids, arm, strict=True) if a == 1]
    theirs = [i for i, a in zip(ids, arm, strict=True) if a == 2]
    unit = dict(zip(ids, keys, strict=True))
    for rows, answers in ((ours, {1: t.logistic[ours]}), (theirs, {2: oracle(t.x[theirs])})):
        write(
            d.store,
            ids=rows,
            x=t.x[rows],
            y=t.y[rows],
            answers=answers,
            roles={1: "champion", 2: "challenger"},
            units=[f"u{unit[i]}" for i in rows],
            labelled=[False] * len(rows),
            received_at=received_at,
        )
    return len(ours), len(theirs)


@pytest.mark.parametrize(
    "changed",
    [{"percent": 50.0}, {"salt": "exp-10-again"}],
    ids=["share-ramped-to-50", "new-salt"],
)
def test_a_split_whose_share_or_salt_changes_is_counted_from_the_change(
    daemon: Daemon, trained: list[ExampleModel], changed: dict[str, object]
) -> None:
    """A 10 % split ramped to 50 % (or reshuffled with a new salt) on the same start,
    traffic routed exactly as configured throughout: the check went on counting from the
    split's start, units assigned under both settings (a returning unit that changed arms
    in both), a false mismatch (3,477/1,618 units after a ramp, expected share 0.5) that
    raised srm_detected and blocked promotions for good. A new share or salt is a new
    split: its units count from the first check that saw it, and only from requests
    stamped after every request recorded by then (a host whose clock runs a minute ahead
    stamped some of the old settings' requests after that check)."""
    t = traffic(trained, 6300, seed=7)
    now = datetime.now(UTC)
    an_hour_ago = now - timedelta(hours=1)
    before = SplitConfig(challenger=2, percent=10.0, salt="exp-10", start=an_hour_ago)
    after = before.model_copy(update=changed)
    _serve_routed(daemon, t, before, range(0, 3000), range(0, 3000), received_at=an_hour_ago)
    ahead = now + timedelta(minutes=1)
    _serve_routed(daemon, t, before, range(6000, 6300), range(5000, 5300), received_at=ahead)
    first = runner(daemon, split=before.model_dump()).run(MODEL)
    assert [r.action for r in first if r.kind == "split"] == ["none"]
    loop = runner(daemon, split=after.model_dump())
    assert [r.action for r in loop.run(MODEL) if r.kind == "split"] == ["none"]
    seen = loop.comparisons.latest_split_check(MODEL, salt=after.salt, challenger_version=2)
    assert seen is not None and seen.percent == after.percent  # when the change was seen
    assert (seen.n_champion, seen.n_challenger, seen.mismatch) == (0, 0, False)
    # Units come back (u1500 … u2999) and new ones arrive, routed by the new settings.
    later = ahead + timedelta(minutes=1)
    served = _serve_routed(daemon, t, after, range(3000, 6000), range(1500, 4500), later)
    assert [r.action for r in loop.run(MODEL) if r.kind == "split"] == ["none"]
    check = loop.comparisons.latest_split_check(MODEL, salt=after.salt, challenger_version=2)
    assert check is not None and check.percent == after.percent
    assert (check.n_champion, check.n_challenger) == served  # the units since the change
    assert not check.mismatch
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []


def test_a_share_ramped_before_the_split_s_first_check_counted_is_counted_from_the_ramp(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Fewer units than ``srm_min_requests`` came at 10 %, so no check was stored; ramped to
    50 %, the first stored check had nothing to compare the settings with and counted
    from the split's start, both shares mixed: a false mismatch (189/110 units, p 7e-4)
    that blocked promotions. The split's first check is stored, untested, to date its
    settings."""
    t = traffic(trained, 400, seed=7)
    now = datetime.now(UTC)
    an_hour_ago = now - timedelta(hours=1)
    before = SplitConfig(challenger=2, percent=10.0, salt="exp-10", start=an_hour_ago)
    after = before.model_copy(update={"percent": 50.0})
    _serve_routed(daemon, t, before, range(0, 99), range(0, 99), received_at=an_hour_ago)
    first = runner(daemon, split=before.model_dump()).run(MODEL)
    assert [r.action for r in first if r.kind == "split"] == ["none"]
    loop = runner(daemon, split=after.model_dump())
    assert [r.action for r in loop.run(MODEL) if r.kind == "split"] == ["none"]
    later = now + timedelta(minutes=2)
    served = _serve_routed(daemon, t, after, range(100, 400), range(100, 400), later)
    assert [r.action for r in loop.run(MODEL) if r.kind == "split"] == ["none"]
    check = loop.comparisons.latest_split_check(MODEL, salt=after.salt, challenger_version=2)
    assert check is not None and (check.n_champion, check.n_challenger) == served
    assert not check.mismatch
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []


def test_a_mismatch_found_before_checks_recorded_their_count_stays_detected(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A check stored before revision 0016 records no count start: the next check of the
    same split takes it for the same count when it holds at least as many units, as
    checks did then, so an upgrade does not clear a mismatch the arms evened out since."""
    t = traffic(trained, 12_000, seed=7)
    _mismatched_split(daemon, t)
    loop = runner(daemon, split=SPLIT.model_dump())
    loop.run(MODEL)
    first = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert first is not None and first.mismatch
    with daemon.store.engine.begin() as conn:  # as revision 0016 leaves an older check
        conn.execute(sa.update(split_checks).values(since=None, settings_since=None))
    _more_challenger_units(daemon, t, range(10_000, 10_600))  # 5,300 against 5,300
    split = next(r for r in loop.run(MODEL) if r.kind == "split")
    assert split.action == "blocked_srm"
    check = loop.comparisons.latest_split_check(MODEL, salt=SPLIT.salt, challenger_version=2)
    assert check is not None and (check.n_champion, check.n_challenger) == (5300, 5300)
    assert check.mismatch and check.p_value == first.p_value
    window = daemon.store.latest_split_window(MODEL)
    assert window is not None and window.check == check and window.since is not None
