"""Scheduled evaluation of one model: drift, decay, label-free estimate, labels, telemetry.

Each run reads the model's current window from the store, compares it with the
champion's reference snapshot, stores one evaluation row per kind (with ``"alarm"`` in
its payload), exports the figures as Prometheus metrics, and lets the event policies
(hysteresis, cool-down) decide whether an event — and through the dispatcher an action —
follows. Degenerate windows are stored as ``insufficient_data``, never raised.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor import (
    CBPE,
    ColumnDriftConfig,
    DecayEstimator,
    DriftDetector,
    DriftError,
    EstimationError,
    LatencySummary,
    MonitorError,
    ReferenceProfile,
    ServingMetrics,
    WindowValue,
    realised_windows,
)
from monitor.objectives import Objective, ObjectiveError, make_objective, positive_proba
from shadow import OnnxModel
from tunewatch._actions import OUTCOMES, SETTLED, Dispatcher
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, ModelConfig
from tunewatch._drift_report import column_types, drift_frame, drift_report
from tunewatch._policies import FIRST_REQUEST, LAST_REQUEST, decide, evaluation_policies
from tunewatch._registry import Reference
from tunewatch.store import EvaluationRow, ModelRow, Store, VersionRow, Window

logger = logging.getLogger(__name__)

_HISTORY_PAGE = 200  # evaluations read at a time past the first page


@dataclass(frozen=True, slots=True, eq=False)
class _Baseline:
    """What a champion version is compared with: its reference profile and scores."""

    profile: ReferenceProfile
    reference: Reference
    scores: np.ndarray  # the champion's primary output on the reference features
    cbpe: CBPE | None
    reference_accuracy: float | None


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
        self._baselines: dict[tuple[str, int], _Baseline | None] = {}

    # -- the run ---------------------------------------------------------------------------
    def evaluate(self, name: str) -> list[EvaluationRow]:
        """One evaluation of ``name``; returns the stored rows (one per kind)."""
        model = self.store.get_model(name)
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
        start = _ts(window.received_at.min()) if window.n_rows else None
        span = _requests_span(window.received_at)  # what the window-based kinds judged
        version = champion.version if champion else None
        baseline = self._baseline(champion, model) if champion else None
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
                    *self._drift(model, cfg, window, baseline, version, now),
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
                    *self._decay(model, cfg, objective, now, version),
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
                    *self._estimate(cfg, window, baseline, version),
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
                *self._labels(model, cfg, window, now),
                span=span,
            )
        )
        rows.append(
            self._store(
                name, version, "telemetry", start, now, *self._telemetry(model, window), span=span
            )
        )
        self._decide(name, cfg, now, {r.kind: r for r in rows}, champion)
        outcome = "insufficient_data" if all(r.status != "ok" for r in rows) else "ok"
        self.metrics.evaluations.labels(name, outcome).inc()
        return rows

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

    def report_baseline(self, champion: VersionRow, model: ModelRow) -> _Baseline | None:
        """The champion's baseline: cached for the current one; an earlier champion's is
        built, not cached, as reports are rare."""
        cached = self._baselines.get((champion.model, champion.version))
        return cached if cached is not None else self._build_baseline(champion, model)

    # -- baseline --------------------------------------------------------------------------
    def _baseline(self, champion: VersionRow, model: ModelRow) -> _Baseline | None:
        """The champion's baseline, cached: one per model, since each holds a reference
        snapshot (up to 1 GiB unpacked) and a session."""
        key = (champion.model, champion.version)
        if key not in self._baselines:
            for replaced in [k for k in list(self._baselines) if k[0] == champion.model]:
                self._baselines.pop(replaced, None)
            self._baselines[key] = self._build_baseline(champion, model)
        return self._baselines[key]

    def _build_baseline(self, champion: VersionRow, model: ModelRow) -> _Baseline | None:
        sha = champion.details.get("reference_sha256")
        if not sha:
            logger.warning(
                "model=%s version=%d has no reference snapshot: drift and estimates are skipped",
                champion.model,
                champion.version,
            )
            return None
        reference = Reference.from_bytes(self.artefacts.get(sha, ".npz"))
        session = OnnxModel.from_bytes(self.artefacts.get(champion.artefact_sha256))
        features = np.ascontiguousarray(reference.features, dtype=np.float32)
        scores = session.primary(session.run(features))
        if reference.scores is not None and reference.scores.shape == scores.shape:
            # held out (a tuning job's out-of-fold scores): the version's own scores of
            # rows it trained on are overconfident, and so would be the calibration, the
            # reference accuracy and the prediction profile built on them
            scores = np.asarray(reference.scores, dtype=np.float32)
        frame = drift_frame(model, features, scores, reference.labels)
        profile = ReferenceProfile.build(frame, column_types=column_types(model, frame))
        cbpe = None
        accuracy = None
        held = np.isfinite(scores).all(axis=1)  # a time series' first rows have no score
        if model.task == "binary" and reference.labels is not None and held.any():
            p = positive_proba(scores[held])
            labels = reference.labels[held]
            try:
                cbpe = CBPE(seed=0).fit(p, labels)
            except EstimationError as exc:  # one class, NaN or non-0/1 labels: no estimate,
                # but drift and decay still run (the baseline is cached, so this is said once)
                logger.warning(
                    "model=%s version=%d: reference labels cannot calibrate an estimate: %s",
                    champion.model,
                    champion.version,
                    exc,
                )
            else:
                accuracy = float(((p >= 0.5) == (labels >= 0.5)).mean())
        return _Baseline(profile, reference, scores, cbpe, accuracy)

    # -- kinds -----------------------------------------------------------------------------
    def _drift(
        self,
        model: ModelRow,
        cfg: ModelConfig,
        window: Window,
        baseline: _Baseline | None,
        version: int | None,
        now: datetime,
    ) -> tuple[str, dict[str, Any]]:
        """Drift of the window's features, the champion's predictions and the labels.

        Labels are read only for requests at least ``decay.maturity_s`` old, the
        evaluation's "labels are complete after this": when a label's delay depends on
        the outcome, the labels that came first are a biased sample (unchanged traffic
        read as label drift, p = 6e-9 on 600 requests). With none so old the label
        column is insufficient data."""
        m = self.metrics
        if baseline is None:  # nothing to compare with: no figure, not the last one held
            for gauge in (m.drift_share, m.drift_detected, m.feature_drift):
                m.forget(gauge, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": "no reference snapshot"}
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
            # a setting only the reference can refuse (chisquare on a continuous column,
            # __label__ without reference labels): drift is lost, not the other kinds
            logger.error(
                "model=%s version=%s: drift not evaluated, evaluation.drift.columns does "
                "not fit the champion's reference: %s",
                model.name,
                version,
                exc,
            )
            for gauge in (m.drift_share, m.drift_detected, m.feature_drift):
                m.forget(gauge, model=model.name)
            return "insufficient_data", {
                "alarm": False,
                "reason": f"evaluation.drift.columns does not fit the reference: {exc}",
            }
        # predictions: the champion's (its reference's are), none where another answered
        outputs = np.where((window.versions == version)[:, None], window.outputs, np.nan)
        labels = None
        if baseline.reference.labels is not None:
            matured = window.received_at <= now.timestamp() - cfg.evaluation.decay.maturity_s
            labels = np.where(matured, window.labels, np.nan)
        frame = drift_frame(model, window.features, outputs, labels)
        result = detector.check(frame)
        testable = [c for c in result.columns if c.status != "insufficient_data"]
        if testable:
            m.drift_share.labels(model.name).set(result.drifted_share)
            m.drift_detected.labels(model.name).set(int(result.dataset_drift))
        else:  # nothing was tested: no figure, not "no drift"
            m.forget(m.drift_share, model=model.name)
            m.forget(m.drift_detected, model=model.name)
        measured = {c.column: c.statistic for c in testable if c.statistic is not None}
        for column in model.feature_names:
            if column in measured:
                m.feature_drift.labels(model.name, column).set(measured[column])
            else:
                m.forget(m.feature_drift, model=model.name, only={"feature": column})
        payload = {
            "alarm": bool(result.dataset_drift),
            "drifted_share": result.drifted_share,
            "drifted_columns": list(result.drifted_columns),
            "rule": result.rule,
            "n_current": result.n_current,
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
        return ("ok" if testable else "insufficient_data"), payload

    def _decay(
        self,
        model: ModelRow,
        cfg: ModelConfig,
        objective: Objective,
        now: datetime,
        version: int | None,
    ) -> tuple[str, dict[str, Any]]:
        d = cfg.evaluation.decay
        horizon = timedelta(seconds=d.window_s * d.horizon_windows)
        window = self.store.window(
            model.name,
            n_features=len(model.feature_names),
            start=now - horizon,
            end=now,
            with_features=False,  # outputs, labels and times: not 30 days of input blobs
        )
        answered = window.versions == version  # the champion's trend, not its predecessors'
        if version is None or not answered.any():
            self.metrics.forget(self.metrics.decay_slope, model=model.name)
            self.metrics.forget(self.metrics.objective_realised, model=model.name)
            return "insufficient_data", {
                "alarm": False,
                "reason": "no requests the champion answered",
            }
        y_pred = window.outputs[answered]
        if y_pred.shape[1] == 1 and model.task == "regression":
            y_pred = y_pred[:, 0]
        try:
            windows = realised_windows(
                window.labels[answered],
                y_pred,
                window.received_at[answered],
                window.label_received_at[answered],
                objective=objective,
                window=d.window_s,
                maturity=d.maturity_s,
                start=(now - horizon).timestamp(),
                as_of=now.timestamp(),
            )
        except (MonitorError, ObjectiveError) as exc:
            self.metrics.forget(self.metrics.decay_slope, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": str(exc)}
        values = [w for w in windows if w.value is not None]
        threshold = d.threshold
        anchor = None
        if threshold is None and values:
            anchor = _early_level(values, d.min_windows)
            worse = 5 * d.tolerance
            threshold = anchor - worse if objective.greater_is_better else anchor + worse
        estimator = DecayEstimator(
            objective,
            threshold=threshold if threshold is not None else 0.0,
            min_windows=d.min_windows,
            tolerance=d.tolerance,
        )
        result = estimator.fit_windows(windows)
        if values:
            self.metrics.objective_realised.labels(model.name, str(version), objective.name).set(
                float(values[-1].value)  # type: ignore[arg-type]
            )
        else:  # no matured window: no figure, not the last one held
            self.metrics.forget(
                self.metrics.objective_realised,
                model=model.name,
                only={"objective": objective.name},
            )
        if result.slope_per_day is not None:
            sign = -1.0 if objective.greater_is_better else 1.0  # > 0 means getting worse
            self.metrics.decay_slope.labels(model.name).set(sign * result.slope_per_day)
        else:
            self.metrics.forget(self.metrics.decay_slope, model=model.name)
        soon = (
            result.projected_crossing is not None
            and result.projected_crossing - now <= timedelta(days=d.horizon_days)
        )
        payload = {
            "alarm": bool(result.status == "decaying" and soon),
            "objective": objective.name,
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
            "windows": [
                {
                    "end": _iso(w.window_end),
                    "value": w.value,
                    "n": w.n,
                    "coverage": w.label_coverage,
                }
                for w in windows
            ],
        }
        if values:  # hysteresis tells decay verdicts apart by their newest matured window
            newest = values[-1]
            received = window.received_at[answered]
            lo, hi = _epoch(newest.window_start), _epoch(newest.window_end)
            payload.update(_requests_span(received[(received >= lo) & (received < hi)]))
        status = "insufficient_data" if result.status == "insufficient_data" else "ok"
        return status, payload

    def _estimate(
        self, cfg: ModelConfig, window: Window, baseline: _Baseline | None, version: int | None
    ) -> tuple[str, dict[str, Any]]:
        m = self.metrics
        # The estimate exports the estimated accuracy only: the realised objective is the
        # decay check's figure (over matured windows), which may be accuracy too.
        if baseline is None or baseline.cbpe is None or baseline.reference_accuracy is None:
            m.forget(m.objective_estimated, model=window.model)  # no figure held over
            return "insufficient_data", {"alarm": False, "reason": "no labelled reference snapshot"}
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
        labelled = answered & window.labelled()
        realised = None
        if labelled.any():
            pl = positive_proba(window.outputs[labelled])
            realised = float(((pl >= 0.5) == (window.labels[labelled] >= 0.5)).mean())
        name = self.store.get_model(window.model).name
        self.metrics.objective_estimated.labels(name, str(version), "accuracy").set(estimate.value)
        drop = baseline.reference_accuracy - estimate.value
        return "ok", {
            "alarm": bool(drop > cfg.evaluation.estimate.max_drop),
            "metric": "accuracy",
            "estimated": estimate.value,
            "ci": [estimate.ci_lo, estimate.ci_hi],
            "n": estimate.n,
            "realised": realised,
            "n_labelled": int(labelled.sum()),
            "reference": baseline.reference_accuracy,
            "drop": drop,
        }

    def _labels(
        self, model: ModelRow, cfg: ModelConfig, window: Window, now: datetime
    ) -> tuple[str, dict[str, Any]]:
        """Label coverage and the median label delay of the window's requests.

        A request still waiting for its label has waited ``now - received_at`` so far:
        its delay is censored there, and the median over every request (waited so far,
        or delay) is a lower bound of the true median delay, exact once all are labelled.
        The median over the labelled ones alone (``median_delay_labelled_s``) reads only
        the labels that came, and fast: with none arrived it had no figure, and a tenth
        labelled within the hour hid nine tenths unlabelled for weeks. The alarm is that
        lower bound past ``label_delay_alarm_s``: the median delay is certainly longer.
        """
        if window.n_rows == 0:
            for gauge in (self.metrics.label_coverage, self.metrics.label_delay):
                self.metrics.forget(gauge, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": "empty window"}
        labelled = window.labelled()
        coverage = float(labelled.mean())
        delays = window.label_received_at[labelled] - window.received_at[labelled]
        waited = np.maximum(now.timestamp() - window.received_at[~labelled], 0.0)
        median = float(np.median(np.concatenate([delays, waited])))
        limit = cfg.evaluation.label_delay_alarm_s
        self.metrics.label_coverage.labels(model.name).set(coverage)
        self.metrics.label_delay.labels(model.name).set(median)
        return "ok", {
            "alarm": bool(median > limit),
            "coverage": coverage,
            "median_delay_s": median,  # at least: unlabelled requests count as waited so far
            "median_delay_labelled_s": float(np.median(delays)) if delays.size else None,
            "unlabelled_share": 1.0 - coverage,
            "overdue_share": float((waited > limit).sum() / window.n_rows),
            "n": window.n_rows,
            "n_labelled": int(labelled.sum()),
        }

    def _telemetry(self, model: ModelRow, window: Window) -> tuple[str, dict[str, Any]]:
        if not window.n_rows:  # no `since` to read from: not the model's whole history
            self.metrics.forget(self.metrics.latency_p99, model=model.name)
            return "insufficient_data", {"alarm": False, "reason": "no requests in the window"}
        latencies = self.store.latencies(model.name, since=_ts(window.received_at.min()))
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

    # -- events ----------------------------------------------------------------------------
    def _cooling_since(self, name: str, event: str) -> datetime | None:
        """When the policy's cool-down started: its last event, unless the quota kept
        that event's retune from being queued (still owed: the cool-down then runs from
        the last event whose action settled). A retune the trigger's own cool-down
        suppressed settles it (the model was just retuned), as does an event with no
        action configured, or whose action event was lost after its job was queued."""
        fired = self.store.list_events(model=name, type=event, limit=1)
        if not fired:
            return None
        outcome = self.store.last_action(name, trigger=event, outcomes=OUTCOMES)
        if (
            outcome is None
            or outcome.id < fired[0].id
            or outcome.type != "action_suppressed"
            or outcome.payload.get("cause") != "quota"
        ):
            return fired[0].created_at
        settled = self.store.last_action(name, trigger=event, outcomes=SETTLED)
        return settled.created_at if settled is not None else None

    def _history(
        self, name: str, kind: str, version: int | None, *, first: int
    ) -> Iterator[EvaluationRow]:
        """The champion's evaluations of ``kind``, newest first, read from the store a
        page at a time as the policy reads on (``first`` rows, then more): a streak of
        windows sharing no request may lie behind many runs that re-read them. It ends at
        another version's: no streak carries over a promotion or a rollback."""
        seen: set[int] = set()
        until: datetime | None = None
        limit = first
        while True:
            page = self.store.list_evaluations(name, kind=kind, until=until, limit=limit)
            fresh = [row for row in page if row.id not in seen]
            for row in fresh:
                if row.version != version:
                    return
                seen.add(row.id)
                yield row
            if len(page) < limit or not fresh:
                return
            until = page[-1].window_end  # inclusive: rows at that instant come again, once
            limit = _HISTORY_PAGE

    def _decide(
        self,
        name: str,
        cfg: ModelConfig,
        now: datetime,
        current: dict[str, EvaluationRow],
        champion: VersionRow | None,
    ) -> None:
        """Raise the events whose policy fires now; export each policy's alarm state:
        1 only while this run's window of its kind measured and alarmed and completed the
        streak (a window that could not measure, or a kind switched off, is 0). Both
        follow :func:`tunewatch._policies.decide`: a streak counts windows that share no
        request."""
        version = champion.version if champion else None
        for policy in evaluation_policies(cfg.evaluation):
            history = self._history(name, policy.kind, version, first=policy.consecutive + 20)
            latest = next(history, None)
            decision = decide(
                policy,
                itertools.chain([latest], history) if latest is not None else (),
                now=now,
                last_event_at=self._cooling_since(name, policy.event),
            )
            row = current.get(policy.kind)
            holds = (
                row is not None
                and row.status == "ok"
                and bool(row.payload.get("alarm", False))
                and decision.streak >= policy.consecutive
            )
            self.metrics.alarm.labels(name, policy.event).set(int(holds))
            if decision.fire:
                assert latest is not None  # a streak has an evaluation
                self.dispatcher.handle(
                    name,
                    policy.event,
                    {
                        "reason": decision.reason,
                        "evaluation": latest.id,
                        "window_end": latest.window_end.isoformat(),
                    },
                )


def _requests_span(received_at: np.ndarray) -> dict[str, str]:
    """The payload keys naming the oldest and newest request judged (none if none)."""
    if not received_at.size:
        return {}
    return {
        FIRST_REQUEST: _ts(received_at.min()).isoformat(),
        LAST_REQUEST: _ts(received_at.max()).isoformat(),
    }


def _early_level(values: list[WindowValue], count: int) -> float:
    """The objective where the decay horizon begins: its first ``count`` matured
    windows' values weighted by their labelled requests, the weights the trend is fitted
    with. The first window's value alone moved the default threshold as far as a window
    of two requests can (accuracy 0 or 1), silencing a real decay or alarming a stable
    model."""
    early = values[:count]
    total = sum(w.n for w in early)
    return sum(float(w.value) * w.n for w in early if w.value is not None) / total


def _epoch(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def _iso(value: datetime | float) -> str:
    return value.isoformat() if isinstance(value, datetime) else _ts(value).isoformat()


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
