"""The estimate kind of a scheduled evaluation: the champion's accuracy without labels.

CBPE, calibrated on the champion's reference scores (:mod:`tunewatch._evaluation_baseline`),
estimates the accuracy of the champion's decisions in the window; the alarm is a drop
past ``estimate.max_drop`` from the reference accuracy. Beside it stands the realised
accuracy of the same decisions of the requests whose labels are due. Binary models only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor import ServingMetrics
from monitor.objectives import positive_proba
from tunewatch._config import ModelConfig
from tunewatch._evaluation_baseline import Baseline, NoBaseline
from tunewatch.store import ModelRow, Store, Window


def estimate_verdict(
    store: Store,
    metrics: ServingMetrics,
    model: ModelRow,
    cfg: ModelConfig,
    window: Window,
    matured: Window,
    baseline: Baseline | NoBaseline,
    version: int | None,
) -> tuple[str, dict[str, Any]]:
    """CBPE's accuracy of the champion's decisions in the window, at the objective's
    decision threshold (:func:`decision_threshold`; it was 0.5 whatever the objective
    decided at), and beside it the realised accuracy of the same decisions of the
    window's requests at least ``decay.maturity_s`` old, those whose labels drift tests
    (:func:`tunewatch._drift_report.label_window`): ``n_labelled`` counts the labelled
    ones, and with none ``realised`` is ``None``.
    Over every label come so far, it was the figure of the requests labelled first:
    when a label's delay depends on the outcome (the right predictions labelled
    first), 1.0 of a window at 0.7, and the decay page compared the estimate with it."""
    m = metrics
    # The estimate exports the estimated accuracy only, labelled `accuracy` whatever the
    # objective: the realised objective is the decay check's figure (over matured
    # windows), which may be accuracy too, and then of the same decisions.
    if (
        isinstance(baseline, NoBaseline)
        or baseline.cbpe is None
        or baseline.reference_accuracy is None
    ):
        m.forget(m.objective_estimated, model=window.model)  # no figure held over
        reason = baseline.reason if isinstance(baseline, NoBaseline) else baseline.no_estimate
        return "insufficient_data", {"alarm": False, "reason": reason}
    answered = window.versions == version  # CBPE is calibrated on the champion's scores
    if answered.sum() < cfg.evaluation.drift.min_rows:
        m.forget(m.objective_estimated, model=window.model)
        return "insufficient_data", {
            "alarm": False,
            "reason": "too few scored rows",
            "n": int(answered.sum()),
        }
    p = positive_proba(window.outputs[answered])
    estimate = baseline.cbpe.estimate(p, metric="accuracy")
    labelled = answered & window.labelled() & np.isin(window.request_ids, matured.request_ids)
    realised = None
    if labelled.any():
        pl = positive_proba(window.outputs[labelled])
        decided = pl >= baseline.cbpe.threshold
        realised = float((decided == (window.labels[labelled] >= 0.5)).mean())
    name = store.get_model(window.model).name
    metrics.objective_estimated.labels(name, str(version), "accuracy").set(estimate.value)
    drop = baseline.reference_accuracy - estimate.value
    return "ok", {
        "alarm": bool(drop > cfg.evaluation.estimate.max_drop),
        "metric": "accuracy",
        "threshold": baseline.cbpe.threshold,  # the decisions the accuracy is of
        "estimated": estimate.value,
        "ci": [estimate.ci_lo, estimate.ci_hi],
        "n": estimate.n,
        "realised": realised,
        "n_labelled": int(labelled.sum()),
        "reference": baseline.reference_accuracy,
        "drop": drop,
    }
