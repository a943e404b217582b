"""fANOVA freezing (:class:`retune.warmstart.FreezeUnimportant`) from the daemon: no
`tuning.warm_start` mode used it, so a parameter history showed unimportant was never
frozen and the report's "importances in the history (fANOVA)" row always read "none".
`tuning.freeze_unimportant_below` adds it to the `box` and `combined` plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from monitor.objectives import make_objective
from retune.space import load_search_space
from retune.warmstart import WarmStartPlan
from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tests.tunewatch.tuning_plan import MODEL
from tunewatch._config import ConfigError, build_config
from tunewatch._example import ExampleModel
from tunewatch._report_search import plan_section
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_results import study_name
from tunewatch.store import Store

SPACE = {
    "format_version": 1,
    "name": "test_freeze",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "estimator": {"type": "categorical", "choices": ["logistic"]},
        "C": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
    },
}
IMPORTANCES_ROW = "importances in the history (fANOVA)"


def _earlier_study(store: Store, storage: str) -> None:
    """A succeeded retune of ``MODEL`` tuned for log loss whose 20 trials' loss depends on
    ``C`` alone: ``scaler``, tried with both its choices, did not matter."""
    job, _ = store.create_job(model=MODEL, kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w")
    name = study_name(job)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("objective", {"name": "log_loss", "params": {}})
    dists = {
        "scaler": CategoricalDistribution(["none", "standard"]),
        "estimator": CategoricalDistribution(["logistic"]),
        "C": FloatDistribution(0.01, 100.0, log=True),
    }
    for i in range(20):
        c = 10 ** (-2 + 4 * i / 19)
        params = {"scaler": ("none", "standard")[i % 2], "estimator": "logistic", "C": c}
        loss = 0.3 + abs(i - 9) / 10
        study.add_trial(optuna.create_trial(params=params, distributions=dists, value=loss))
    store.finish_job(job.id, status="succeeded", result={"study": name}, worker="w")


def _tuning(**keys: Any) -> Any:
    raw = {"models": [{"name": MODEL, "task": "binary", "tuning": keys}]}
    return build_config(raw, env={}).models[0].tuning


def _plan(store: Store, storage: str, tmp_path: Path, **keys: Any) -> WarmStartPlan:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    tuning = _tuning(**keys)
    plan = warm_start_plan(
        store,
        storage,
        MODEL,
        kind=tuning.warm_start,
        space=load_search_space(path),
        objective=make_objective("log_loss", task="binary"),
        freeze_below=tuning.freeze_unimportant_below,
        seed=tuning.seed,
    )
    assert plan is not None
    return plan


def _importances_row(plan: WarmStartPlan) -> Any:
    section = plan_section(plan.to_dict(), None, "no history")
    return dict(section.rows)[IMPORTANCES_ROW]


@pytest.mark.parametrize("mode", ["combined", "box"])
def test_a_plan_with_freeze_unimportant_below_freezes_what_history_shows_unimportant(
    store: Store, storage: str, tmp_path: Path, mode: str
) -> None:
    _earlier_study(store, storage)
    plan = _plan(store, storage, tmp_path, warm_start=mode, freeze_unimportant_below=0.1)
    assert "freeze_unimportant" in plan.strategies
    assert set(plan.frozen) == {"scaler"}, (plan.frozen, plan.importances)
    assert plan.importances["scaler"] < 0.1 <= plan.importances["C"]
    assert _importances_row(plan) != "none"
    assert "C" in _importances_row(plan)


@pytest.mark.parametrize("mode", ["combined", "box"])
def test_a_plan_without_the_key_freezes_nothing(
    store: Store, storage: str, tmp_path: Path, mode: str
) -> None:
    _earlier_study(store, storage)
    plan = _plan(store, storage, tmp_path, warm_start=mode)
    assert plan.history_studies  # it learned from the study: only freezing is off
    assert "freeze_unimportant" not in plan.strategies
    assert plan.frozen == {} and plan.importances == {}
    assert _importances_row(plan) == "none"


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_a_share_outside_zero_to_one_is_refused_at_load_naming_the_key(value: float) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.freeze_unimportant_below: .*than"):
        _tuning(freeze_unimportant_below=value)


@pytest.mark.parametrize("mode", ["none", "enqueue"])
def test_freezing_with_a_mode_that_learns_no_box_is_refused_at_load(mode: str) -> None:
    with pytest.raises(
        ConfigError,
        match=(
            rf"`freeze_unimportant_below` \(0.1\) applies to `warm_start: box` or "
            rf"`warm_start: combined`, got `warm_start: {mode}`"
        ),
    ):
        _tuning(warm_start=mode, freeze_unimportant_below=0.1)


def test_the_key_defaults_to_off() -> None:
    assert _tuning().freeze_unimportant_below is None


def test_a_job_of_the_daemon_plans_with_the_configured_freeze(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The key reaches the job's plan (the daemon's call to ``warm_start_plan``): the
    second job's history (one trial) is too short to freeze anything, and its plan says
    so; without the key its plan says nothing of freezing."""
    d = _daemon(_config(tmp_path, max_trials=1, freeze_unimportant_below=0.05), trained)
    try:
        for _ in range(2):  # v2, then v3 planned from v2's study
            outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
            assert outcome.job_id is not None
            job = _runner(d).run(outcome.job_id)
            assert job.status == "succeeded", job.error
        plan = d.store.get_version(MODEL, 3).details["warm_start_plan"]
    finally:
        d.close()
    assert any("< min_trials 15: nothing frozen" in n for n in plan["notes"]), plan["notes"]
