"""Scheduled evaluation of one model: drift, decay, label-free estimate, labels, telemetry.

Each run reads the model's current window from the store, compares it with the
champion's reference snapshot, stores one evaluation row per kind (with ``"alarm"`` in
its payload), exports the figures as Prometheus metrics, and lets the event policies
(hysteresis, cool-down) decide whether an event — and through the dispatcher an action —
follows. Degenerate windows are stored as ``insufficient_data``, never raised, and so are
drift and the estimate of a champion whose snapshot is missing or cannot be read. A
champion registered without a snapshot is a normal state; one whose snapshot exists but
cannot be read is a failure: the run, stored all the same, is counted as
``reference_unreadable`` in ``tunewatch_evaluations_total`` (not ``ok``), which
``TunewatchScheduledJobFailing`` reads, and that series is exported at 0 from when the
champion is served (:meth:`Evaluator.export_stored`).

This module runs the evaluation, caches each champion's baseline and stores the verdicts;
the parts live beside it. The baseline built from the snapshot in
:mod:`tunewatch._evaluation_baseline`; each kind's verdict in its own module: drift in
:mod:`tunewatch._evaluation_drift`, decay in :mod:`tunewatch._evaluation_decay`, the
label-free estimate in :mod:`tunewatch._evaluation_estimate`, label coverage and delay in
:mod:`tunewatch._evaluation_labels`, latency in :mod:`tunewatch._evaluation_telemetry`;
the policies' decisions (and the export of stored figures) in
:mod:`tunewatch._evaluation_events`, over the verdicts in the order they were stored
(:mod:`tunewatch._evaluation_history`; not by ``window_end``, this host's clock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor import ServingMetrics
from monitor.objectives import make_objective
from tunewatch._actions import Dispatcher
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._decay_windows import DecayWindowCache
from tunewatch._drift_columns_shown import DRIFT_FEATURES
from tunewatch._drift_report import drift_report, label_window
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._evaluation_baseline import NO_SNAPSHOT, Baseline, NoBaseline, build_baseline
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._evaluation_drift import drift_verdict
from tunewatch._evaluation_estimate import estimate_verdict, forget_estimate
from tunewatch._evaluation_events import PolicyEvents, export_stored
from tunewatch._evaluation_labels import labels_verdict
from tunewatch._evaluation_telemetry import telemetry_verdict
from tunewatch._span import requests_span, ts
from tunewatch._window_sample import time_window
from tunewatch.store import EvaluationRow, ModelRow, NewEvaluation, Store, VersionRow

logger = logging.getLogger(__name__)

#: ``tunewatch_evaluations_total``'s outcome of a run whose champion's reference snapshot
#: exists but cannot be read (drift and the estimate not evaluated): a failed run
REFERENCE_UNREADABLE = "reference_unreadable"


@dataclass(frozen=True, slots=True)
class UnreadableReference(NoBaseline):
    """The champion has a reference snapshot, but it cannot be read (missing, damaged, a
    newer format): unlike having none, a failure."""


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
        self._decay_windows = DecayWindowCache()  # the settled windows of each decay horizon

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
            window = time_window(
                self.store,
                model,
                start=now - timedelta(seconds=ev.window_s),
                end=now,
                max_requests=ev.max_window_requests,
            )
        start = ts(window.received_at.min()) if window.n_rows else None
        span = requests_span(window.received_at)  # what the window-based kinds judged
        version = champion.version if champion else None
        baseline = self._baseline(champion, model) if champion else NO_SNAPSHOT
        # the requests whose labels are due: drift tests their labels, the estimate sets
        # its realised accuracy beside them, and the label coverage is theirs
        matured = label_window(self.store, model, ev, as_of=now)
        # per-version figures describe the champion only: a replaced one's must not linger
        self.metrics.forget(self.metrics.objective_realised, model=name, keep={str(version)})
        forget_estimate(self.metrics, name, keep={str(version)})
        verdicts = []
        if ev.drift.enabled:
            verdicts.append(
                self._verdict(
                    name,
                    version,
                    "drift",
                    start,
                    now,
                    *drift_verdict(self.metrics, model, cfg, window, matured, baseline, version),
                    span=span,
                )
            )
        if ev.decay.enabled:
            verdicts.append(
                self._verdict(
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
                        cache=self._decay_windows,
                    ),
                )
            )
        estimated = ev.estimate.enabled and model.task == "binary"
        if estimated:
            verdicts.append(
                self._verdict(
                    name,
                    version,
                    "estimate",
                    start,
                    now,
                    *estimate_verdict(
                        self.store, self.metrics, model, cfg, window, matured, baseline, version
                    ),
                    span=span,
                )
            )
        verdicts.append(
            self._verdict(
                name,
                version,
                "labels",
                start,
                now,
                *labels_verdict(self.store, self.metrics, model, cfg, window, matured, now),
                span=span,
            )
        )
        verdicts.append(
            self._verdict(
                name,
                version,
                "telemetry",
                start,
                now,
                *telemetry_verdict(self.store, self.metrics, model, window),
                span=span,
            )
        )
        # every kind at once: a run that failed part way (a database restart) left its
        # first kinds stored alone, read by dashboards and exports as a run
        rows = self.store.add_evaluations(verdicts)
        self._events.decide(name, cfg, now, {r.kind: r for r in rows}, champion, actor=actor)
        moved = self.store.champion(name)
        if (moved.version if moved is not None else None) != version:
            # promoted (or rolled back) during the run: the re-export of the change came
            # before this run's figures of the champion it replaced, which must not stay
            export_stored(self.store, self.metrics, model, cfg, now=self.clock())
        if isinstance(baseline, UnreadableReference) and (ev.drift.enabled or estimated):
            outcome = REFERENCE_UNREADABLE  # the rows are stored, but two kinds are lost
        elif all(r.status != "ok" for r in rows):
            outcome = "insufficient_data"
        else:
            outcome = "ok"
        # at 0 from now on, where the serving champion did not start it (export_stored)
        ServingMetrics.start_at_zero(self.metrics.evaluations, (name, REFERENCE_UNREADABLE))
        self.metrics.evaluations.labels(name, outcome).inc()
        if self.metrics.exports_evaluation:  # the leader's, as its figures (see there)
            streak = self.metrics.scheduled_streak.labels(name, REFERENCE_UNREADABLE)
            if outcome == REFERENCE_UNREADABLE:
                streak.inc()
            else:
                streak.set(0)
        return rows

    def export_stored(self, name: str) -> None:
        """Export ``name``'s figures and alarms as its latest stored evaluations of the
        current champion leave them (:func:`~tunewatch._evaluation_events.export_stored`,
        deciding nothing), in a process that exports evaluation figures (the scheduler's
        leader; elsewhere nothing). For a change of champion (a promotion, a rollback):
        the replaced champion's figures and alarms stayed exported until the next run, up
        to ``evaluation.interval_s`` later, and its alarms kept paging. A run under way
        when the champion changes exports the store's figures again as it ends.

        In a process that runs the scheduler (the leader, or one that may take over), the
        model's ``reference_unreadable`` evaluations are exported at 0 first: the serving
        champion is known before its first scheduled evaluation reads its snapshot, and a
        series born at 1 hid that failure from ``increase()``."""
        if self.config.scheduler.enabled:
            ServingMetrics.start_at_zero(self.metrics.evaluations, (name, REFERENCE_UNREADABLE))
        if not self.metrics.exports_evaluation:
            return
        model = self.store.get_model(name)
        cfg = self.config.model_or_default(name, model.task)
        export_stored(self.store, self.metrics, model, cfg, now=self.clock())

    def _verdict(
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
    ) -> NewEvaluation:
        """One kind's verdict, to store with the run's others; ``span`` (the oldest and
        newest request judged) is what hysteresis tells windows apart by
        (:func:`tunewatch._policies.decide`)."""
        return NewEvaluation(
            model=model,
            version=version,
            kind=kind,
            status=status,
            window_start=start,
            window_end=end,
            payload={**payload, **(span or {})},
        )

    def drift_report(self, name: str, evaluation_id: int, *, features: int = DRIFT_FEATURES) -> str:
        """evidently's HTML drift report for a stored drift evaluation's window, of at most
        ``features`` features (see :func:`tunewatch._drift_report.drift_report`): the
        dashboard's report page opens the report of as many as its drift page shows."""
        return drift_report(
            self.store,
            self.artefacts,
            self.config,
            self.report_baseline,
            name,
            evaluation_id,
            features=features,
        )

    def report_baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | None:
        """The champion's baseline: cached for the current one; an earlier champion's is
        built, not cached, as reports are rare."""
        cached = self._baselines.get((champion.model, champion.version))
        return cached if cached is not None else self._build_baseline(champion, model)

    # -- baseline --------------------------------------------------------------------------
    def _baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | NoBaseline:
        """The champion's baseline, cached: one per model, since each holds the champion's
        scores of its reference rows (not the rows: :class:`Baseline`). Without one, why
        not: no snapshot (cached; a normal state), or one that cannot be read
        (:class:`UnreadableReference`, a failure: said at each run, counted as the run's
        outcome, and not cached: a repaired snapshot is read at the next run). Drift and
        the estimate are lost to it, not the evaluation: it raised, and decay, labels and
        telemetry went too."""
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
                return UnreadableReference(exc.message)
            self._baselines[key] = built
        baseline = self._baselines[key]
        return NO_SNAPSHOT if baseline is None else baseline

    def _build_baseline(self, champion: VersionRow, model: ModelRow) -> Baseline | None:
        return build_baseline(champion, model, artefacts=self.artefacts, config=self.config)
