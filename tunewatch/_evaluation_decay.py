"""The decay kind of a scheduled evaluation: the champion's realised objective over time.

Windows of ``decay.window_s`` on fixed edges (:mod:`tunewatch._decay_windows`) whose
labels have matured (``decay.maturity_s``) give one value each;
:class:`monitor.DecayEstimator` fits their trend and projects when it crosses the
threshold. Without ``decay.threshold`` the threshold is ``5 * tolerance`` worse than
where the horizon began (:func:`default_threshold`): in the objective's own units, or for
an error in the target's units (RMSE, MAE) that fraction of the level.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitor import DecayEstimator, MonitorError, ServingMetrics, WindowValue
from monitor.objectives import MAE, RMSE, Objective, ObjectiveError
from tunewatch._config import ModelConfig
from tunewatch._decay_settled import settled_entry, window_entry
from tunewatch._decay_windows import DecayWindowCache
from tunewatch._objective_display import objective_params
from tunewatch._policies import decay_settings
from tunewatch._span import requests_span
from tunewatch.store import ModelRow, Store


def decay_verdict(
    store: Store,
    metrics: ServingMetrics,
    model: ModelRow,
    cfg: ModelConfig,
    objective: Objective,
    now: datetime,
    version: int | None,
    *,
    cache: DecayWindowCache | None = None,
) -> tuple[str, dict[str, Any]]:
    """The decay verdict of ``version``: the realised objective per matured window over
    the horizon, its trend and projected crossing of the threshold (see
    :class:`monitor.DecayEstimator`), exported as metrics. With ``cache`` the figures of
    the horizon's settled windows are kept between runs and only the rest read (the same
    verdict; see :mod:`tunewatch._decay_windows`)."""
    d = cfg.evaluation.decay
    if version is None:
        metrics.forget(metrics.decay_slope, model=model.name)
        metrics.forget(metrics.objective_realised, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": "no champion"}
    try:
        if cache is None:
            cache = DecayWindowCache(from_store=False)  # a cold run: every window read
        judged = cache.horizon(store, model, cfg, objective, version, now)
    except (MonitorError, ObjectiveError) as exc:
        metrics.forget(metrics.decay_slope, model=model.name)
        metrics.forget(metrics.objective_realised, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": str(exc)}
    windows = [j.value for j in judged.windows]
    values = [w for w in windows if w.value is not None]
    threshold = d.threshold
    anchor = None
    tolerance = d.tolerance
    if values:
        level = _early_level(values, d.min_windows)
        if threshold is None:
            anchor = level
            threshold = default_threshold(objective, anchor, d.tolerance)
        if isinstance(objective, _IN_TARGET_UNITS) and level != 0:
            # the retune interval's loss, as a share of the level whatever the threshold:
            # read in the target's unit it advised every day in metres and every 47 days
            # in km
            tolerance = d.tolerance * abs(level)
    estimator = DecayEstimator(
        objective,
        threshold=threshold if threshold is not None else 0.0,
        min_windows=d.min_windows,
        tolerance=tolerance,
    )
    result = estimator.fit_windows(windows)
    # The newest matured window's figure: when it has none (no label matured, or none the
    # objective could score) the series goes, rather than hold an older window's value.
    # Labels that stopped left day 9's accuracy on it at day 31, nothing telling its age.
    realised = windows[-1].value if windows else None
    if realised is not None:
        metrics.objective_realised.labels(model.name, str(version), objective.name).set(
            float(realised)
        )
    else:
        metrics.forget(
            metrics.objective_realised,
            model=model.name,
            only={"objective": objective.name},
        )
    if result.slope_per_day is not None:
        sign = -1.0 if objective.greater_is_better else 1.0  # > 0 means getting worse
        metrics.decay_slope.labels(model.name).set(sign * result.slope_per_day)
    else:
        metrics.forget(metrics.decay_slope, model=model.name)
    soon = result.projected_crossing is not None and result.projected_crossing - now <= timedelta(
        days=d.horizon_days
    )
    payload = {
        "alarm": bool(result.status == "decaying" and soon),
        "objective": objective.name,
        "objective_params": objective_params(objective),  # its cost matrix, threshold, …
        "threshold": threshold,
        "threshold_anchor": anchor,  # without decay.threshold: where the horizon began
        "status": result.status,
        "slope_per_day": result.slope_per_day,
        "slope_ci": list(result.slope_ci) if result.slope_ci else None,
        "current_estimate": result.current_estimate,
        "projected_crossing": (
            result.projected_crossing.isoformat() if result.projected_crossing else None
        ),
        "recommended_retune_interval_days": result.recommended_retune_interval_days,
        "windows": [window_entry(j) for j in judged.windows],
        "settled": settled_entry(judged),  # what a new process takes instead of reading
        # the settings the alarm was judged under: a policy's streak counts it only while
        # they are in force (tunewatch._policies.decide)
        **decay_settings(cfg.objective, d).payload(),
    }
    if values:  # hysteresis tells decay verdicts apart by their newest matured window
        newest = next(j for j in reversed(judged.windows) if j.value.value is not None)
        payload.update(requests_span(np.array([newest.first_request, newest.last_request])))
    status = "insufficient_data" if result.status == "insufficient_data" else "ok"
    return status, payload


# Objectives whose value is in the regression target's unit. A fixed 5 tolerances (0.05)
# of it alarmed on an RMSE tripling from 0.10 m but not from 0.0001 km, and in millimetres
# on any significant slope. Bounded objectives (accuracy, AUC, Brier) and unit-free ones
# (log loss, MAPE) keep the absolute distance: 5 % of a log loss of 0.19 lies within its
# anchor's noise at 2,000 requests a window, and 2.4 % of a stationary model's runs
# alarmed (30 daily windows, simulated), none with 0.05; MAPE 0.08 at 50 a window, 4.5 %.
_IN_TARGET_UNITS: tuple[type[Objective], ...] = (MAE, RMSE)


def default_threshold(objective: Objective, anchor: float, tolerance: float) -> float:
    """The threshold without ``decay.threshold``: ``5 * tolerance`` worse than ``anchor``
    (the horizon's early level, :func:`_early_level`) — an amount of the objective, or
    for an error in the target's unit (RMSE, MAE) that fraction of ``anchor`` (5 % worse
    by default), so that the verdict is the same whatever unit the target is written in.
    An anchor of 0 (a perfect start) makes any significant worsening cross."""
    worse = 5 * tolerance
    if isinstance(objective, _IN_TARGET_UNITS):
        worse *= abs(anchor)
    return anchor - worse if objective.greater_is_better else anchor + worse


def _early_level(values: list[WindowValue], count: int) -> float:
    """The objective where the decay horizon begins: its first ``count`` matured
    windows' values weighted by the labelled requests behind them (``n_scored``), the
    weights the trend is fitted with. The first window's value alone moved the default
    threshold as far as a window of two requests can (accuracy 0 or 1), silencing a real
    decay or alarming a stable model."""
    early = [w for w in values[:count] if w.value is not None and w.n_scored > 0]
    total = sum(w.n_scored for w in early)
    return sum(float(w.value) * w.n_scored for w in early if w.value is not None) / total
