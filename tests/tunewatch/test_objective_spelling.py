"""An objective is compared by what it is, not by how the config spells it. Writing out a
parameter's default (``accuracy {threshold: 0.5}`` for ``accuracy {}``) closed every
open A/B and shadow test as "objective changed" — 700-request tests restarted with no
evidence — and a rollback watch likewise, retiring the kept champion. A test recorded
before the fix holds the params as written (``{}``): it is resolved (defaults filled in)
before it is compared. A real change (``threshold`` 0.5 -> 0.6) still closes the test.
``f_beta`` has no per-request loss and is no binary model's ``roc_auc``: no A/B test
compares under it, so its spellings are checked on the key alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.objectives import make_objective
from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_objective_change import (
    _calibration_against_decisions,
    _feed,
    _of_kind,
)
from tests.tunewatch.test_comparison_watch import _promote_v2, _watch
from tests.tunewatch.test_decay_reads import (
    HORIZON,
    HORIZON_WINDOWS,
    MATURITY_S,
    WINDOW_S,
    _first_edge,
    _Spy,
    _Stream,
)
from tests.tunewatch.test_evaluation import _champion_daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._decay_windows import DecayWindowCache
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._example import ExampleModel
from tunewatch.comparison._measured_objective import (
    MeasuredObjective,
    recorded_objective,
)


def _models(name: str, params: dict[str, Any]) -> list[dict[str, object]]:
    return [{"name": MODEL, "task": "binary", "objective": {"name": name, "params": params}}]


def _reopen(d: Daemon, name: str, params: dict[str, Any]) -> Daemon:
    """The operator spells the objective ``name`` ``params`` and restarts the daemon."""
    data_dir = d.config.data_dir
    d.close()
    config = build_config(
        {
            "data_dir": str(data_dir),
            "scheduler": {"enabled": False},
            "models": _models(name, params),
        },
        env={},
    )
    return Daemon(config, env={})


def _start(template: Path, tmp_path: Path, name: str, params: dict[str, Any]) -> Daemon:  # noqa: F811
    return copy_daemon(template, tmp_path / "data", models=_models(name, params))


@pytest.mark.parametrize(
    ("name", "recorded", "configured"),
    [
        pytest.param("accuracy", {}, {"threshold": 0.5}, id="accuracy-threshold-written-out"),
        pytest.param("accuracy", {"threshold": 0.5}, {}, id="accuracy-threshold-left-out"),
    ],
)
def test_spelling_out_a_default_keeps_the_open_test(
    template: Path,  # noqa: F811
    tmp_path: Path,
    name: str,
    recorded: dict[str, Any],
    configured: dict[str, Any],
) -> None:
    data = _calibration_against_decisions(900)
    d = _start(template, tmp_path, name, recorded)
    try:
        _feed(d, data, 0, 300, minute=0)
        runner(d, min_n=5000, planned_n=20_000).run(MODEL)
        [before] = runner(d).comparisons.list_tests(MODEL)
        assert before.status == "open" and before.state["objective"]["params"] == recorded
        d = _reopen(d, name, configured)
        loop = runner(d, min_n=5000, planned_n=20_000)
        _feed(d, data, 300, 600, minute=1)
        results = loop.run(MODEL)
        assert [r for r in results if r.action == "closed"] == [], results
        [after] = loop.comparisons.list_tests(MODEL)
        assert (after.id, after.kind, after.status) == (before.id, before.kind, "open")
        assert after.n > before.n  # it went on reading: the evidence is kept
    finally:
        d.close()


def test_a_real_change_of_a_parameter_still_closes_the_test(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    data = _calibration_against_decisions(600)
    d = _start(template, tmp_path, "accuracy", {"threshold": 0.5})
    try:
        _feed(d, data, 0, 300, minute=0)
        [first] = _of_kind(runner(d).run(MODEL), "paired")
        d = _reopen(d, "accuracy", {"threshold": 0.6})
        loop = runner(d)
        _feed(d, data, 300, 600, minute=1)
        closed, successor = _of_kind(loop.run(MODEL), "paired")
        assert (closed.test_id, closed.action) == (first.test_id, "closed")
        assert closed.detail[0].startswith("objective changed from accuracy"), closed.detail
        assert successor.test_id != first.test_id and successor.look is not None
        assert successor.look.n == 300
    finally:
        d.close()


def test_a_default_left_out_of_a_changed_config_still_closes_the_test(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Recorded as ``{threshold: 0.6}``, configured as ``{}`` (0.5): another objective."""
    data = _calibration_against_decisions(600)
    d = _start(template, tmp_path, "accuracy", {"threshold": 0.6})
    try:
        _feed(d, data, 0, 300, minute=0)
        [first] = _of_kind(runner(d).run(MODEL), "paired")
        d = _reopen(d, "accuracy", {})
        closed, _ = _of_kind(runner(d).run(MODEL), "paired")
        assert (closed.test_id, closed.action) == (first.test_id, "closed")
    finally:
        d.close()


def test_spelling_out_a_default_keeps_the_rollback_watch_and_the_kept_champion(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    d = _start(template, tmp_path, "accuracy", {})
    try:
        _promote_v2(d, trained)
        first = _watch(runner(d))
        assert first is not None and first.action == "none"
        d = _reopen(d, "accuracy", {"threshold": 0.5})
        loop = runner(d)
        watch = _watch(loop)
        assert watch is not None and watch.test_id == first.test_id
        assert watch.action != "closed", watch.detail
        [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert test.status == "open"
        assert d.store.get_version(MODEL, 1).stage == "shadow"
    finally:
        d.close()


def test_a_recorded_objective_is_keyed_by_its_resolved_setup() -> None:
    """What a test records stays the params as written (older code reads them); the key
    it is compared by is the resolved setup's."""
    configured = MeasuredObjective("accuracy", {"threshold": 0.5}, task="binary")
    state = {"objective": MeasuredObjective("accuracy", {}, task="binary").as_state()}
    assert state["objective"]["name"] == "accuracy" and state["objective"]["params"] == {}
    was = recorded_objective(state, task="binary")
    assert was is not None and was.key == configured.key
    moved = MeasuredObjective("accuracy", {"threshold": 0.6}, task="binary")
    assert moved.key != configured.key
    assert MeasuredObjective("f_beta", {}, task="binary").key == (
        MeasuredObjective("f_beta", {"beta": 1, "threshold": 0.5}, task="binary").key
    )
    # one that no longer builds (a parameter since removed) is another objective
    gone = {"objective": {"name": "accuracy", "params": {"cutoff": 0.5}}}
    was = recorded_objective(gone, task="binary")
    assert was is not None and was.setup is None and was.key != configured.key


# -- the decay cache -----------------------------------------------------------------------------


@pytest.fixture
def decay_daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """A champion under ``accuracy {}`` judged by hourly decay windows (as in
    tests/tunewatch/test_decay_reads.py)."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": 100,
            "drift": {"enabled": False},
            "estimate": {"enabled": False},
            "decay": {
                "window_s": WINDOW_S,
                "maturity_s": MATURITY_S,
                "horizon_windows": HORIZON_WINDOWS,
            },
        },
        model={"objective": {"name": "accuracy", "params": {}}},
    )
    yield d
    d.close()


def _spelt(d: Daemon, params: dict[str, Any]) -> tuple[Any, ...]:
    """``decay_verdict``'s arguments at the stream's now, the objective ``accuracy``
    spelt with ``params``."""
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    objective_cfg = cfg.objective.model_copy(update={"params": params})
    cfg = cfg.model_copy(update={"objective": objective_cfg})
    objective = make_objective("accuracy", task=model.task, **params)
    return (d.store, d.metrics, model, cfg, objective, d.evaluator.clock(), 1)


@pytest.mark.parametrize(
    ("params", "reads_all"),
    [
        pytest.param({"threshold": 0.5}, False, id="default-written-out"),
        pytest.param({"threshold": 0.6}, True, id="another-threshold"),
    ],
)
def test_a_new_process_takes_the_stored_decay_windows_of_the_same_objective_spelt_out(
    decay_daemon: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    reads_all: bool,
) -> None:
    """The verdict stored under ``accuracy {}``: the same objective spelt ``{threshold:
    0.5}`` takes its settled windows; another threshold reads the whole horizon."""
    stream = _Stream(decay_daemon, monkeypatch, seed=4)
    decay_daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    [stored] = [r for r in decay_daemon.evaluator.evaluate(MODEL) if r.kind == "decay"]
    before = datetime.fromisoformat(stored.payload["settled"]["before"])
    stream.advance(timedelta(hours=2), version=1)
    spy = _Spy(decay_daemon.store, monkeypatch)
    args = _spelt(decay_daemon, params)
    cached = decay_verdict(*args, cache=DecayWindowCache())
    reads = list(spy.calls)
    assert cached == decay_verdict(*args)
    if reads_all:
        assert reads[0][0] == _first_edge(stream.now)
    else:
        assert reads and reads[0][0] >= before
