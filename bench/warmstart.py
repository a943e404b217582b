"""Warm-start benchmark: how many trials does a warm-started study need after drift?

For each drift scenario and seed: a history study (cold TPE, ``HISTORY_TRIALS``) runs on
each period before the last (one period before a concept change; two for the recurring
regime); on the last period, four studies with the same budget (``BUDGET`` trials, 3-fold
stratified CV, log-loss) run from the same seed:

* ``cold``     — TPE, no history;
* ``enqueue``  — the history's top 5 configurations, and the best configuration of each
  branch (estimator family, selector) they leave out, enqueued first, then TPE;
* ``box``      — TPE inside the learned box (Perrone et al. 2019), no exploration;
* ``combined`` — ``retune.warmstart.Combined`` defaults: the enqueue above + a learned box
  on numeric ranges only (margin 0.25; categorical choices stay open) + every 3rd sampled
  trial explores the full space.

Headline per scenario: ``ratio_<method>`` = median over seeds of (trials the method
needs until its best-so-far is within ``TOLERANCE`` of the best value cold start reaches
in its full budget) / ``BUDGET``; a seed where it never gets there counts as
``(BUDGET + 1) / BUDGET``. Also the best value at 10/20/40 trials and the wall time.

That target is the least of cold start's 40 noisy CV estimates, biased low (a winner's
curse) by more than ``TOLERANCE``. Beside it, ``holdout_ratio_<method>`` asks the same of
what each study would ship: its incumbent (best CV value so far) after each trial,
refitted on the period's rows and scored on ``HOLDOUT_ROWS`` fresh rows of the new
concept, against cold start's final incumbent scored there.

Writes ``bench/results/warmstart.json``. Run: ``.venv/bin/python bench/warmstart.py``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.objectives import make_objective  # noqa: E402
from retune import Budget, load_history, run_study  # noqa: E402
from retune.cv import StratifiedKFoldCV  # noqa: E402
from retune.space import SearchSpace, fit_pipeline, parse_search_space  # noqa: E402
from retune.warmstart import Combined, EnqueueTopK, LearnedBox  # noqa: E402

BUDGET = 40
HISTORY_TRIALS = 40
# 5 is the least the issue asks for; with 5, other random draws of the same samplers alone
# moved a median by 0.75 (informative_shift's combined ratio, 0.25 -> 1.0)
SEEDS = tuple(range(10))
N_ROWS = 2000
TOLERANCE = 0.002  # absolute log-loss
#: Fresh rows of the new period's concept the incumbents are scored on (never tuned on).
HOLDOUT_ROWS = 5 * N_ROWS
CHECKPOINTS = (10, 20, 40)
WORKERS = 2

SPACE: dict[str, Any] = {
    "name": "bench_binary",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "selector": {
            "type": "categorical",
            "choices": ["none", "k_best"],
            "when": {"k_best": {"select_k": {"type": "int", "low": 2, "high": 24}}},
        },
        "estimator": {
            "type": "categorical",
            "choices": ["logistic", "gradient_boosting"],
            "when": {
                "logistic": {"C": {"type": "float", "low": 1e-4, "high": 100.0, "log": True}},
                "gradient_boosting": {
                    "gb_n_estimators": {"type": "int", "low": 10, "high": 50, "step": 10},
                    "gb_max_depth": {"type": "int", "low": 1, "high": 4},
                    "gb_learning_rate": {"type": "float", "low": 0.02, "high": 0.5, "log": True},
                },
            },
        },
    },
}

Concept = Callable[[np.random.Generator, bool], tuple[np.ndarray, np.ndarray]]


def _labels(rng: np.random.Generator, logit: np.ndarray, flip: float = 0.0) -> np.ndarray:
    y = (rng.random(len(logit)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    flips = rng.random(len(y)) < flip
    return np.where(flips, 1 - y, y)


def informative_shift(rng: np.random.Generator, after: bool) -> tuple[np.ndarray, np.ndarray]:
    """3 strong features before; 10 weak ones after (best k and C move)."""
    x = rng.normal(size=(N_ROWS, 24))
    logit = 1.5 * x[:, :3].sum(axis=1) if not after else 0.5 * x[:, 3:13].sum(axis=1)
    return x, _labels(rng, logit)


def linear_to_interaction(rng: np.random.Generator, after: bool) -> tuple[np.ndarray, np.ndarray]:
    """A linear concept before; an interaction (trees win, depth matters) after."""
    x = rng.normal(size=(N_ROWS, 12))
    if not after:
        logit = x[:, 0] + x[:, 1] - x[:, 2]
    else:
        logit = 1.5 * x[:, 0] * x[:, 1] + 0.8 * (x[:, 2] > 0.5) - 0.4 + 0.6 * x[:, 3]
    return x, _labels(rng, logit)


def noise_increase(rng: np.random.Generator, after: bool) -> tuple[np.ndarray, np.ndarray]:
    """Clean labels before; 20 % flipped labels and more noise columns after
    (stronger regularisation, fewer features win)."""
    x = rng.normal(size=(N_ROWS, 20))
    logit = 1.2 * (x[:, 0] + x[:, 1] - 0.5 * x[:, 2] + 0.5 * x[:, 3])
    return x, _labels(rng, logit, flip=0.2 if after else 0.0)


# A scenario: the concepts of its periods, oldest first; each period but the last gets a
# history study, the last is the new period every method tunes on.
SCENARIOS: dict[str, tuple[tuple[Concept, bool], ...]] = {
    "informative_shift": ((informative_shift, False), (informative_shift, True)),
    "linear_to_interaction": ((linear_to_interaction, False), (linear_to_interaction, True)),
    "noise_increase": ((noise_increase, False), (noise_increase, True)),
    # Recurring concepts (seasonal regimes): an interaction regime, then a linear one, then
    # the interaction regime again; history holds a study of each earlier period.
    "recurring_interaction": (
        (linear_to_interaction, True),
        (linear_to_interaction, False),
        (linear_to_interaction, True),
    ),
}


def _incumbents(storage: str, study_name: str) -> list[tuple[float, dict[str, Any]]]:
    """Best-so-far loss after each counted trial, in trial order, with its parameters."""
    history = load_history(storage, [study_name])
    by_number = sorted(history.trials, key=lambda t: t.number)
    curve: list[tuple[float, dict[str, Any]]] = []
    best: tuple[float, dict[str, Any]] = (float("inf"), {})
    for t in by_number:
        if t.value < best[0]:
            best = (t.value, dict(t.params))
        curve.append(best)
    return curve


def _holdout_losses(
    incumbents: list[dict[str, Any]],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    holdout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    *,
    seed: int,
    scored: dict[str, float],
) -> list[float]:
    """Each incumbent refitted on ``(x, y)`` and scored on ``holdout`` (log-loss); ``scored``
    caches a configuration's loss across the methods of one run."""
    objective = make_objective("log_loss", task="binary")
    out: list[float] = []
    for params in incumbents:
        key = json.dumps(params, sort_keys=True)
        if key not in scored:
            pipeline = fit_pipeline(params, x, y, seed=seed)
            scored[key] = float(objective.loss(holdout[1], pipeline.predict_proba(holdout[0])))
        out.append(scored[key])
    return out


def _fresh_rows(concept: Concept, after: bool, rng: np.random.Generator) -> tuple[Any, Any]:
    """``HOLDOUT_ROWS`` rows of ``concept`` from ``rng`` (``N_ROWS`` a draw)."""
    draws = [concept(rng, after) for _ in range(HOLDOUT_ROWS // N_ROWS)]
    return np.vstack([d[0] for d in draws]), np.concatenate([d[1] for d in draws])


def _run_one(scenario: str, seed: int) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    space: SearchSpace = parse_search_space(SPACE)
    # Seeded per scenario by its name's CRC: two names of one length shared one stream.
    rng = np.random.default_rng([seed, zlib.crc32(scenario.encode())])
    *old_periods, (concept, after) = SCENARIOS[scenario]
    old_data = [c(rng, a) for c, a in old_periods]
    x_new, y_new = concept(rng, after)
    # a stream of its own: the tuning data above are what they were before the holdout
    holdout = _fresh_rows(
        concept, after, np.random.default_rng([seed, zlib.crc32(scenario.encode()), 1])
    )
    objective = make_objective("log_loss", task="binary")
    cv = StratifiedKFoldCV(n_splits=3)
    out: dict[str, Any] = {"curves": {}, "holdout_curves": {}, "wall_s": {}}
    scored: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"{tmp}/journal.log"
        common: dict[str, Any] = {
            "storage": storage,
            "space": space,
            "objective": objective,
            "cv": cv,
        }
        names = [f"history_{i}" for i in range(len(old_data))]
        for i, (name, (x_old, y_old)) in enumerate(zip(names, old_data, strict=True)):
            run_study(
                study_name=name,
                x=x_old,
                y=y_old,
                budget=Budget(max_trials=HISTORY_TRIALS),
                plan=None,
                seed=seed + 100 * i,
                **common,
            )
        history = load_history(storage, names)
        plans = {
            "cold": None,
            "enqueue": EnqueueTopK(k=5).plan(history, space),
            "box": LearnedBox().plan(history, space),
            "combined": Combined(enqueue=EnqueueTopK(k=5)).plan(history, space),
        }
        for method, plan in plans.items():
            t0 = time.perf_counter()
            run_study(
                study_name=method,
                x=x_new,
                y=y_new,
                budget=Budget(max_trials=BUDGET),
                plan=plan,
                seed=seed + 1000,
                **common,
            )
            out["wall_s"][method] = time.perf_counter() - t0
            incumbents = _incumbents(storage, method)
            out["curves"][method] = [value for value, _ in incumbents]
            out["holdout_curves"][method] = _holdout_losses(
                [params for _, params in incumbents],
                x_new,
                y_new,
                holdout,
                seed=seed,
                scored=scored,
            )
    return {"scenario": scenario, "seed": seed, **out}


def _trials_to_reach(curve: list[float], target: float) -> int:
    for i, best in enumerate(curve, start=1):
        if best <= target + TOLERANCE:
            return i
    return BUDGET + 1


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    methods = ("cold", "enqueue", "box", "combined")
    scenarios: dict[str, Any] = {}
    for name in SCENARIOS:
        mine = [r for r in runs if r["scenario"] == name]
        entry: dict[str, Any] = {}
        for method in methods:
            needed = [_trials_to_reach(r["curves"][method], r["curves"]["cold"][-1]) for r in mine]
            entry[f"ratio_{method}"] = statistics.median(needed) / BUDGET
            entry[f"trials_needed_{method}"] = needed
            entry[f"reached_{method}"] = sum(n <= BUDGET for n in needed)
            for k in CHECKPOINTS:
                entry[f"best_at_{k}_{method}"] = statistics.median(
                    r["curves"][method][min(k, len(r["curves"][method])) - 1] for r in mine
                )
            entry[f"wall_s_{method}"] = statistics.median(r["wall_s"][method] for r in mine)
            held = [
                _trials_to_reach(r["holdout_curves"][method], r["holdout_curves"]["cold"][-1])
                for r in mine
            ]
            entry[f"holdout_ratio_{method}"] = statistics.median(held) / BUDGET
            entry[f"holdout_trials_needed_{method}"] = held
            for k in CHECKPOINTS:
                entry[f"holdout_at_{k}_{method}"] = statistics.median(
                    r["holdout_curves"][method][min(k, len(r["holdout_curves"][method])) - 1]
                    for r in mine
                )
        scenarios[name] = entry
    return scenarios


def main() -> None:
    t0 = time.perf_counter()
    jobs = [(s, seed) for s in SCENARIOS for seed in SEEDS]
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        runs = list(pool.map(_run_one, *zip(*jobs, strict=True)))
    result = {
        "benchmark": "warmstart",
        "settings": {
            "budget": BUDGET,
            "history_trials": HISTORY_TRIALS,
            "seeds": list(SEEDS),
            "rows_per_period": N_ROWS,
            "cv": "stratified 3-fold",
            "objective": "log_loss",
            "tolerance": TOLERANCE,
            "tolerance_note": "absolute log-loss above cold start's final best",
            "not_reached_counts_as": (BUDGET + 1) / BUDGET,
            "holdout_rows": HOLDOUT_ROWS,
            "holdout_note": "holdout_*: each study's incumbent (best CV value so far) after "
            "each trial, refitted on the period's rows and scored on fresh rows of the new "
            "concept; target: cold start's final incumbent's holdout loss, same tolerance",
            "methods": {
                "cold": "TPE (seeded), no history",
                "enqueue": "top-5 history configurations and the best of each branch they "
                "leave out enqueued, then TPE",
                "box": "learned box from the best 20% of history, margin 0.1, no exploration",
                "combined": "enqueue (as above) + numeric-only learned box (margin 0.25; a "
                "losing family's parameters boxed around its own best) + every 3rd trial "
                "explores the full space",
            },
        },
        "scenarios": _summarise(runs),
        "total_wall_s": time.perf_counter() - t0,
        "versions": {
            "python": platform.python_version(),
            "optuna": version("optuna"),
            "scikit-learn": version("scikit-learn"),
        },
    }
    out = ROOT / "bench" / "results" / "warmstart.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, entry in result["scenarios"].items():
        print(name, {k: v for k, v in entry.items() if "ratio_" in k})
    print(f"total {result['total_wall_s']:.0f}s -> {out}")


if __name__ == "__main__":
    main()
