"""The drift kind of a scheduled evaluation: the window against the champion's baseline.

The window's features and the champion's predictions, and the labels of the requests
whose labels are due (:func:`tunewatch._drift_report.label_window`), are tested against
the reference profile of the champion's baseline (:mod:`tunewatch._evaluation_baseline`)
with :class:`monitor.DriftDetector`, as ``evaluation.drift`` says. The verdict is
exported as metrics and returned for :class:`tunewatch._evaluation.Evaluator` to store;
its HTML report is :func:`tunewatch._drift_report.drift_report`'s.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from monitor import ColumnDriftConfig, DriftDetector, DriftError, ServingMetrics
from tunewatch._config import ModelConfig
from tunewatch._config_evaluation import drift_columns
from tunewatch._drift_frame import LABEL, drift_frame, frame_rows
from tunewatch._drift_report_rows import judged_rows_record
from tunewatch._evaluation_baseline import Baseline, NoBaseline
from tunewatch._policies import (
    FIRST_REQUEST,
    LABEL_FIRST_REQUEST,
    LABEL_LAST_REQUEST,
    LAST_REQUEST,
    drift_settings,
)
from tunewatch._span import iso, requests_span
from tunewatch._window_sample import sampled
from tunewatch.store import ModelRow, Window

logger = logging.getLogger(__name__)


def drift_verdict(
    metrics: ServingMetrics,
    model: ModelRow,
    cfg: ModelConfig,
    window: Window,
    matured: Window,
    baseline: Baseline | NoBaseline,
    version: int | None,
) -> tuple[str, dict[str, Any]]:
    """Drift of the window's features and the champion's predictions, and of the
    labels of their own window (:func:`tunewatch._drift_report.label_window`): the
    newest ``window_rows`` (or ``window_s``) requests at least ``decay.maturity_s``
    old, the evaluation's "labels are complete after this". With none so old, or
    with fewer than ``drift.min_rows`` requests in the current window (where the
    label alone would make the dataset share), the label column is insufficient
    data. The payload's ``label_window`` says which requests were read; when the
    label drifted, ``label_first_request_at`` and ``label_last_request_at`` tell the
    policy which labels the alarm rests on."""
    m = metrics
    if isinstance(baseline, NoBaseline):  # nothing to compare with: no figure, not
        # the last one held (a snapshot that cannot be read also fails the run's outcome:
        # tunewatch._evaluation.UnreadableReference)
        for gauge in (m.drift_share, m.drift_detected, m.feature_drift, m.feature_drifted):
            m.forget(gauge, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": baseline.reason}
    d = cfg.evaluation.drift
    try:
        detector = DriftDetector(
            baseline.profile,
            columns={
                k: ColumnDriftConfig(method=v.method, threshold=v.threshold)
                for k, v in d.columns.items()
            },
            dataset_rule=d.dataset_rule,
            share_threshold=d.share_threshold,
            alpha=d.alpha,
            min_rows=d.min_rows,
            sample_size=d.sample_size,
        )
    except DriftError as exc:
        # a setting the detector refuses whatever the reference (a threshold, a rule:
        # the config loader refuses those first); one only the reference refuses
        # leaves its column untested instead. Drift is lost, not the other kinds
        logger.error(
            "model=%s version=%s: drift not evaluated, the detector refused evaluation.drift: %s",
            model.name,
            version,
            exc,
        )
        for gauge in (m.drift_share, m.drift_detected, m.feature_drift, m.feature_drifted):
            m.forget(gauge, model=model.name)
        return "insufficient_data", {
            "alarm": False,
            "reason": f"evaluation.drift.columns does not fit the reference: {exc}",
        }
    # predictions: the champion's (its reference's are), none where another answered
    outputs = np.where((window.versions == version)[:, None], window.outputs, np.nan)
    labels = None
    judged: dict[str, Any] = {}
    if baseline.has_labels and window.n_rows < d.min_rows:
        # the label alone would be the dataset share of a window that measured nothing
        labels = np.empty(0)
    elif baseline.has_labels:
        labels = matured.labels
        arrived = matured.label_received_at[~np.isnan(matured.label_received_at)]
        judged = {
            "n": matured.n_rows,
            **requests_span(matured.received_at),
            # the newest label read (the store's clock, UTC, as its siblings; epoch
            # seconds in verdicts stored before): the drift report tests the labels
            # that had arrived by then, those this run read
            "labels_through": iso(float(arrived.max())) if arrived.size else None,
            **sampled(matured),
        }
    # only the rows the detector tests, as it would sample the whole window's frame: the
    # drift report takes the same rows of it (DriftDetector.sample at the recorded
    # sample_size and the window recorded by judged_rows_record)
    n_frame = frame_rows(window.features, labels)
    rows = detector.sample_rows(n_frame)
    frame = drift_frame(model, window.features, outputs, labels, rows=rows)
    result = detector.check(frame, n_current=n_frame)
    testable = [c for c in result.columns if c.status != "insufficient_data"]
    if testable:
        m.drift_share.labels(model.name).set(result.drifted_share)
        m.drift_detected.labels(model.name).set(int(result.dataset_drift))
    else:  # nothing was tested: no figure, not "no drift"
        m.forget(m.drift_share, model=model.name)
        m.forget(m.drift_detected, model=model.name)
    tested = {
        c.column: (c.method, c.statistic, c.drifted) for c in testable if c.statistic is not None
    }
    m.set_feature_drift(model.name, {c: tested.get(c) for c in drift_columns(model.feature_names)})
    payload = {
        "alarm": bool(result.dataset_drift),
        "drifted_share": result.drifted_share,
        "drifted_columns": list(result.drifted_columns),
        "rule": result.rule,
        # what the verdict was judged with, for its drift report, built later and
        # judged as the verdict was whatever the config says by then
        "share_threshold": d.share_threshold,
        "sample_size": d.sample_size,
        "n_current": window.n_rows,  # the label's window is its own
        **sampled(window),
        # which requests those were, for the report to re-read them and no others
        **judged_rows_record(window),
        "insufficient": list(result.insufficient),
        # the settings the alarm was judged under: a policy's streak counts it only while
        # they are in force (tunewatch._policies.decide)
        **drift_settings(d).payload(),
        "columns": [
            {
                "column": c.column,
                "method": c.method,
                # JSON has no infinity: a statistic that is not finite is stored as
                # null, `p_value` and `drifted` beside it
                "statistic": _finite_or_none(c.statistic),
                "p_value": c.p_value,
                "threshold": c.threshold,
                "drifted": c.drifted,
                "status": c.status,
                "reason": c.reason,
                "n_ref": c.n_ref,
                "n_cur": c.n_cur,
            }
            for c in result.columns
        ],
    }
    if judged:
        payload["label_window"] = judged
        if LABEL in result.drifted_columns and FIRST_REQUEST in judged:
            payload[LABEL_FIRST_REQUEST] = judged[FIRST_REQUEST]
            payload[LABEL_LAST_REQUEST] = judged[LAST_REQUEST]
    return ("ok" if testable else "insufficient_data"), payload


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
