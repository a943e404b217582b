from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from retune_data import SMALL_SPACE, binary, small_space

from monitor.objectives import make_objective
from retune import Budget, WarmStartError, load_history, run_study
from retune.cv import StratifiedKFoldCV
from retune.space import SearchSpace, parse_search_space
from retune.warmstart import (
    PLAN_FORMAT_VERSION,
    Combined,
    CostCeiling,
    CostConstraint,
    EnqueueTopK,
    ExploreShare,
    FreezeUnimportant,
    History,
    HistoryTrial,
    LearnedBox,
    NumericBound,
    WarmStartPlan,
    WarmStartStrategy,
)


def _history(n_per_study: int = 12) -> History:
    """Two studies on different scales; good configurations have C near 1 and logistic."""
    trials = []
    for s, offset in (("old", 10.0), ("recent", 0.0)):
        for i in range(n_per_study):
            logistic = i % 3 != 0
            c = 10 ** (-3 + 4 * i / n_per_study)
            params: dict[str, Any] = (
                {"scaler": "standard", "estimator": "logistic", "C": c}
                if logistic
                else {
                    "scaler": "none",
                    "estimator": "gradient_boosting",
                    "gb_n_estimators": 10,
                    "gb_max_depth": 2,
                }
            )
            value = offset + (abs(i - 8) if logistic else 20)
            trials.append(HistoryTrial(study_name=s, number=i, params=params, value=float(value)))
    return History.from_trials(trials)


STRATEGIES: dict[str, WarmStartStrategy] = {
    "enqueue_top_k": EnqueueTopK(k=3),
    "learned_box": LearnedBox(top_fraction=0.25, margin=0.1),
    "freeze_unimportant": FreezeUnimportant(min_share=0.3, min_trials=10, seed=0),
    "explore_share": ExploreShare(share=0.25),
    "cost_constraint": CostConstraint(max_latency_p99_s=0.01),
    "combined": Combined(cost=CostConstraint(max_memory_bytes=10**6)),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
class TestStrategyContract:
    def test_plan_round_trips_through_json_with_format_version(self, name: str) -> None:
        plan = STRATEGIES[name].plan(_history(), small_space())
        data = json.loads(plan.to_json())
        assert data["format_version"] == PLAN_FORMAT_VERSION
        assert WarmStartPlan.from_json(plan.to_json()) == plan
        assert name in plan.strategies and plan.n_history_trials == 24

    def test_plan_only_names_what_the_current_space_allows(self, name: str) -> None:
        space = small_space()
        plan = STRATEGIES[name].plan(_history(), space)
        for params in plan.enqueue:
            assert space.project(params) == dict(params)
        declared = space.declarations()
        for bound in plan.numeric_box:
            decl = declared[bound.name]
            assert decl.low <= bound.low < bound.high <= decl.high  # type: ignore[union-attr]
        for param, choices in plan.choice_box.items():
            assert choices and set(choices) <= set(declared[param].choices)  # type: ignore[union-attr]

    def test_empty_history_gives_a_usable_plan(self, name: str) -> None:
        plan = STRATEGIES[name].plan(History(), small_space())
        assert not plan.enqueue and not plan.numeric_box and not plan.frozen

    def test_study_runs_with_the_plan(self, name: str, tmp_path: Any) -> None:
        x, y = binary(seed=8, n=150)
        plan = STRATEGIES[name].plan(_history(), small_space())
        result = run_study(
            storage=str(tmp_path / "journal.log"),
            study_name=f"ws-{name}",
            space=small_space(),
            x=x,
            y=y,
            objective=make_objective("log_loss"),
            cv=StratifiedKFoldCV(n_splits=2),
            budget=Budget(max_trials=6),
            plan=plan,
            seed=0,
            cost_predictor=lambda p: (0.001, 1000.0),
        )
        assert result.n_trials == 6 and result.plan == plan
        assert result.stopped_by == "max_trials"


def test_ranks_are_normalised_within_each_study() -> None:
    history = _history()
    best = history.best_first()
    assert best[0].rank == 0.0 and best[0].study_name == "recent"  # tie broken by recency
    assert [t.study_name for t in best[:2]] == ["recent", "old"]
    assert best[0].params == best[1].params  # same config, values 10 apart: same rank
    # the four tied worst trials of a study (ranks 9..12 of 12) share rank (10.5 - 1) / 11
    assert max(t.rank for t in history.trials) == pytest.approx(9.5 / 11)


def test_learned_box_widens_in_log_space_and_restricts_choices() -> None:
    plan = LearnedBox(top_fraction=0.25, margin=0.1).plan(_history(), small_space())
    box = plan.box_for("C")
    assert box is not None
    # the best three C values span 10**(-3 + 4 * 7/12) .. 10**(-3 + 4 * 10/12);
    # a margin of 0.1 of the 4 decades is 0.4 decades
    assert box.low == pytest.approx(10 ** (-3 + 4 * 7 / 12 - 0.4), rel=1e-6)
    assert plan.choice_box == {"estimator": ("logistic",), "scaler": ("standard",)}


def test_enqueue_skips_configurations_invalid_in_a_changed_space() -> None:
    changed = parse_search_space(
        {
            **SMALL_SPACE,
            "params": {
                **SMALL_SPACE["params"],
                "scaler": {
                    "type": "categorical",
                    "choices": ["none", "robust"],
                },  # 'standard' removed
            },
        }
    )
    plan = EnqueueTopK(k=3).plan(_history(), changed)
    assert all(p["scaler"] != "standard" for p in plan.enqueue)
    assert any("skipped" in note for note in plan.notes)


def _changed_space() -> SearchSpace:
    """Added choice and param, moved bounds, a removed param."""
    return parse_search_space(
        {
            "name": "small-v2",
            "params": {
                "imputer": {"type": "categorical", "choices": ["mean", "median"]},
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting", "extra_trees"],
                    "when": {
                        "logistic": {"C": {"type": "float", "low": 0.5, "high": 50.0, "log": True}},
                        "gradient_boosting": {
                            "gb_n_estimators": {"type": "int", "low": 5, "high": 15, "step": 5}
                        },
                        "extra_trees": {
                            "forest_n_estimators": {"type": "int", "low": 5, "high": 10},
                            "forest_max_depth": {"type": "int", "low": 2, "high": 4},
                        },
                    },
                },
            },
        }
    )


def test_warm_start_survives_a_changed_space(tmp_path: Any) -> None:
    storage = str(tmp_path / "journal.log")
    x, y = binary(seed=9, n=150)
    common: dict[str, Any] = {
        "storage": storage,
        "x": x,
        "y": y,
        "objective": make_objective("log_loss"),
        "cv": StratifiedKFoldCV(n_splits=2),
        "seed": 0,
    }
    run_study(
        study_name="v1", space=small_space(), budget=Budget(max_trials=8), plan=None, **common
    )
    history = load_history(storage, ["v1"])
    space = _changed_space()
    plan = Combined(freeze=FreezeUnimportant(min_trials=5)).plan(history, space)
    result = run_study(
        study_name="v2", space=space, budget=Budget(max_trials=8), plan=plan, **common
    )
    assert result.n_trials == 8
    space.check(result.best_params)


def test_plan_from_a_newer_format_is_refused() -> None:
    data = WarmStartPlan().to_dict() | {"format_version": PLAN_FORMAT_VERSION + 1}
    with pytest.raises(WarmStartError, match="newer than this tunewatch reads"):
        WarmStartPlan.from_dict(data)


def test_history_of_a_maximised_study_ranks_its_highest_value_best(tmp_path: Any) -> None:
    """History values are losses: a study that maximised (one a library user passes) had
    its ranking read upside down, and its worst configurations enqueued as the best."""
    import optuna

    storage = f"sqlite:///{tmp_path}/history.db"
    study = optuna.create_study(study_name="maximised", storage=storage, direction="maximize")
    for c in (0.01, 1.0, 10.0):
        study.enqueue_trial({"C": c})
    study.optimize(lambda t: t.suggest_float("C", 1e-3, 10.0, log=True), n_trials=3)
    history = load_history(storage, ["maximised"])
    best = min(history.trials, key=lambda t: t.value)
    assert best.params == {"C": 10.0}


def test_history_of_a_multi_objective_study_is_a_clear_error(tmp_path: Any) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path}/history.db"
    study = optuna.create_study(
        study_name="two", storage=storage, directions=["minimize", "minimize"]
    )
    study.optimize(lambda t: (t.suggest_float("C", 0.1, 1.0), 1.0), n_trials=1)
    with pytest.raises(WarmStartError, match="'two' has 2 objectives"):
        load_history(storage, ["two"])


def test_missing_history_study_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(WarmStartError, match="'nope' does not exist"):
        load_history(str(tmp_path / "journal.log"), ["nope"])


def test_freeze_unimportant_records_importances_and_freezes_below_share() -> None:
    plan = FreezeUnimportant(min_share=0.5, min_trials=10, seed=0).plan(_history(), small_space())
    assert set(plan.importances) <= {"scaler", "estimator"}
    assert sum(plan.importances.values()) == pytest.approx(1.0)
    below = {name for name, share in plan.importances.items() if share < 0.5}
    # the history's two parameters share the importance about evenly (0.52 and 0.48):
    # at a share of 0.5 exactly one is below it (at 0.3, none was, and the check ran on
    # nothing)
    assert len(below) == 1, plan.importances
    assert set(plan.frozen) == below


def test_space_lists_the_choices_that_open_conditional_parameters() -> None:
    assert small_space().branches() == [
        ("estimator", "logistic"),
        ("estimator", "gradient_boosting"),
    ]


def test_enqueue_adds_the_best_of_each_branch_the_top_k_leaves_out() -> None:
    # The top 3 are all logistic; a concept change may make boosting the winner, so its
    # best historical configuration is re-scored too (and only once).
    plan = EnqueueTopK(k=3).plan(_history(), small_space())
    families = [p["estimator"] for p in plan.enqueue]
    assert families == ["logistic"] * 3 + ["gradient_boosting"]
    assert any("estimator=gradient_boosting" in note for note in plan.notes)
    top_only = EnqueueTopK(k=3, per_branch=False).plan(_history(), small_space())
    assert [p["estimator"] for p in top_only.enqueue] == ["logistic"] * 3


def test_learned_box_boxes_a_losing_branch_around_its_own_best() -> None:
    # No boosting configuration is among the best, but boosting's parameters are still
    # narrowed around the boosting trials (all at 10 trees) rather than left at 5..20.
    plan = LearnedBox(top_fraction=0.25, margin=0.1, restrict_choices=False).plan(
        _history(), small_space()
    )
    box = plan.box_for("gb_n_estimators")
    assert box is not None and box.low <= 10 <= box.high
    assert box.high - box.low < 20 - 5
    assert any("gb_n_estimators" in note for note in plan.notes)


def test_the_cost_predictor_answers_only_what_measured_configurations_of_its_family_show() -> None:
    """It answered with the nearest measured configuration whatever its size, and with
    ``(0, 0)`` for a family with none: now a configuration at least as big as a measured
    one costs at least that, a smaller one (two samples fit no size curve) and another
    family get no prediction (``nan``, which no ceiling rejects)."""
    from retune.warmstart import CostSample, family_cost_predictor

    samples = [
        CostSample(
            params={"estimator": "logistic", "C": 1.0}, latency_p99_s=1e-4, memory_bytes=1e5
        ),
        CostSample(
            params={"estimator": "gradient_boosting", "gb_n_estimators": 10, "gb_max_depth": 1},
            latency_p99_s=2e-3,
            memory_bytes=1e6,
        ),
        CostSample(
            params={"estimator": "gradient_boosting", "gb_n_estimators": 20, "gb_max_depth": 3},
            latency_p99_s=9e-3,
            memory_bytes=5e6,
        ),
    ]
    predict = family_cost_predictor(samples, small_space())
    gb = {"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 20}
    assert predict({**gb, "gb_max_depth": 3}) == (9e-3, 5e6)
    assert predict({**gb, "gb_n_estimators": 15, "gb_max_depth": 1}) == (2e-3, 1e6)
    assert all(map(math.isnan, predict({**gb, "gb_n_estimators": 5, "gb_max_depth": 1})))
    assert predict({"scaler": "standard", "estimator": "logistic", "C": 0.01}) == (1e-4, 1e5)
    alone = family_cost_predictor(samples[:1], small_space())({**gb, "gb_max_depth": 3})
    assert all(map(math.isnan, alone))


_SLOW_FOREST = {
    "missing": "none",
    "imputer": "median",
    "scaler": "none",
    "selector": "none",
    "class_weight": "none",
    "estimator": "random_forest",
    "forest_n_estimators": 200,
    "forest_max_depth": 12,
    "forest_min_samples_leaf": 1,
}


def _tabular_space() -> SearchSpace:
    from retune.space import load_search_space

    return load_search_space(
        Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"
    )


def test_the_cost_predictor_matches_the_estimator_family_not_every_branch() -> None:
    """A too-slow forest sampled with another selector (or imputer, scaler …) than the
    served one matched no sample, was predicted to cost nothing and was trained."""
    from retune.warmstart import CostCeiling, CostSample, family_cost_predictor

    served = CostSample(params=_SLOW_FOREST, latency_p99_s=0.5, memory_bytes=1e6)
    predict = family_cost_predictor([served], _tabular_space())
    ceiling = CostCeiling(max_latency_p99_s=0.005)
    assert ceiling.violation(*predict(_SLOW_FOREST)) is not None
    other_branches = {**_SLOW_FOREST, "selector": "k_best", "select_k": 20, "scaler": "robust"}
    assert predict(other_branches) == (0.5, 1e6)
    logistic = {**_SLOW_FOREST, "estimator": "logistic", "C": 1.0}
    assert all(map(math.isnan, predict(logistic)))  # another family: nothing known


def test_the_cost_predictor_reads_a_served_configuration_with_its_defaults_filled() -> None:
    """An operator-registered version names only the hyperparameters it set; compared on
    raw keys it never matched the same pipeline sampled from the space."""
    from retune.warmstart import CostSample, family_cost_predictor

    served = {"estimator": "random_forest", "forest_n_estimators": 200, "forest_max_depth": 12}
    samples = [CostSample(params=served, latency_p99_s=0.5, memory_bytes=1e6)]
    predict = family_cost_predictor(samples, _tabular_space())
    assert predict(_SLOW_FOREST) == (0.5, 1e6)


def test_a_measured_configuration_vouches_for_no_bigger_ones_of_its_family() -> None:
    """Two forests of one size, served slow and fast (another selector): the fast one
    vouches for that size; a smaller forest is not predicted from two samples."""
    from retune.warmstart import CostSample, family_cost_predictor

    fast_k_best = {**_SLOW_FOREST, "selector": "k_best", "select_k": 5}
    samples = [
        CostSample(params=_SLOW_FOREST, latency_p99_s=0.5, memory_bytes=1e6),
        CostSample(params=fast_k_best, latency_p99_s=1e-3, memory_bytes=1e5),
        # no hyperparameters (a hand-built model): its family is unknown, not "logistic"
        CostSample(params={}, latency_p99_s=9.0, memory_bytes=9e9),
        # a vocabulary the space's pipelines do not speak
        CostSample(params={"num_leaves": 31}, latency_p99_s=9.0, memory_bytes=9e9),
    ]
    predict = family_cost_predictor(samples, _tabular_space())
    assert predict({**fast_k_best, "select_k": 6}) == (1e-3, 1e5)
    assert predict(_SLOW_FOREST) == (1e-3, 1e5)
    assert predict({**_SLOW_FOREST, "forest_n_estimators": 220}) == (0.5, 1e6)
    assert all(map(math.isnan, predict({**_SLOW_FOREST, "forest_max_depth": 11})))
    assert all(map(math.isnan, predict({**_SLOW_FOREST, "estimator": "logistic", "C": 1.0})))


def _history_before_a_step_was_added() -> tuple[History, SearchSpace]:
    """History sampled while ``gb_subsample`` was continuous; the space now has a step."""
    trials = [
        HistoryTrial(
            study_name="old",
            number=i,
            params={"estimator": "gradient_boosting", "gb_subsample": 0.5 + 0.031 * i},
            value=float(abs(i - 9)),
        )
        for i in range(16)
    ]
    space = parse_search_space(
        {
            "name": "stepped",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["gradient_boosting"],
                    "when": {
                        "gradient_boosting": {
                            "gb_subsample": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25}
                        }
                    },
                }
            },
        }
    )
    return History.from_trials(trials), space


def test_warm_start_enqueues_history_on_a_grid_the_space_gained() -> None:
    """Off-grid history values were enqueued as they were: Optuna warned ("out of range")
    and trained them off the grid, and fANOVA refused them as trials of the new space."""
    history, space = _history_before_a_step_was_added()
    plan = Combined(freeze=FreezeUnimportant(min_trials=10, seed=0)).plan(history, space)
    assert plan.enqueue
    for params in plan.enqueue:
        space.check(params)
    assert {p["gb_subsample"] for p in plan.enqueue} <= {0.5, 0.75, 1.0}


def _grid_history() -> tuple[History, SearchSpace]:
    space = SearchSpace.model_validate(
        {
            "name": "s",
            "params": {
                "p": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
                "q": {"type": "float", "low": 0.0, "high": 1.0},
            },
        }
    )
    rows = [(0.29, 0.1, 1.0), (0.1, 0.5, 2.0), (0.2, 0.9, 3.0), (0.0, 0.3, 0.5), (0.3, 0.7, 1.5)]
    trials = [
        HistoryTrial(study_name="a", number=i, params={"p": p, "q": q}, value=v)
        for i, (p, q, v) in enumerate(rows)
    ]
    return History.from_trials(trials), space


def test_history_snapped_to_the_top_of_a_grid_is_enqueued_and_weighed_in_range() -> None:
    """0.29 on [0, 0.3] step 0.1 snapped to 0.30000000000000004: EnqueueTopK enqueued a
    point outside the space, and fANOVA refused it with a bare ValueError."""
    from retune._optuna import param_importances

    history, space = _grid_history()
    plan = EnqueueTopK(k=5).plan(history, space)
    assert {p["p"] for p in plan.enqueue} <= {0.0, 0.1, 0.2, 0.3}
    for params in plan.enqueue:
        space.check(params)
    shares = param_importances(history, space, seed=0)
    assert set(shares) == {"p", "q"}


def _space(**params: dict[str, Any]) -> SearchSpace:
    return parse_search_space({"name": "s", "params": params})


_UNIT = {"type": "float", "low": 0.0, "high": 1.0}  # a domain holding 0 and 1


def _only(choice: str) -> dict[str, Any]:
    """A categorical of one ``choice``: the parent a parameter it opens is read under."""
    return {"type": "categorical", "choices": [choice]}


#: The choices under which the pipeline reads `drop_threshold`, `select_k` and `alpha`.
_READERS = {"missing": "drop_columns", "selector": "k_best", "estimator": "ridge"}


def test_freeze_never_fixes_a_parameter_history_did_not_vary() -> None:
    """fANOVA scores a parameter history held constant 0.0, and it was frozen on no
    evidence: ``select_k`` here, or the estimator of a history with only ``logistic`` in a space
    that added ``gradient_boosting`` (12 trials then tried the added family once)."""
    space = _space(
        **{name: _only(choice) for name, choice in _READERS.items()},
        drop_threshold=_UNIT,
        alpha=_UNIT,
        select_k={"type": "int", "low": 1, "high": 5},
    )
    trials = [
        HistoryTrial(
            study_name="old",
            number=i,
            params={
                **_READERS,
                "drop_threshold": i / 19,
                "alpha": (7 * i % 20) / 19,
                "select_k": 3,
            },
            value=i,
        )
        for i in range(20)
    ]
    plan = FreezeUnimportant(min_share=0.1, min_trials=10).plan(History.from_trials(trials), space)
    assert plan.importances["select_k"] == 0.0 and "select_k" not in plan.frozen
    assert plan.frozen == {"alpha": 0.0}  # varied, unimportant: frozen at the best trial's value
    assert any("'select_k'" in note and "did not vary" in note for note in plan.notes)

    logistic_only = [
        HistoryTrial(
            study_name="old",
            number=i,
            params={
                "scaler": ["none", "standard"][i % 2],
                "estimator": "logistic",
                "C": 0.01 * (i + 1),
            },
            value=abs(i - 12),
        )
        for i in range(20)
    ]
    plan = FreezeUnimportant(min_trials=10).plan(History.from_trials(logistic_only), small_space())
    assert "estimator" not in plan.frozen


def test_freeze_never_fixes_a_categorical_that_gained_choices() -> None:
    trials = [
        HistoryTrial(
            study_name="old",
            number=i,
            params={
                "missing": "drop_columns",
                "drop_threshold": i / 19,
                "scaler": ("none", "standard")[i % 2],
            },
            value=i,
        )
        for i in range(20)
    ]
    history = History.from_trials(trials)
    same = _space(
        missing=_only("drop_columns"),
        drop_threshold=_UNIT,
        scaler={"type": "categorical", "choices": ["none", "standard"]},
    )
    assert FreezeUnimportant(min_trials=10).plan(history, same).frozen == {"scaler": "none"}
    gained = _space(
        missing=_only("drop_columns"),
        drop_threshold=_UNIT,
        scaler={"type": "categorical", "choices": ["none", "standard", "robust"]},
    )
    plan = FreezeUnimportant(min_trials=10).plan(history, gained)
    assert plan.frozen == {}
    assert any("scaler" in note and "'robust'" in note for note in plan.notes)


def test_freeze_counts_only_history_trials_valid_in_the_current_space() -> None:
    """20 historical trials of which 3 have a C the space still allows: fANOVA ran on the
    3 (min_trials 15 counted the 20) and froze the estimator."""
    trials = [
        HistoryTrial(
            study_name="old",
            number=i,
            params={
                "scaler": "standard" if i % 2 else "none",
                "estimator": "logistic",
                "C": 0.01 * (i + 1) if i < 17 else 5.0 + i - 17,
            },
            value=float(i % 7),
        )
        for i in range(20)
    ]
    narrowed = json.loads(json.dumps(SMALL_SPACE))
    narrowed["params"]["estimator"]["when"]["logistic"]["C"].update(low=5.0, high=10.0, safe=None)
    plan = FreezeUnimportant(min_trials=15).plan(
        History.from_trials(trials), parse_search_space(narrowed)
    )
    assert plan.frozen == {} and plan.importances == {}
    assert any("3 of 20" in note for note in plan.notes)


def test_freeze_with_constant_history_freezes_nothing() -> None:
    """All-equal objective values leave fANOVA no variance to share out; the plan raised
    WarmStartError ("Encountered zero total variance in all trees")."""
    trials = [
        HistoryTrial(
            study_name="s",
            number=i,
            params={
                "scaler": ["none", "standard"][i % 2],
                "estimator": "logistic",
                "C": 0.01 * (i + 1),
            },
            value=0.5,
        )
        for i in range(20)
    ]
    plan = FreezeUnimportant(min_trials=15).plan(History.from_trials(trials), small_space())
    assert plan.frozen == {} and plan.importances == {}
    assert any("equal" in note and "nothing frozen" in note for note in plan.notes)


def test_a_learned_box_on_a_grid_keeps_every_grid_point_it_covers() -> None:
    """The box was snapped with floor((0.7 - 0.1) / 0.1) in binary floats (5.999…): a box
    recorded as [0.44, 0.7] sampled only 0.5 and 0.6, never the previous optimum 0.7."""
    from optuna.distributions import FloatDistribution, IntDistribution

    from retune._optuna import _narrow

    grid = FloatDistribution(0.1, 0.7, step=0.1)
    assert _narrow(grid, 0.44, 0.7) == FloatDistribution(0.5, 0.7, step=0.1)
    assert _narrow(grid, 0.3, 0.7) == FloatDistribution(0.3, 0.7, step=0.1)
    assert _narrow(grid, 0.1, 0.3) == FloatDistribution(0.1, 0.3, step=0.1)
    assert _narrow(grid, 0.41, 0.49) is None  # no grid point inside
    fine = FloatDistribution(1e-5, 3e-4, step=1e-5)
    assert _narrow(fine, 2.9e-4, 3e-4) == FloatDistribution(2.9e-4, 3e-4, step=1e-5)
    assert _narrow(IntDistribution(1, 9, step=2), 2, 9) == IntDistribution(3, 9, step=2)


def _ranked(rows: list[tuple[str, int, dict[str, Any], float]]) -> History:
    return History.from_trials(
        HistoryTrial(study_name=s, number=n, params=p, value=v) for s, n, p, v in rows
    )


def _logistic(c: float) -> dict[str, Any]:
    return {"scaler": "standard", "estimator": "logistic", "C": c}


_GB_GOOD = {
    "scaler": "none",
    "estimator": "gradient_boosting",
    "gb_n_estimators": 20,
    "gb_max_depth": 3,
}
_GB_BAD = {
    "scaler": "none",
    "estimator": "gradient_boosting",
    "gb_n_estimators": 5,
    "gb_max_depth": 1,
}


def test_enqueue_top_k_counts_a_configuration_best_in_two_studies_once() -> None:
    """C=1 is the best of both studies: k=2 enqueues it and the next distinct one, C=0.1."""
    history = _ranked(
        [
            ("old", 0, _logistic(1.0), 1.0),
            ("old", 1, _logistic(0.1), 2.0),
            ("new", 0, _logistic(1.0), 0.5),
            ("new", 1, _logistic(0.1), 0.6),
        ]
    )
    plan = EnqueueTopK(k=2, per_branch=False).plan(history, small_space())
    assert plan.enqueue == (_logistic(1.0), _logistic(0.1))


def test_enqueue_adds_the_best_not_the_worst_configuration_of_a_left_out_branch() -> None:
    history = _ranked(
        [("s", 0, _logistic(1.0), 0.1), ("s", 1, _GB_GOOD, 0.5), ("s", 2, _GB_BAD, 0.9)]
    )
    plan = EnqueueTopK(k=1).plan(history, small_space())
    assert plan.enqueue == (_logistic(1.0), _GB_GOOD)


def test_learned_box_falls_back_to_the_min_configs_best_configurations() -> None:
    """Top 20 % of 5 trials is one; min_configs=3 takes the best three (C 1, 2, 3), not
    the worst three (C 3, 0.001, 0.002)."""
    history = _ranked(
        [("s", i, _logistic(c), float(i)) for i, c in enumerate([1.0, 2.0, 3.0, 1e-3, 2e-3])]
    )
    box = (
        LearnedBox(top_fraction=0.2, min_configs=3, margin=0.0)
        .plan(history, small_space())
        .box_for("C")
    )
    assert box is not None
    assert (box.low, box.high) == pytest.approx((1.0, 3.0), rel=1e-12)


def test_learned_box_widens_both_sides_by_the_margin() -> None:
    """C spans 1e-3..10 (4 decades, log): a 0.1 margin is 0.4 decades each side of 0.01..0.1."""
    history = _ranked(
        [("s", i, _logistic(c), float(i)) for i, c in enumerate([0.01, 0.1, 5.0, 0.002])]
    )
    box = (
        LearnedBox(top_fraction=0.5, min_configs=1, margin=0.1)
        .plan(history, small_space())
        .box_for("C")
    )
    assert box is not None
    assert box.low == pytest.approx(0.01 * 10**-0.4, rel=1e-12)
    assert box.high == pytest.approx(0.1 * 10**0.4, rel=1e-12)


def test_learned_box_boxes_a_losing_branch_around_its_best_trials_not_its_worst() -> None:
    rows = [("s", i, _logistic(1.0 + i), float(i)) for i in range(8)]
    rows += [("s", 8, _GB_GOOD, 8.5), ("s", 9, {**_GB_GOOD, "gb_n_estimators": 15}, 8.6)]
    rows += [("s", 10 + i, _GB_BAD, 9.0 + i) for i in range(4)]
    plan = LearnedBox(top_fraction=0.2, min_configs=2, margin=0.0, restrict_choices=False).plan(
        _ranked(rows), small_space()
    )
    # boosting's best two have 20 and 15 trees; its worst four have 5
    assert plan.box_for("gb_n_estimators") == NumericBound(
        name="gb_n_estimators", low=15.0, high=20.0
    )


def test_learned_box_rounds_an_integer_range_outwards() -> None:
    space = parse_search_space(
        {
            "name": "trees",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["extra_trees"],
                    "when": {
                        "extra_trees": {
                            "forest_n_estimators": {"type": "int", "low": 1, "high": 95}
                        }
                    },
                }
            },
        }
    )
    rows = [
        ("s", i, {"estimator": "extra_trees", "forest_n_estimators": v}, float(i))
        for i, v in enumerate([50, 60, 5, 95])
    ]
    plan = LearnedBox(top_fraction=0.4, min_configs=2, margin=0.1).plan(_ranked(rows), space)
    # 50..60 widened by 0.1 * 94 = 9.4 each side is 40.6..69.4: outwards 40..70, not 41..69
    assert plan.box_for("forest_n_estimators") == NumericBound(
        name="forest_n_estimators", low=40.0, high=70.0
    )


@pytest.mark.parametrize("share", [0.6, 0.75, 0.99])
def test_an_explore_share_no_every_kth_trial_gives_is_refused(share: float) -> None:
    """Past one half, every k-th trial is every trial or every other: 0.75 explored every
    trial, and the box and frozen values were never applied."""
    with pytest.raises(ValueError, match=f"`share` must be 1 or at most 0.5, got {share}"):
        ExploreShare(share=share)


@pytest.mark.parametrize(("share", "every"), [(0.25, 4), (1 / 3, 3), (0.3, 3), (0.35, 3), (1.0, 1)])
def test_explore_share_explores_every_round_one_over_share_th_trial(
    share: float, every: int
) -> None:
    strategy = ExploreShare(share=share)
    assert strategy.every == every
    assert strategy.plan(History(), small_space()).explore_every == every


def test_a_cost_ceiling_rejects_a_configuration_over_its_memory_limit() -> None:
    ceiling = CostCeiling(max_memory_bytes=1000)
    assert ceiling.violation(0.0, 2000.0) == "predicted memory 2000 B > 1000 B"
    assert ceiling.violation(0.0, 1000.0) is None


def test_a_cost_ceiling_accepts_a_latency_exactly_at_its_limit() -> None:
    ceiling = CostCeiling(max_latency_p99_s=0.05)
    assert ceiling.violation(0.05, 0.0) is None
    assert ceiling.violation(0.0501, 0.0) == "predicted p99 latency 0.0501s > 0.05s"


def _grid_space() -> SearchSpace:
    return parse_search_space(
        {
            "name": "grid",
            "params": {
                "missing": {"type": "categorical", "choices": ["drop_columns"]},
                "drop_threshold": {"type": "float", "low": 0.1, "high": 0.9, "step": 0.1},
                "estimator": {
                    "type": "categorical",
                    "choices": ["random_forest"],
                    "when": {
                        "random_forest": {
                            "forest_n_estimators": {
                                "type": "int",
                                "low": 20,
                                "high": 200,
                                "step": 20,
                            }
                        }
                    },
                },
            },
        }
    )


def _forest(n: int, threshold: float) -> dict[str, Any]:
    return {
        "missing": "drop_columns",
        "drop_threshold": threshold,
        "estimator": "random_forest",
        "forest_n_estimators": n,
    }


def test_a_learned_box_holding_one_grid_point_is_widened_to_its_neighbours_and_says_so() -> None:
    """The best configurations agree on 60 trees and a threshold of 0.5: widened by the
    margin, the boxes [42, 78] and [0.42, 0.58] hold one grid point each. They were
    recorded so (the sampler then drew from the full range); the box is the grid points
    it holds, widened to the neighbouring ones when it holds fewer than two."""
    rows = [("s", i, _forest(60, 0.5), float(i)) for i in range(3)]
    rows += [("s", 3 + i, _forest(200, 0.9), 10.0 + i) for i in range(7)]
    plan = LearnedBox(top_fraction=0.2, min_configs=3, margin=0.1).plan(
        _ranked(rows), _grid_space()
    )
    assert plan.box_for("forest_n_estimators") == NumericBound(
        name="forest_n_estimators", low=40.0, high=80.0
    )
    assert plan.box_for("drop_threshold") == NumericBound(name="drop_threshold", low=0.4, high=0.6)
    widened = [n for n in plan.notes if "widened" in n]
    assert widened and "forest_n_estimators" in widened[0] and "drop_threshold" in widened[0]


def test_a_learned_box_on_a_grid_is_rounded_outwards_to_it() -> None:
    """Best at 60 and 100 trees: [42, 118] is recorded as [40, 120], the grid points that
    keep the margin (the sampler searched 60..100 of a box recorded as [42, 118])."""
    rows = [("s", 0, _forest(60, 0.3), 0.0), ("s", 1, _forest(100, 0.6), 1.0)]
    rows += [("s", 2 + i, _forest(200, 0.9), 10.0 + i) for i in range(8)]
    plan = LearnedBox(top_fraction=0.2, min_configs=2, margin=0.1).plan(
        _ranked(rows), _grid_space()
    )
    assert plan.box_for("forest_n_estimators") == NumericBound(
        name="forest_n_estimators", low=40.0, high=120.0
    )
    # 0.3 .. 0.6 widened by 0.08 is 0.22 .. 0.68: the tenths 0.2 .. 0.7
    assert plan.box_for("drop_threshold") == NumericBound(name="drop_threshold", low=0.2, high=0.7)
    assert any("forest_n_estimators [40, 120]" in n for n in plan.notes)


def test_a_box_at_the_end_of_a_grid_gains_the_neighbour_it_has() -> None:
    """The grid 20..180 of [20, 199] step 20: [185, 199] holds no point; rounded outwards
    it is 180 alone, and takes 160 beside it. A grid of one point narrows nothing."""
    from retune.space._params import grid_box

    assert grid_box(20, 199, 20, 185.0, 199.0) == (160, 180)
    assert grid_box(20, 199, 20, 20.0, 25.0) == (20, 40)
    assert grid_box(0.1, 0.7, 0.1, 0.44, 0.46) == (0.4, 0.5)
    assert grid_box(1, 3, 5, 1.0, 3.0) is None


def _families_space() -> SearchSpace:
    """The estimator gained `random_forest`, a family no earlier study tried."""
    return parse_search_space(
        {
            "name": "families",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting", "random_forest"],
                    "when": {
                        "logistic": {
                            "C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}
                        },
                        "gradient_boosting": {"gb_max_depth": {"type": "int", "low": 1, "high": 5}},
                        "random_forest": {
                            "forest_max_depth": {"type": "int", "low": 2, "high": 12}
                        },
                    },
                }
            },
        }
    )


def test_a_learned_box_keeps_a_choice_history_never_tried() -> None:
    """`warm_start: box` restricted the estimator to the families among the best
    configurations: `random_forest`, which the space gained and history never tried, was
    never sampled. History is evidence against `gradient_boosting`, not against it."""
    rows = [("s", i, {"estimator": "logistic", "C": 0.1 * (i + 1)}, float(i)) for i in range(5)]
    rows += [
        ("s", 5 + i, {"estimator": "gradient_boosting", "gb_max_depth": 3}, 9.0 + i)
        for i in range(5)
    ]
    space = _families_space()
    plan = LearnedBox(top_fraction=0.2, min_configs=2).plan(_ranked(rows), space)
    assert plan.choice_box == {"estimator": ("logistic", "random_forest")}
    assert any("random_forest" in n and "never tried" in n for n in plan.notes)

    import optuna

    from retune._optuna import PlanSampler, TrialHandle

    study = optuna.create_study(
        sampler=PlanSampler(optuna.samplers.TPESampler(seed=0), plan, seed=0)
    )
    drawn = []
    for i in range(20):
        trial = study.ask()
        drawn.append(space.sample(TrialHandle(trial))["estimator"])
        study.tell(trial, float(i % 4))
    assert "random_forest" in drawn and "gradient_boosting" not in drawn


def test_warm_start_reads_history_as_the_pipeline_built_it_across_a_changed_parent() -> None:
    """The space dropped `estimator` (always logistic now): the gradient-boosting winners
    were enqueued as logistic configurations. They are skipped and counted, and only the
    logistic configuration is re-scored and boxed."""
    space = parse_search_space(
        {
            "name": "v1",
            "params": {
                "scaler": {"type": "categorical", "choices": ["none", "standard"]},
                "C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
            },
        }
    )
    history = _ranked(
        [
            (
                "old",
                0,
                {"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 20},
                0.30,
            ),
            (
                "old",
                1,
                {"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 15},
                0.31,
            ),
            ("old", 2, {"scaler": "standard", "estimator": "logistic", "C": 0.05}, 0.45),
        ]
    )
    plan = Combined().plan(history, space)
    assert plan.enqueue == ({"scaler": "standard", "C": 0.05},)
    assert any("skipped 2 configuration(s)" in n for n in plan.notes)
    assert any("left out 2 best configuration(s)" in n for n in plan.notes)


def test_history_keeps_only_the_studies_tuned_for_the_job_s_objective(tmp_path: Any) -> None:
    """A study tuned for a cost matrix that favours recall ranks configurations by another
    loss: read as history for a log-loss job, its best configurations were enqueued and
    boxed as if they were log loss's, with no note."""
    storage = str(tmp_path / "journal.log")
    x, y = binary(seed=8, n=150)
    tuned = {
        "cost": make_objective("cost", cost_matrix=[[0, 1], [50, 0]]),
        "loss": make_objective("log_loss"),
    }
    for name, objective in tuned.items():
        run_study(
            storage=storage,
            study_name=name,
            space=small_space(),
            x=x,
            y=y,
            objective=objective,
            cv=StratifiedKFoldCV(n_splits=2),
            budget=Budget(max_trials=3),
            plan=None,
            seed=0,
        )
    history = load_history(storage, ["cost", "loss"])
    assert history.objectives["cost"] == {
        "name": "cost",
        "params": {"cost_matrix": [[0.0, 1.0], [50.0, 0.0]]},
    }
    same = history.tuned_for(make_objective("log_loss"))
    assert same.study_names == ("loss",)
    assert [t for t in history.trials if t.study_name == "loss"] == list(same.trials)
    assert history.left_out_for(make_objective("log_loss")) == (
        "left out 1 earlier study tuned for another objective than 'log_loss': cost (cost)"
    )
    other_costs = make_objective("cost", cost_matrix=[[0, 1], [5, 0]])
    assert history.tuned_for(other_costs).trials == ()
    assert history.left_out_for(other_costs) is not None
    assert same.left_out_for(make_objective("log_loss")) is None
