"""The labels kind of a scheduled evaluation: label coverage and label delay.

The coverage is the labelled share of the requests whose labels are due
(:func:`tunewatch._drift_report.label_window`); the delay a lower bound of the median
label delay, and the alarm whether labels come later than ``label_delay_alarm_s``,
judged also over the requests at least that old (:func:`tunewatch._drift_report.aged_window`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from monitor import ServingMetrics
from tunewatch._config import ModelConfig
from tunewatch._drift_report import aged_window
from tunewatch._window_sample import sampled
from tunewatch.store import ModelRow, Store, Window


def labels_verdict(
    store: Store,
    metrics: ServingMetrics,
    model: ModelRow,
    cfg: ModelConfig,
    window: Window,
    matured: Window,
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """Label coverage of the requests whose labels are due, and the median label delay
    of the window's requests.

    The coverage is the labelled share of ``matured``, the newest ``window_rows`` (or
    ``window_s``) requests at least ``decay.maturity_s`` old
    (:func:`tunewatch._drift_report.label_window`), ``None`` with none so old. Over
    the newest window it counted requests whose labels were not due yet: 20,000
    requests over two days, each labelled after 12 h, a one-day maturity, read
    0.0002, a healthy label feed looking dead. That share is ``labelled_so_far``.

    A request still waiting for its label has waited ``now - received_at`` so far:
    its delay is censored there, and the median over every request (waited so far,
    or delay) is a lower bound of the true median delay, exact once all are labelled.
    The median over the labelled ones alone (``median_delay_labelled_s``) reads only
    the labels that came, and fast: with none arrived it had no figure, and a tenth
    labelled within the hour hid nine tenths unlabelled for weeks.

    That lower bound cannot exceed how far back the window reaches, so a model whose
    window spans less than ``label_delay_alarm_s`` (5,000 rows of a model answering
    over 715 requests a day, at 7 days) never raised the alarm, whatever its labels
    did. Requests received at least ``label_delay_alarm_s`` ago (a window of the same
    size, ending there) answer it exactly: each one's label came within the limit or
    did not. The alarm is the lower bound past the limit, or more than half of those
    requests late (``late_share``): either way the median delay is longer. The gauge
    holds the larger of the two medians, both lower bounds.

    Either figure judges only when it rests on at least ``drift.min_rows`` requests:
    one unlabelled request eight days old among recent ones labelled within hours was
    a late share of 1.0 and an alarm. Without enough aged requests (and no alarm from
    a window of enough requests) the verdict is insufficient data: it raises nothing.
    """
    if window.n_rows == 0:
        for gauge in (metrics.label_coverage, metrics.label_delay):
            metrics.forget(gauge, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": "empty window"}
    labelled = window.labelled()
    so_far = float(labelled.mean())
    coverage = float(matured.labelled().mean()) if matured.n_rows else None
    delays = window.label_received_at[labelled] - window.received_at[labelled]
    waited = np.maximum(now.timestamp() - window.received_at[~labelled], 0.0)
    median = float(np.median(np.concatenate([delays, waited])))
    limit = cfg.evaluation.label_delay_alarm_s
    aged = aged_window(store, model, cfg.evaluation, as_of=now, age_s=limit)
    late_share, aged_median, min_rows = None, 0.0, cfg.evaluation.drift.min_rows
    if aged.n_rows:
        came = aged.labelled()
        aged_delays = np.full(aged.n_rows, np.inf)  # not labelled yet: past the limit
        aged_delays[came] = aged.label_received_at[came] - aged.received_at[came]
        late_share = float((aged_delays > limit).mean())
        waited_aged = now.timestamp() - aged.received_at
        aged_median = float(np.median(np.minimum(aged_delays, waited_aged)))
    aged_late = late_share if aged.n_rows >= min_rows else None  # enough to judge
    alarm = (window.n_rows >= min_rows and median > limit) or (aged_late or 0.0) > 0.5
    delay = max(median, aged_median)
    if coverage is None:  # no label is due yet: no figure, not the last one held
        metrics.forget(metrics.label_coverage, model=model.name)
    else:
        metrics.label_coverage.labels(model.name).set(coverage)
    metrics.label_delay.labels(model.name).set(delay)
    judged = alarm or aged_late is not None
    reason = (
        f"{aged.n_rows} requests at least label_delay_alarm_s={limit:g} s old, fewer "
        f"than drift.min_rows={min_rows}: too few to tell whether labels are late"
    )
    return ("ok" if judged else "insufficient_data"), {
        **({} if judged else {"reason": reason}),
        "alarm": bool(alarm),
        "late_share": late_share,  # of the requests at least the limit old: late or none
        "n_aged": aged.n_rows,
        "coverage": coverage,  # of the requests at least decay.maturity_s old
        "n_matured": matured.n_rows,
        "labelled_so_far": so_far,  # of the window's requests, labels due or not
        "median_delay_s": median,  # at least: unlabelled requests count as waited so far
        "label_delay_s": delay,  # the gauge's figure, which a new leader exports again
        "median_delay_labelled_s": float(np.median(delays)) if delays.size else None,
        "unlabelled_share": 1.0 - so_far,
        "overdue_share": float((waited > limit).sum() / window.n_rows),
        "n": window.n_rows,
        "n_labelled": int(labelled.sum()),
        **sampled(window),
        **sampled(matured, "sample_matured"),
        **sampled(aged, "sample_aged"),
    }
