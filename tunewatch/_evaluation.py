"""Scheduled evaluation of one model: drift, decay, label-free estimate, labels, telemetry.

Each run reads the model's current window from the store, compares it with the
champion's reference snapshot, stores one evaluation row per kind (with ``"alarm"`` in
its payload), exports the figures as Prometheus metrics, and lets the event policies
(hysteresis, cool-down) decide whether an event — and through the dispatcher an action —
follows. Degenerate windows are stored as ``insufficient_data``, never raised, and so are
drift and the estimate of a champion whose snapshot is missing or cannot be read. The
baseline built from the snapshot lives in :mod:`tunewatch._evaluation_baseline`, the decay
kind in :mod:`tunewatch._evaluation_decay`, the policies' decisions in
:mod:`tunewatch._evaluation_events`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor import (
    ColumnDriftConfig,
    DriftDetector,
    DriftError,
    LatencySummary,
    ServingMetrics,
)
from monitor.objectives import make_objective, positive_proba
from tunewatch._actions import Dispatcher
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, ModelConfig
from tunewatch._decay_rows import DecayRowCache
from tunewatch._drift_report import (
    LABEL,
    aged_window,
    drift_frame,
    drift_report,
    label_window,
)
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._evaluation_baseline import NO_SNAPSHOT, Baseline, NoBaseline, build_baseline
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._evaluation_events import PolicyEvents, export_stored
from tunewatch._policies import (
    FIRST_REQUEST,
    LABEL_FIRST_REQUEST,
    LABEL_LAST_REQUEST,
    LAST_REQUEST,
)
from tunewatch._span import requests_span, ts
from tunewatch.store import EvaluationRow, ModelRow, Store, VersionRow, Window

logger = logging.getLogger(__name__)


class Evaluator:
    def __init__(
        self,
        *,
        store: Store,
        artefacts: ArtefactStore,
        config: Config,
        metrics: ServingMetrics,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.artefacts = artefacts
        self.config = config
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.clock = clock
        self._baselines: dict[tuple[str, int], Baseline | None] = {}
        self._running: dict[str, threading.Lock] = {}  # one evaluation of a model at a time
        self._running_guard = threading.Lock()
        self._events = PolicyEvents(store=store, metrics=metrics, dispatcher=dispatcher)
        self._decay_rows = DecayRowCache()  # the settled rows of each decay horizon

    # -- the run ---------------------------------------------------------------------------
    def evaluate(self, name: str, *, actor: str = "system") -> list[EvaluationRow]:
        """One evaluation of ``name``; returns the stored rows (one per kind). ``actor``:
        who asked for it (a token's name; ``system`` on schedule), named on the action
        events its policies' events set off.

        Evaluations of one model run one at a time in this process: a scheduled run and a
        ``POST /evaluate`` at once both decided from the history before either's event,
        and both raised it. Another process evaluating the same model at the same time
        (``tunewatch evaluate``, a replica's ``POST /evaluate``) may decide on the same
        history, but the store records a policy's event only while its last event is still
        the one the decision read: the event, and its retune, are raised once."""
        model = self.store.get_model(name)  # an unknown name gets no lock
        with self._running_guard:
            running = self._running.setdefault(name, threading.Lock())
        with running:
            return self._evaluate(model, actor)

    def _evaluate(self, model: ModelRow, actor: str) -> list[EvaluationRow]:
        name = model.name
        cfg = self.config.model_or_default(name, model.task)
        objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
        champion = self.store.champion(name)
        now = self.clock()
        ev = cfg.evaluation
        if ev.window_rows is not None:
            window = self.store.window(
                name, n_features=len(model.feature_names), last_n=ev.window_rows
            )
        else:
            assert ev.window_s is not None
            window = self.store.window(
                name,
                n_features=len(model.feature_names),
                start=now - timedelta(seconds=ev.window_s),
                end=now,
            )
        start = ts(window.received_at.min()) if window.n_rows else None
        span = requests_span(window.received_at)  # what the window-based kinds judged
        version = champion.version if champion else None
        baseline = self._baseline(champion, model) if champion else NO_SNAPSHOT
        # the requests whose labels are due: drift tests their labels, the estimate sets
        # its realised accuracy beside them, and the label coverage is theirs
        matured = label_window(self.store, model, ev, as_of=now)
        # per-version figures describe the champion only: a replaced one's must not linger
        for gauge in (self.metrics.objective_realised, self.metrics.objective_estimated):
            self.metrics.forget(gauge, model=name, keep={str(version)})
        rows = []
        if ev.drift.enabled:
            rows.append(
                self._store(
                    name,
                    version,
                    "drift",
                    start,
                    now,
                    *self._drift(model, cfg, window, matured, baseline, version),
                    span=span,
                )
            )
        if ev.decay.enabled:
            rows.append(
                self._store(
                    name,
                    version,
                    "decay",
                    None,
                    now,
                    *decay_verdict(
                        self.store,
                        self.metrics,
                        model,
                        cfg,
                        objective,
                        now,
                        version,
                        cache=self._decay_rows,
                    ),
                )
            )
        if ev.estimate.enabled and model.task == "binary":
            rows.append(
                self._store(
                    name,
                    version,
                    "estimate",
                    start,
                    now,
                    *self._estimate(model, cfg, window, matured, baseline, version),
                    span=span,
                )
            )
        rows.append(
            self._store(
                name,
                version,
                "labels",
                start,
                now,
                *self._labels(model, cfg, window, matured, now),
                span=span,
            )
        )
        rows.append(
            self._store(
                name, version, "telemetry", start, now, *self._telemetry(model, window), span=span
            )
        )
        self._events.decide(name, cfg, now, {r.kind: r for r in rows}, champion, actor=actor)
        moved = self.store.champion(name)
        if (moved.version if moved is not None else None) != version:
            # promoted (or rolled back) during the run: the re-export of the change came
            # before this run's figures of the champion it replaced, which must not stay
            export_stored(self.store, self.metrics, model, cfg, now=self.clock())
        outcome = "insufficient_data" if all(r.status != "ok" for r in rows) else "ok"
        self.metrics.evaluations.labels(name, outcome).inc()
        return rows

    def export_stored(self, name: str) -> None:
        """Export ``name``'s figures and alarms as its latest stored evaluations of the
        current champion leave them (:func:`~tunewatch._evaluation_events.export_stored`,
        deciding nothing), in a process that exports evaluation figures (the scheduler's
        leader; elsewhere nothing). For a change of champion (a promotion, a rollback):
        the replaced champion's figures and alarms stayed exported until the next run, up
        to ``evaluation.interval_s`` later, and its alarms kept paging. A run under way
        when the champion changes exports the store's figures again as it ends."""
        if not self.metrics.exports_evaluation:
            return
        model = self.store.get_model(name)
        cfg = self.config.model_or_default(name, model.task)
        export_stored(self.store, self.metrics, model, cfg, now=self.clock())

    def _store(
        self,
        model: str,
        version: int | None,
        kind: str,
        start: datetime | None,
        end: datetime,
        status: str,
        payload: dict[str, Any],
        *,
        span: Mapping[str, str] | None = None,
    ) -> EvaluationRow:
        """Store one kind's verdict; ``span`` (the oldest and newest request judged) is
        what hysteresis tells windows apart by (:func:`tunewatch._policies.decide`)."""
        return self.store.add_evaluation(
            model=model,
            version=version,
            kind=kind,
            status=status,
            window_start=start,
            window_end=end,
            payload={**payload, **(span or {})},
        )

    def drift_report(self, name: str, evaluation_id: int) -> str:
        """evidently's HTML drift report for a stored drift evaluation's window (see
        :func:`tunewatch._drift_report.drift_report`)."""
        return drift_report(
            self.store, self.artefacts, self.config, self.report_baseline, name, evaluation_id
        )

    def report_baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | None:
        """The champion's baseline: cached for the current one; an earlier champion's is
        built, not cached, as reports are rare."""
        cached = self._baselines.get((champion.model, champion.version))
        return cached if cached is not None else self._build_baseline(champion, model)

    # -- baseline --------------------------------------------------------------------------
    def _baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | NoBaseline:
        """The champion's baseline, cached: one per model, since each holds a reference
        snapshot (up to 1 GiB unpacked) and a session. Without one, why not: no snapshot
        (cached), or one that cannot be read (said at each run, and not cached: a
        repaired snapshot is read at the next run). Drift and the estimate are lost to
        it, not the evaluation: it raised, and decay, labels and telemetry went too."""
        key = (champion.model, champion.version)
        if key not in self._baselines:
            for replaced in [k for k in list(self._baselines) if k[0] == champion.model]:
                self._baselines.pop(replaced, None)
            try:
                built = self._build_baseline(champion, model)
            except StoreUnavailableError:  # the store's outage, not the snapshot's:
                # the run fails, as at any other read of the store
                raise
            except StoreError as exc:
                logger.error(
                    "model=%s version=%d: drift and the estimate not evaluated: %s",
                    champion.model,
                    champion.version,
                    exc.message,
                )
                return NoBaseline(exc.message)
            self._baselines[key] = built
        baseline = self._baselines[key]
        return NO_SNAPSHOT if baseline is None else baseline

    def _build_baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | None:
        return build_baseline(champion, model, artefacts=self.artefacts, config=self.config)

    # -- kinds -----------------------------------------------------------------------------
    def _drift(
        self,
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
        m = self.metrics
        if isinstance(baseline, NoBaseline):  # nothing to compare with: no figure, not
            # the last one held
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
                "model=%s version=%s: drift not evaluated, the detector refused "
                "evaluation.drift: %s",
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
        if baseline.reference.labels is not None and window.n_rows < d.min_rows:
            # the label alone would be the dataset share of a window that measured nothing
            labels = np.empty(0)
        elif baseline.reference.labels is not None:
            labels = matured.labels
            arrived = matured.label_received_at[~np.isnan(matured.label_received_at)]
            judged = {
                "n": matured.n_rows,
                **requests_span(matured.received_at),
                # the newest label read (epoch seconds, the store's clock): the drift
                # report tests the labels that had arrived by then, those this run read
                "labels_through": float(arrived.max()) if arrived.size else None,
            }
        frame = drift_frame(model, window.features, outputs, labels)
        result = detector.check(frame)
        testable = [c for c in result.columns if c.status != "insufficient_data"]
        if testable:
            m.drift_share.labels(model.name).set(result.drifted_share)
            m.drift_detected.labels(model.name).set(int(result.dataset_drift))
        else:  # nothing was tested: no figure, not "no drift"
            m.forget(m.drift_share, model=model.name)
            m.forget(m.drift_detected, model=model.name)
        tested = {
            c.column: (c.method, c.statistic, c.drifted)
            for c in testable
            if c.statistic is not None
        }
        m.set_feature_drift(model.name, {f: tested.get(f) for f in model.feature_names})
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
            "insufficient": list(result.insufficient),
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

    def _estimate(
        self,
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
        m = self.metrics
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
        name = self.store.get_model(window.model).name
        self.metrics.objective_estimated.labels(name, str(version), "accuracy").set(estimate.value)
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

    def _labels(
        self, model: ModelRow, cfg: ModelConfig, window: Window, matured: Window, now: datetime
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
            for gauge in (self.metrics.label_coverage, self.metrics.label_delay):
                self.metrics.forget(gauge, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": "empty window"}
        labelled = window.labelled()
        so_far = float(labelled.mean())
        coverage = float(matured.labelled().mean()) if matured.n_rows else None
        delays = window.label_received_at[labelled] - window.received_at[labelled]
        waited = np.maximum(now.timestamp() - window.received_at[~labelled], 0.0)
        median = float(np.median(np.concatenate([delays, waited])))
        limit = cfg.evaluation.label_delay_alarm_s
        aged = aged_window(self.store, model, cfg.evaluation, as_of=now, age_s=limit)
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
            self.metrics.forget(self.metrics.label_coverage, model=model.name)
        else:
            self.metrics.label_coverage.labels(model.name).set(coverage)
        self.metrics.label_delay.labels(model.name).set(delay)
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
        }

    def _telemetry(self, model: ModelRow, window: Window) -> tuple[str, dict[str, Any]]:
        if not window.n_rows:  # no `since` to read from: not the model's whole history
            self.metrics.forget(self.metrics.latency_p99, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": "no requests in the window"}
        latencies = self.store.latencies(model.name, since=ts(window.received_at.min()))
        versions = {v.version: v for v in self.store.list_versions(model.name)}
        out: dict[str, Any] = {}
        for version, samples in sorted(latencies.items()):
            summary = LatencySummary.from_samples(samples)
            row = versions.get(version)
            hp = row.hyperparameter_set_id if row else "unknown"
            out[str(version)] = {
                "p50": summary.p50,
                "p90": summary.p90,
                "p99": summary.p99,
                "n": summary.n,
                "hyperparameter_set": hp,
                "memory_bytes": row.load_memory_bytes if row else None,
            }
            if summary.p99 is not None:
                self.metrics.latency_p99.labels(model.name, str(version), hp).set(summary.p99)
        self.metrics.forget(self.metrics.latency_p99, model=model.name, keep=out)
        status = "ok" if out else "insufficient_data"
        return status, {"alarm": False, "versions": out}


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
