"""The estimate kind of a scheduled evaluation: the champion's accuracy without labels.

CBPE, calibrated on the champion's reference scores (:mod:`tunewatch._evaluation_baseline`),
estimates the accuracy of the champion's decisions in the window; the alarm is a drop
past ``estimate.max_drop`` from the reference accuracy. Beside it stands the realised
accuracy of the same decisions of the requests whose labels are due. All three are
exported (:func:`export_estimate`: ``tunewatch_objective_estimated``,
``tunewatch_estimate_realised``, ``tunewatch_estimate_reference``), so that a dashboard
draws the estimate against the accuracies it is judged against, not against the realised
objective (another metric). Binary models only.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import numpy as np

from monitor import ServingMetrics
from monitor.objectives import positive_proba
from tunewatch._config import ModelConfig
from tunewatch._evaluation_baseline import Baseline, NoBaseline
from tunewatch._policies import estimate_settings
from tunewatch._window_sample import sampled
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
    # The estimate exports its accuracies only (export_estimate), labelled `accuracy`
    # whatever the objective: the realised objective is the decay check's figure (over
    # matured windows), which may be accuracy too, and then of the same decisions.
    if (
        isinstance(baseline, NoBaseline)
        or baseline.cbpe is None
        or baseline.reference_accuracy is None
    ):
        forget_estimate(metrics, window.model)  # no figure held over
        reason = baseline.reason if isinstance(baseline, NoBaseline) else baseline.no_estimate
        return "insufficient_data", {"alarm": False, "reason": reason}
    answered = window.versions == version  # CBPE is calibrated on the champion's scores
    if answered.sum() < cfg.evaluation.drift.min_rows:
        forget_estimate(metrics, window.model)
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
    drop = baseline.reference_accuracy - estimate.value
    payload = {
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
        **sampled(window),
        # the settings the alarm was judged under: a policy's streak counts it only while
        # they are in force (tunewatch._policies.decide)
        **estimate_settings(cfg.objective, cfg.evaluation.estimate).payload(),
    }
    export_estimate(metrics, store.get_model(window.model).name, version, payload)
    return "ok", payload


def export_estimate(
    metrics: ServingMetrics, name: str, version: int | None, payload: Mapping[str, Any]
) -> None:
    """Export an ``ok`` estimate's payload (as evaluated, or as stored): the estimated
    accuracy and, beside it, the realised accuracy of the same decisions and the
    reference accuracy the alarm's drop is measured from, each labelled with the metric.
    A figure the payload lacks (``None``, or no key) is not exported, nor held over from
    an earlier window: there is no realised accuracy until the window's labels come."""
    m = metrics
    labels = (name, str(version), payload["metric"])
    for gauge, key in (
        (m.objective_estimated, "estimated"),
        (m.estimate_realised, "realised"),
        (m.estimate_reference, "reference"),
    ):
        value = payload.get(key)
        if value is None:
            m.forget(gauge, model=name)
        else:
            gauge.labels(*labels).set(value)


def forget_estimate(metrics: ServingMetrics, name: str, *, keep: Container[str] = ()) -> None:
    """Remove ``name``'s estimate figures (but those of the versions in ``keep``)."""
    for gauge in metrics.estimate_gauges:
        metrics.forget(gauge, model=name, keep=keep)
