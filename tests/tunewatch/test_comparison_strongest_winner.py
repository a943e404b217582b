"""Two challengers decided better than the champion in one run: the one that improves
most is promoted, and the other, never compared with the new champion, is closed.

Acting in version order promoted v2 (estimate -0.114, adjusted p 4.8e-4) over v3
(-0.267, p 9e-17) at 600 requests; v3's evidence was thrown away and it needed a second
test of 600 requests and a second promotion."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    auc_daemon,  # noqa: F401  (fixture)
    daemon,  # noqa: F401  (fixture)
    promote_actions,
    runner,
    template,  # noqa: F401  (module fixture)
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.comparison import ComparisonResult
from tunewatch.comparison._runner_family import strength
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonTestRow, TestKind


def _log_loss_outputs(y: np.ndarray, differences: np.ndarray) -> np.ndarray:
    """Outputs whose log loss exceeds a model's that gives the true class 0.6 by
    ``differences`` (negative: lower loss)."""
    q = 0.6 * np.exp(-differences)
    p1 = np.where(y == 1, q, 1.0 - q)
    return np.column_stack([1.0 - p1, p1]).astype(np.float32)


def _scores(y: np.ndarray, signal: float, rng: np.random.Generator) -> np.ndarray:
    """Binary outputs whose positive-class score separates the classes by ``signal``
    standard deviations (0: no better than chance)."""
    z = rng.normal(size=y.shape[0]) + signal * y
    p1 = 1.0 / (1.0 + np.exp(-z))
    return np.column_stack([1.0 - p1, p1]).astype(np.float32)


def _by_version(results: list[ComparisonResult], kind: str) -> dict[int, ComparisonResult]:
    return {r.challenger_version: r for r in results if r.kind == kind}


def _register_v3(d: Daemon, trained: list[ExampleModel]) -> None:
    d.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")


def test_the_larger_loss_improvement_is_promoted_when_two_challengers_win_at_once(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """v2 lowers the log loss by 0.1 a request, v3 by 0.3: both are decided better at the
    first look past the burn-in, and v3, the larger improvement, is promoted."""
    _register_v3(daemon, trained)
    n = 600
    x, _ = example_data(n, seed=3)
    y = (np.arange(n) % 3 == 0).astype(np.float64)
    spread = np.where(np.arange(n) % 2 == 0, 0.3, -0.3)  # symmetric, as the Holm test's
    write(
        daemon.store,
        ids=range(n),
        x=x,
        y=y,
        answers={
            1: _log_loss_outputs(y, np.zeros(n)),
            2: _log_loss_outputs(y, -0.1 + spread),
            3: _log_loss_outputs(y, -0.3 + spread),
        },
    )
    results = _by_version(runner(daemon).run(MODEL), "paired")
    assert {v: r.decision for v, r in results.items()} == {
        2: "challenger_better",
        3: "challenger_better",
    }
    looks = {v: r.look for v, r in results.items()}
    assert looks[2] is not None and looks[3] is not None
    assert looks[3].estimate is not None and looks[2].estimate is not None
    assert looks[3].estimate < looks[2].estimate < 0  # lower loss: v3 improves more
    assert (results[3].action, results[2].action) == ("promoted", "closed")
    assert results[2].detail == ("the champion changed before promotion",)
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3
    assert [kind for kind, _ in promote_actions(daemon)] == ["action_taken"]


def test_the_larger_auc_gain_is_promoted_when_two_challengers_win_at_once(
    auc_daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """A DeLong test's estimate is the challenger's AUC minus the champion's (higher is
    better): of two challengers decided better at the same look, v3, whose AUC gain is
    the larger, is promoted, and v2 is closed."""
    d = auc_daemon
    _register_v3(d, trained)
    n = 500
    rng = np.random.default_rng(5)
    x, _ = example_data(n, seed=5)
    y = (np.arange(n) % 2 == 0).astype(np.float64)
    write(
        d.store,
        ids=range(n),
        x=x,
        y=y,
        answers={1: _scores(y, 0.0, rng), 2: _scores(y, 1.5, rng), 3: _scores(y, 3.0, rng)},
    )
    results = _by_version(runner(d, delong_look_every=500, delong_looks=5).run(MODEL), "delong")
    assert {v: r.decision for v, r in results.items()} == {
        2: "challenger_better",
        3: "challenger_better",
    }
    looks = {v: r.look for v, r in results.items()}
    assert looks[2] is not None and looks[3] is not None
    assert looks[3].estimate is not None and looks[2].estimate is not None
    assert looks[3].estimate > looks[2].estimate > 0  # higher AUC: v3 gains more
    assert (results[3].action, results[2].action) == ("promoted", "closed")
    champion = d.store.champion(MODEL)
    assert champion is not None and champion.version == 3


_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _winner(kind: TestKind, version: int) -> ComparisonTestRow:
    return ComparisonTestRow(
        id=version,
        model=MODEL,
        kind=kind,
        champion_version=1,
        challenger_version=version,
        status="decided",
        decision="challenger_better",
        correction="holm",
        n=600,
        looks=1,
        state={},
        outcome=None,
        created_at=_AT,
        updated_at=_AT,
        decided_at=_AT,
    )


def _look(test: ComparisonTestRow, estimate: float | None, adjusted_p: float) -> ComparisonLookRow:
    return ComparisonLookRow(
        id=test.id,
        test_id=test.id,
        model=MODEL,
        kind=test.kind,
        champion_version=1,
        challenger_version=test.challenger_version,
        method="m",
        n=600,
        estimate=estimate,
        ci_low=None,
        ci_high=None,
        p_value=adjusted_p,
        adjusted_p_value=adjusted_p,
        decision="challenger_better",
        fixed_t_p=None,
        bootstrap_ci=None,
        correction=test.correction,
        family_size=4,
        created_at=_AT,
    )


def _strongest(kind: TestKind, looks: dict[int, tuple[float | None, float]]) -> list[int]:
    keyed = {v: strength(_winner(kind, v), _look(_winner(kind, v), *e)) for v, e in looks.items()}
    return sorted(keyed, key=keyed.__getitem__)


def test_winners_rank_by_improvement_then_adjusted_p_then_version() -> None:
    """A paired estimate is a loss difference (lower is better), a DeLong one an AUC
    difference (higher is better); equal improvements go to the smaller adjusted p, then
    the lower version; a winner without an estimate comes last."""
    looks = {2: (-0.1, 0.01), 3: (-0.3, 0.04), 4: (-0.3, 0.01), 5: (-0.3, 0.01), 6: (None, 0.0)}
    assert _strongest("paired", looks) == [4, 5, 3, 2, 6]
    auc = {2: (0.02, 0.01), 3: (0.08, 0.04), 4: (0.08, 0.01), 5: (0.08, 0.01), 6: (None, 0.0)}
    assert _strongest("delong", auc) == [4, 5, 3, 2, 6]
