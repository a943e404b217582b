"""The windows drift is judged on (features and the champion's prediction, the label on
its own window of matured requests; their frames: :mod:`tunewatch._drift_frame`), and
evidently's HTML report of a stored drift verdict, built once and kept gzip-compressed (at
most a few built at once in a process: :mod:`tunewatch._drift_report_builds`)."""

from __future__ import annotations

import gzip
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitor import (
    ColumnDriftConfig,
    DriftDetector,
    EvidentlyError,
    evidently_report,
)
from monitor.drift import METHODS as DRIFT_METHODS
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, EvaluationConfig
from tunewatch._drift_columns_shown import (
    DRIFT_FEATURES,
    check_features,
    columns_notice,
    report_columns,
)
from tunewatch._drift_frame import LABEL as LABEL  # also imported from here
from tunewatch._drift_frame import PREDICTION as PREDICTION
from tunewatch._drift_frame import column_types, drift_frame, reference_frame
from tunewatch._drift_report_builds import build_slot
from tunewatch._drift_report_rows import JudgedWindow, judged_window, with_notice
from tunewatch._drift_report_window_purged import WindowPurgedError as WindowPurgedError
from tunewatch._errors import NotFoundError, StoreError, StoreUnavailableError, TunewatchError
from tunewatch._policies import FIRST_REQUEST, LAST_REQUEST
from tunewatch._window_sample import time_window
from tunewatch.store import EvaluationRow, ModelRow, Store, VersionRow, Window

logger = logging.getLogger(__name__)

#: How to serve :func:`drift_report`'s HTML. evidently's report needs its own inline
#: scripts (and ``eval``). It writes column names into one unescaped; monitor's
#: ``evidently_report`` makes each ``<`` in them inert, and as a second line ``sandbox``
#: renders the page in an opaque origin, where no script reaches the dashboard's origin,
#: session cookie or API. The report is self-contained (its scripts, styles, fonts and
#: images inline or ``data:``/``blob:``; it loads nothing over the network), so the rest
#: refuses every load, request, form submission, frame and new window (no
#: ``allow-popups``: plotly's logo link no longer opens).
DRIFT_REPORT_POLICY = "; ".join(
    (
        "sandbox allow-scripts",
        "default-src 'none'",
        "script-src 'unsafe-inline' 'unsafe-eval'",
        "style-src 'unsafe-inline'",
        "img-src data: blob:",
        "font-src data:",
        "connect-src 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
DRIFT_REPORT_HEADERS = {
    "Content-Security-Policy": DRIFT_REPORT_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


#: The artefact suffix of a drift report's page, plain or gzip-compressed (the payload's
#: ``encoding`` says which): the store's suffixes take no second dot, and backups and
#: the artefacts shared with a PostgreSQL store name reports by it.
REPORT_SUFFIX = ".html"


@dataclass(frozen=True)
class StoredReport:
    """A drift report's page as stored: ``data`` gzip-compressed (``encoding="gzip"``,
    evidently's 4 MB page is about 1.3 MB so), or plain UTF-8 HTML (``None``: a report
    stored before they were compressed)."""

    data: bytes
    encoding: Literal["gzip"] | None

    def html(self) -> str:
        return (gzip.decompress(self.data) if self.encoding == "gzip" else self.data).decode()


def drift_report(
    store: Store,
    artefacts: ArtefactStore,
    config: Config,
    baseline_of: Callable[[VersionRow, ModelRow], Any],
    name: str,
    evaluation_id: int,
    *,
    features: int = DRIFT_FEATURES,
) -> str:
    """evidently's HTML drift report for a stored drift evaluation's window (see
    :func:`drift_report_file`, the page as stored)."""
    return drift_report_file(
        store, artefacts, config, baseline_of, name, evaluation_id, features=features
    ).html()


def drift_report_file(
    store: Store,
    artefacts: ArtefactStore,
    config: Config,
    baseline_of: Callable[[VersionRow, ModelRow], Any],
    name: str,
    evaluation_id: int,
    *,
    features: int = DRIFT_FEATURES,
) -> StoredReport:
    """evidently's HTML drift report for a stored drift evaluation's window, judged as
    the verdict was (:func:`judged_as`), against ``baseline_of(champion, model)``, on the
    values the verdict tested (:func:`judged_frames`), as stored.

    It shows the prediction and the label, then at most ``features`` features (1 to
    :data:`tunewatch._drift_columns_shown.MAX_DRIFT_FEATURES`, as the dashboard's
    heatmap): those the verdict drifted, then the most drifted by its scores
    (:func:`tunewatch._drift_columns_shown.report_columns`), and says first how many
    columns it left out: over 1,000 features evidently took 232 s, a 74 MB page and
    900 MB more memory; over 50 of them, 24 s and 7 MB. Only the report of the default
    :data:`DRIFT_FEATURES` is stored; another cap's (one that shows other columns) is
    built each time it is asked for, and not kept.

    Built once (evidently is slow and imported lazily), stored gzip-compressed and
    content-addressed and remembered as a ``drift_report`` evaluation (its payload's
    ``encoding``: ``gzip``); later calls return the stored file.
    Concurrent calls for one report in this process wait for a single build
    (:func:`_single_flight`) and return the stored file. A build needs one of the
    process's few build slots; without a free one it is refused at once
    (:class:`tunewatch._drift_report_builds.ReportBusyError`).
    """
    # The model first: an unknown one is 404 `model_not_found`, as on every route (a
    # name the store cannot hold, such as one with a NUL, included: PostgreSQL's driver
    # refused it in the evaluation's query, a 400 quoting the driver).
    model = store.get_model(name)
    target = store.get_evaluation(name, evaluation_id)
    if target.kind != "drift":
        raise NotFoundError(
            f"model {name!r} has no drift evaluation {evaluation_id}",
            code="evaluation_not_found",
        )
    if target.status != "ok" or target.window_start is None:
        raise NotFoundError(
            f"drift evaluation {evaluation_id} measured no window ({target.status}): "
            "there is no report of it",
            code="evaluation_not_found",
        )
    check_features(features)
    n_features = len(model.feature_names)
    if min(features, n_features) != min(DRIFT_FEATURES, n_features):
        # other columns than the stored report's: built for this caller, not kept
        with build_slot(name, evaluation_id):
            return _build_report(
                store, artefacts, config, baseline_of, model, target, features=features, keep=False
            )
    with _single_flight((name, evaluation_id)):
        stored = _stored_report(store, artefacts, target)
        if stored is not None:
            return stored
        with build_slot(name, evaluation_id):
            return _build_report(store, artefacts, config, baseline_of, model, target)


#: One lock per report being asked for, held while it is looked up and built, with the
#: number of callers holding or awaiting it; the entry goes with the last of them.
_reports_lock = threading.Lock()
_reports: dict[tuple[str, int], tuple[threading.Lock, int]] = {}


@contextmanager
def _single_flight(key: tuple[str, int]) -> Iterator[None]:
    """Hold ``key``'s lock: one caller at a time looks up and builds a (model, evaluation)
    report, so viewers asking at once wait for one build and then find it stored, rather
    than each building (evidently: 20 s of CPU, a 4 MB file) and storing a copy."""
    with _reports_lock:
        lock, callers = _reports.get(key) or (threading.Lock(), 0)
        _reports[key] = (lock, callers + 1)
    try:
        with lock:
            yield
    finally:
        with _reports_lock:
            _, callers = _reports[key]
            if callers == 1:
                del _reports[key]
            else:
                _reports[key] = (lock, callers - 1)


def _stored_report(
    store: Store, artefacts: ArtefactStore, target: EvaluationRow
) -> StoredReport | None:
    """The stored report of drift evaluation ``target`` (its newest build's), ``None``
    before it is built or when its file is gone or damaged: a report is derived data,
    built again while its window's requests are kept. It was a permanent 500, or a 404
    showing a viewer the artefact directory's path; the path is logged here instead."""
    built = [
        row
        for row in store.list_evaluations(
            target.model, kind="drift_report", since=target.window_end, until=target.window_end
        )
        if row.payload.get("evaluation") == target.id
    ]
    if not built:
        return None
    row = max(built, key=lambda r: r.id)  # a report built again is read from then on
    sha = row.payload["sha256"]
    try:
        data = artefacts.get(sha, REPORT_SUFFIX)
    except StoreUnavailableError:
        raise
    except StoreError as exc:  # missing, damaged, unreadable
        logger.warning(
            "model=%s evaluation=%s: its drift report %s cannot be read back (%s); "
            "building it again",
            target.model,
            target.id,
            artefacts.path(sha, REPORT_SUFFIX),
            exc.message,
        )
        return None
    # stored plain before reports were compressed
    return StoredReport(data, "gzip" if row.payload.get("encoding") == "gzip" else None)


def _build_report(
    store: Store,
    artefacts: ArtefactStore,
    config: Config,
    baseline_of: Callable[[VersionRow, ModelRow], Any],
    model: ModelRow,
    target: EvaluationRow,
    *,
    features: int = DRIFT_FEATURES,
    keep: bool = True,
) -> StoredReport:
    """Build drift evaluation ``target``'s report of at most ``features`` features,
    compressed; when ``keep``, store it and remember it as a ``drift_report`` evaluation
    (see :func:`drift_report_file`)."""
    name, evaluation_id = model.name, target.id
    judged = judged_window(store, model, target)
    if not judged.window.n_rows:  # before the baseline and evidently: nothing to test
        raise WindowPurgedError.of(store, target)
    champion = store.get_version(name, target.version) if target.version is not None else None
    baseline = baseline_of(champion, model) if champion is not None else None
    if baseline is None:
        raise NotFoundError(
            f"evaluation {evaluation_id} has no reference to compare with",
            code="evaluation_not_found",
        )
    evaluation = config.model_or_default(name, model.task).evaluation
    columns, drift_share = judged_as(target.payload, evaluation.drift)
    reference, current = judged_frames(
        store, model, evaluation, target, baseline, columns, judged=judged
    )
    # evidently judges every typed column: only those the verdict tested, so that the
    # dataset share divides by the columns the verdict's did
    untested = untested_columns(target.payload)
    labelled = baseline.has_labels
    tested = {
        c: kind for c, kind in column_types(model, labelled=labelled).items() if c not in untested
    }
    shown = report_columns(target.payload, tested, features)
    types = {c: tested[c] for c in shown}
    try:
        html, verdicts = evidently_report(
            reference,
            current,
            columns=columns,
            column_types=types,
            drift_share=drift_share,
        )
    except EvidentlyError as exc:
        raise TunewatchError(
            f"evidently could not build the report of drift evaluation {evaluation_id}: {exc}",
            code="report_unavailable",
        ) from exc
    notice = judged.notice
    if notice is not None:
        logger.warning(
            "model=%s evaluation=%s: the drift report tests %d rows, its verdict tested %s "
            "(same rows: %s)",
            name,
            evaluation_id,
            judged.window.n_rows,
            judged.n_verdict,
            judged.same_rows,
        )
        html = with_notice(html, notice)
    left_out = columns_notice(shown, len(tested), target.payload)
    if left_out is not None:
        html = with_notice(html, left_out, element_id="tunewatch-columns-notice", alert=False)
    # no time stamp in the gzip header: the same page is the same artefact
    report = StoredReport(gzip.compress(html.encode(), mtime=0), "gzip")
    if not keep:
        return report
    sha = artefacts.put(report.data, REPORT_SUFFIX)
    store.add_evaluation(
        model=name,
        version=target.version,
        kind="drift_report",
        status="ok",
        window_start=target.window_start,
        window_end=target.window_end,
        payload={
            "evaluation": evaluation_id,
            "sha256": sha,
            "encoding": report.encoding,
            "drifted_columns": sorted(c for c, drifted in verdicts.items() if drifted),
            # the rows the report tested, against its verdict's (see _drift_report_rows)
            "n_current": judged.window.n_rows,
            "verdict_n_current": judged.n_verdict,
            "same_rows": judged.same_rows,
            "notice": notice,
            # the columns it shows, of those the verdict tested (see _drift_columns_shown)
            "features": features,
            "n_columns_shown": len(shown),
            "n_columns_tested": len(tested),
        },
    )
    return report


def judged_frames(
    store: Store,
    model: ModelRow,
    evaluation: EvaluationConfig,
    target: EvaluationRow,
    baseline: Any,
    columns: Mapping[str, ColumnDriftConfig],
    *,
    judged: JudgedWindow | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference and the window of a stored drift verdict as it tested them, its
    columns tested with ``columns``' methods, not those it could not test: the reference
    as the verdict's profile held it (:func:`tunewatch._drift_frame.reference_frame`);
    the window's features and the champion's predictions of the requests it judged
    (``judged``, else re-read: :func:`tunewatch._drift_report_rows.judged_window`), and
    the labels of the verdict's label window (of the matured part of its window, for a
    verdict stored before labels had their own window) that had arrived by its run
    (:func:`judged_labels`), then the rows of that frame its detector tested
    (:meth:`monitor.drift.DriftDetector.sample`, at the verdict's ``sample_size``).
    ``evaluation``, the config as it is now, fills in only what a verdict stored before
    these were recorded lacks: its sample size, its label window's requests, and (stored
    before labels had their own window) their maturity."""
    assert target.window_start is not None and target.version is not None
    window = (judged or judged_window(store, model, target)).window
    labels = None
    if baseline.has_labels:  # those the verdict tested, when it ran
        if "label_window" in target.payload:
            labels = judged_labels(store, model, evaluation, target)
        else:  # stored before labels had their own window: its matured requests'
            labels = matured_labels(
                window, as_of=target.window_end, maturity_s=evaluation.decay.maturity_s
            )
    current = drift_frame(
        model,
        window.features,
        # predictions: the champion's, as the verdict read them
        np.where((window.versions == target.version)[:, None], window.outputs, np.nan),
        labels,
    )
    # the verdict's sample size; the config's for a verdict stored before it recorded it
    sample_size = target.payload.get("sample_size", evaluation.drift.sample_size)
    # only the detector's sample is taken, which min_rows does not change: the verdict's
    # sample size may be below today's min_rows, which the detector would refuse
    detector = DriftDetector(baseline.profile, min_rows=1, sample_size=sample_size)
    untested = untested_columns(target.payload)
    reference = reference_frame(model, baseline, columns, untested=untested)
    return reference, detector.sample(current)


def judged_labels(
    store: Store, model: ModelRow, evaluation: EvaluationConfig, target: EvaluationRow
) -> np.ndarray:
    """The labels of a stored drift verdict's label window (:func:`label_window`) that had
    arrived by the newest the run read, missing (NaN) for the rest: those it tested.

    The window's requests are those its ``label_window`` names: the newest holding its
    ``n`` rows from its first request to its last (ties at the first broken by request
    id, as the verdict's read broke them), whatever ``window_rows``, ``window_s`` and
    ``decay.maturity_s`` say now. Read at the config's instead, the report of a verdict
    stored before they changed tested other requests' labels."""
    judged = target.payload["label_window"]
    if FIRST_REQUEST in judged:
        labelled = store.window(
            model.name,
            n_features=len(model.feature_names),
            start=datetime.fromisoformat(judged[FIRST_REQUEST]),
            end=datetime.fromisoformat(judged[LAST_REQUEST]) + timedelta(microseconds=1),
            last_n=judged["n"],
            with_features=False,
            sample=judged.get("sample", 1),  # the verdict's sample (1: read whole)
        )
    elif judged.get("n") == 0:  # the window held no request: no label was tested
        return np.empty(0)
    else:  # stored before the verdict named its requests: as the config reads them now
        labelled = label_window(store, model, evaluation, as_of=target.window_end)
    through = judged.get("labels_through", _UNRECORDED)
    return labels_received(
        labelled,
        # stored before the run recorded its newest label: those by its start
        by=target.window_end.timestamp() if through is _UNRECORDED else _seconds(through),
    )


_UNRECORDED = object()


def _seconds(through: str | float | None) -> float | None:
    """A verdict's ``labels_through`` in epoch seconds: an RFC 3339 time, or epoch seconds
    in a verdict stored before it was one (the same instant: a label's arrival is stored
    to the microsecond, which both keep)."""
    if isinstance(through, str):
        return datetime.fromisoformat(through).timestamp()
    return None if through is None else float(through)


def labels_received(window: Window, *, by: float | None) -> np.ndarray:
    """``window``'s labels that had arrived by ``by`` (epoch seconds; ``None``: none had),
    missing (NaN) for the rest: what a drift verdict that read labels through ``by`` tested
    of them (a stored label is never changed)."""
    if by is None:
        return np.full(window.labels.shape, np.nan)
    return np.where(window.label_received_at <= by, window.labels, np.nan)


def untested_columns(payload: dict[str, Any]) -> frozenset[str]:
    """The columns a stored drift verdict could not test (``insufficient_data``: too few
    values in the window, e.g. the label when few requests are labelled yet). The
    verdict's dataset share leaves them out of its denominator."""
    stored = payload.get("columns", [])
    return frozenset(payload.get("insufficient", [])) | {
        c["column"] for c in stored if c.get("status") == "insufficient_data"
    }


def judged_as(payload: dict[str, Any], settings: Any) -> tuple[dict[str, ColumnDriftConfig], float]:
    """evidently's per-column methods and thresholds, and dataset share, that reproduce a
    stored drift verdict: each column the verdict tested with the method the evaluation
    used (tunewatch picks the default by the smaller sample, evidently by the reference
    alone), none it could not test (:func:`untested_columns`), and the dataset share
    threshold the verdict recorded (``settings``, the config now, only for what a verdict
    stored before did not record); under the ``bonferroni`` or ``fdr`` rule, p-value
    columns at the corrected threshold, and the dataset drifted when any column did."""
    stored = [c for c in payload.get("columns", []) if c.get("method") in DRIFT_METHODS]
    thresholds: dict[str, float | None] = {c["column"]: c.get("threshold") for c in stored}
    for name, spec in settings.columns.items():
        thresholds.setdefault(name, spec.threshold)
    methods = {c["column"]: c["method"] for c in stored}
    for name, spec in settings.columns.items():
        methods.setdefault(name, spec.method)
    # the verdict's share threshold; the config's for a verdict stored before it
    # recorded it
    drift_share = float(payload.get("share_threshold", settings.share_threshold))
    rule = payload.get("rule", "share")
    tested = [c for c in stored if c.get("status") != "insufficient_data"]
    with_p = sorted(
        (float(c["p_value"]), c["column"]) for c in tested if c.get("p_value") is not None
    )
    if rule in ("bonferroni", "fdr") and with_p:
        # The verdict stored each p-value column's cut-off under the rule, over the whole
        # family (distance columns too): recomputed here over the p-value columns alone, a
        # window mixing both judged them at a looser cut and named columns it had cleared.
        # evidently drifts below its threshold, the rule at or below the cut: nudged up.
        m = len(with_p)
        if rule == "bonferroni":
            fallback = settings.alpha / m
        else:  # Benjamini-Hochberg rejects the k smallest, k the largest with p_(k) <= k a/m:
            # exactly the p-values under the critical value k a/m (p_(k+1) > (k+1) a/m)
            k = max(
                (j for j, (p, _) in enumerate(with_p, 1) if p <= j * settings.alpha / m), default=1
            )
            fallback = k * settings.alpha / m
        for _, column in with_p:
            stored_cut = thresholds.get(column)  # a payload stored before: recomputed
            cut = fallback if stored_cut is None else float(stored_cut)
            thresholds[column] = max(math.nextafter(cut, math.inf), 5e-324)
        drift_share = 1.0 / max(len(tested), 1)
    untested = untested_columns(payload)
    columns = {
        name: ColumnDriftConfig(method=methods[name], threshold=thresholds.get(name))
        for name in methods
        if name not in untested
    }
    return columns, drift_share


def label_window(
    store: Store, model: ModelRow, evaluation: EvaluationConfig, *, as_of: datetime
) -> Window:
    """The requests whose labels drift tests at ``as_of`` (outputs, labels and times, no
    inputs): the newest ``window_rows`` rows, or the ``window_s``, received at least
    ``decay.maturity_s`` ("labels are complete after this") before it. The verdict and
    its report both read them here.

    When a label's delay depends on the outcome, the labels that came first are a biased
    sample: read as they arrived, unchanged traffic was label drift at p = 6e-9. Taken as
    the matured part of the newest window instead, a model whose window fills in less
    than the maturity (5,000 rows a day: 3.5 requests a minute) never had one, and its
    label was never tested."""
    return aged_window(store, model, evaluation, as_of=as_of, age_s=evaluation.decay.maturity_s)


def aged_window(
    store: Store, model: ModelRow, evaluation: EvaluationConfig, *, as_of: datetime, age_s: float
) -> Window:
    """The newest ``window_rows`` requests, or the ``window_s``, received at least
    ``age_s`` before ``as_of`` (outputs, labels and times, no inputs)."""
    end = as_of - timedelta(seconds=age_s) + timedelta(microseconds=1)
    if evaluation.window_rows is not None:
        start, last_n = None, evaluation.window_rows
    else:
        assert evaluation.window_s is not None
        return time_window(
            store,
            model,
            start=end - timedelta(seconds=evaluation.window_s),
            end=end,
            max_requests=evaluation.max_window_requests,
            with_features=False,
        )
    return store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end,
        last_n=last_n,
        with_features=False,
    )


def matured_labels(window: Window, *, as_of: datetime, maturity_s: float) -> np.ndarray:
    """The labels of ``window``'s requests at least ``maturity_s`` old at ``as_of`` that
    had arrived by then, missing (NaN) elsewhere: what a drift verdict run at ``as_of``
    and stored before labels had their own window (:func:`label_window`) tested, for its
    report."""
    matured = window.received_at <= as_of.timestamp() - maturity_s
    return np.where(matured, labels_received(window, by=as_of.timestamp()), np.nan)
