"""Every Prometheus metric object tunewatch exports, declared in one place.

Label sets are bounded: model, version, hyperparameter-set id, route templates and
error codes — never request ids. Each daemon builds one :class:`ServingMetrics` on its
own ``CollectorRegistry`` so that several apps (tests, benchmarks) never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE_LATEST
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from monitor._collectors import Gated, ReadCounter, WithoutCreated
from monitor._series import forget, start_at_zero
from monitor.drift import METHODS as DRIFT_METHODS

# Inference latencies live between a few microseconds and a few hundred milliseconds, but
# a run may take until its deadline (``scoring.run_timeout_s``: 5 s by default, up to an
# hour): the buckets above a second keep a slow model's quantiles from reading 1 s, the
# largest finite bucket they stopped at; a run slower than a minute reads 60 s.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# A group commit takes a millisecond or so, unless it waits for a lock: the store's
# lock timeout (SQLite's busy_timeout, PostgreSQL's lock_timeout) lets it wait 30 s by
# default (`store.lock_timeout_s`), and a quantile read from the histogram is capped at its
# largest finite bucket (a longer configured wait reads as 30 s).
COMMIT_BUCKETS = tuple(b for b in LATENCY_BUCKETS[1:] if b <= 30.0)


class ServingMetrics:
    """The scoring spine's metrics: HTTP, inference, shadow queue, recording, sessions."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "tunewatch_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["route", "status"],
            registry=r,
        )
        self.http_errors = Counter(
            "tunewatch_http_errors",
            "HTTP error answers, by error code.",
            ["code"],
            registry=r,
        )
        self.inference_latency = Histogram(
            "tunewatch_inference_latency_seconds",
            "onnxruntime scoring latency per model version and hyperparameter set.",
            ["model", "version", "hyperparameter_set", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_rows = Counter(
            "tunewatch_inference_rows",
            "Rows scored in answer to inference requests, by whichever version answered "
            "(the champion, a live split's challenger arm, or the version a request named); "
            "shadow scoring and mirrored records add none.",
            ["model"],
            registry=r,
        )
        self.shadow_queue_depth = Gauge(
            "tunewatch_shadow_queue_depth",
            "Shadow jobs waiting for the challengers.",
            registry=r,
        )
        self.shadow_queue_bytes = Gauge(
            "tunewatch_shadow_queue_bytes",
            "Bytes of request rows in the shadow jobs waiting for the challengers; past "
            "scoring.shadow_queue_max_bytes requests are dropped (reason queue_full).",
            registry=r,
        )
        self.shadow_dropped = Counter(
            "tunewatch_shadow_dropped",
            "Shadow jobs the challengers did not score: the queue was full or closed, or still "
            "queued at shutdown (queue_full), or they had used their CPU share (cpu_share); "
            "and (request, version) pairs neither scored nor recorded because the version "
            "left the line-up (retired, rolled back) first (left_lineup), or onnxruntime could "
            "not allocate the memory to score them (insufficient_memory: the host's condition, "
            "not a failed run of the challenger); mirror records not handed to them, a row "
            "outside the model's models[].features ranges (out_of_range: recorded, for drift).",
            ["model", "reason"],
            registry=r,
        )
        self.shadow_cpu = ReadCounter(
            "tunewatch_shadow_cpu_seconds",
            "CPU time the challengers' shadow workers spent scoring and handing over "
            "outputs; compare its rate with scoring.shadow_cpu_share.",
        )
        r.register(self.shadow_cpu)
        self.runs = Counter(
            "tunewatch_runs",
            "Runs of a version, answered or failed, by its role (champion; challenger: its "
            "shadow runs, a live split's arm, requests naming it): what "
            "tunewatch_run_failures_total is a share of, as the max_error_rate guardrail "
            "reads it. (The latency histogram's count is no run count: the jobs of a shadow "
            "backlog scored in one batch have no latency of their own.)",
            ["model", "version", "role"],
            registry=r,
        )
        self.run_failures = Counter(
            "tunewatch_run_failures",
            "Runs of a version that failed, by its role (as tunewatch_runs_total) and the "
            "failure's code (run_failed, run_timeout, non_finite_output, "
            "output_shape_mismatch, output_out_of_range, unknown_output: a split's arm "
            "lacking an output the champion has, unrecordable); a client's bad input is "
            "not one.",
            ["model", "version", "role", "code"],
            registry=r,
        )
        self.record_batch_size = Histogram(
            "tunewatch_record_batch_size",
            "Requests sharing one group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.record_commit_latency = Histogram(
            "tunewatch_record_commit_seconds",
            "Time to write and commit one group of records, lock waits included.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.record_failures = Counter(
            "tunewatch_record_failures",
            "Group commits that failed, sets of records failed untried behind an unavailable "
            "store or left at shutdown (their requests were answered 503), and shadow outputs "
            "handed over after the recorder closed.",
            registry=r,
        )
        self.record_refusals = Counter(
            "tunewatch_record_refusals",
            "Requests refused at once, unrecorded and answered 503 store_unavailable, because "
            "the records waiting for the store held recording.max_pending_bytes or more (the "
            "store stalled or fell behind).",
            registry=r,
        )
        # read from the recorder at each scrape (Recorder sets their functions)
        self.record_pending_bytes = Gauge(
            "tunewatch_record_pending_bytes",
            "Bytes of the records handed to the store's writer and not yet written or failed; "
            "at tunewatch_record_max_pending_bytes requests are refused (503).",
            registry=r,
        )
        self.record_max_pending_bytes = Gauge(
            "tunewatch_record_max_pending_bytes",
            "recording.max_pending_bytes: the backlog at which requests are refused.",
            registry=r,
        )
        self.labels_received = Counter(
            "tunewatch_labels",
            "Feedback items by outcome (created, duplicate, conflict, unknown_request).",
            ["model", "status"],
            registry=r,
        )
        self.mirror_records = Counter(
            "tunewatch_mirror_records",
            "Mirror records by outcome: accepted, duplicate (a replay of a recorded one), "
            "conflict (a recorded id, other rows or version), refused (in a batch answered 4xx).",
            ["model", "outcome"],
            registry=r,
        )
        self.session_memory = Gauge(
            "tunewatch_session_memory_bytes",
            "Resident memory a fresh process grows by when it starts onnxruntime and opens "
            "a session of the version (onnxruntime's one-time start-up, about 9 MiB here, "
            "included), measured when the version was registered (the figure the promotion "
            "guardrails and serving-cost ceilings read), per version in service.",
            ["model", "version", "hyperparameter_set"],
            registry=r,
        )
        self.champion_version = Gauge(
            "tunewatch_champion_version",
            "The version number currently serving as champion.",
            ["model"],
            registry=r,
        )
        self.max_error_rate = Gauge(
            "tunewatch_max_error_rate",
            "comparison.guardrails.max_error_rate of the model as served here: the share of "
            "failed runs a challenger may have to be promoted, and the limit the "
            "Tunewatch*RunsFailing alerts compare each version's failed runs with; absent "
            "while the rule is off.",
            ["model"],
            registry=r,
        )
        self.lineup_stale = Gauge(
            "tunewatch_lineup_stale",
            "1 while the model's line-up here is not the store's: its last load failed (it "
            "serves the line-up it had, or none) or a shadow version would not load (tried "
            "again with a doubling wait, at most an hour); 0 once a load serves them all.",
            ["model"],
            registry=r,
        )

        # -- the scheduler's lease --------------------------------------------------------
        # Whether this process holds the scheduler's lease unexpired by its own clock, set
        # by the scheduler as it starts (track_scheduler_lease). None where no scheduler
        # runs: these two series are not exported there (a scoring replica's 0 would hold
        # a no-leader sum at 0), and nothing gates the evaluation figures.
        self._leads: Callable[[], bool] | None = None
        self.scheduler_leader = Gauge(
            "tunewatch_scheduler_leader",
            "1 while this process holds the scheduler's lease, unexpired by its own clock "
            "(renewed every third of scheduler.lease_ttl_s), else 0: summed over a "
            "deployment's replicas, 1. Exported by the processes that run the scheduler "
            "only.",
            registry=None,
        )
        self.scheduler_lease_renewed = Gauge(
            "tunewatch_scheduler_lease_renewed_timestamp_seconds",
            "Unix time of this process's last successful renewal (or taking) of the "
            "scheduler's lease; 0 until it first holds it. Exported by the processes that "
            "run the scheduler only.",
            registry=None,
        )
        r.register(
            Gated(
                (self.scheduler_leader, self.scheduler_lease_renewed),
                lambda: self._leads is not None,
            )
        )

        # -- evaluation (scheduled per model) ------------------------------------------
        # Whether this process exports the evaluation figures: set by the scheduler while
        # this process holds its lease. One that does not (a follower, a scoring replica
        # running no scheduler) drops the figures an evaluation asked of it exported, as
        # the alert rules take the ``max`` over replicas and would read them for ever.
        # Read through :attr:`exports_evaluation`, which the lease gates as well. The
        # figures (and the streaks) are collected through one Gated collector (below).
        self._exports_evaluation = False
        self.drift_share = Gauge(
            "tunewatch_drift_share",
            "Share of columns drifted in the latest evaluated window.",
            ["model"],
            registry=None,
        )
        self.drift_detected = Gauge(
            "tunewatch_drift_detected",
            "1 when the latest window's dataset-level drift test fired, else 0.",
            ["model"],
            registry=None,
        )
        self.feature_drift = Gauge(
            "tunewatch_feature_drift_score",
            "Per-feature drift statistic of the latest window, in the units of its `method` "
            "(ks: KS D, chisquare: chi-square, z: signed z, wasserstein, jensenshannon, psi: "
            "distances); compare a feature across windows of one method only, and read "
            "tunewatch_feature_drifted for the verdict.",
            ["model", "feature", "method"],
            registry=None,
        )
        self.feature_drifted = Gauge(
            "tunewatch_feature_drifted",
            "1 when the feature drifted in the latest window (its method's verdict, under the "
            "dataset rule), else 0.",
            ["model", "feature"],
            registry=None,
        )
        self.objective_realised = Gauge(
            "tunewatch_objective_realised",
            "Realised objective over matured labels in the latest window.",
            ["model", "version", "objective"],
            registry=None,
        )
        self.objective_estimated = Gauge(
            "tunewatch_objective_estimated",
            "Label-free estimate (CBPE) of the accuracy of the champion's decisions at its "
            "objective's decision threshold over the latest window; objective names the "
            "estimated metric.",
            ["model", "version", "objective"],
            registry=None,
        )
        self.estimate_realised = Gauge(
            "tunewatch_estimate_realised",
            "Realised accuracy of the decisions tunewatch_objective_estimated estimates, over "
            "the latest window's requests whose labels are due and came; absent while none "
            "has. Compare it with the estimate, not with tunewatch_objective_realised (the "
            "objective's own figure, over matured windows).",
            ["model", "version", "objective"],
            registry=None,
        )
        self.estimate_reference = Gauge(
            "tunewatch_estimate_reference",
            "Accuracy of the same decisions on the champion's reference data: the "
            "estimate_dropped alarm fires when tunewatch_objective_estimated falls more than "
            "evaluation.estimate.max_drop below it.",
            ["model", "version", "objective"],
            registry=None,
        )
        self.decay_slope = Gauge(
            "tunewatch_decay_slope_per_day",
            "Trend of the realised objective per day, signed so that a positive value is "
            "getting worse whichever way the objective points (a falling accuracy, a rising "
            "log loss).",
            ["model"],
            registry=None,
        )
        self.label_coverage = Gauge(
            "tunewatch_label_coverage",
            "Share of the requests whose labels are due (the newest window of requests at "
            "least decay.maturity_s old) that have a label.",
            ["model"],
            registry=None,
        )
        self.label_delay = Gauge(
            "tunewatch_label_delay_seconds",
            "Median delay between a request and its label, the larger of the latest window's "
            "and that of the requests at least label_delay_alarm_s old; a request still "
            "unlabelled counts as having waited until now (a lower bound).",
            ["model"],
            registry=None,
        )
        self.latency_p99 = Gauge(
            "tunewatch_version_latency_p99_seconds",
            "p99 scoring latency per version over the latest window, by the role it "
            "answered in (champion: on the request path; challenger: its shadow runs, "
            "timed in a deprioritised worker, a live split's arm, requests naming it); "
            "kept across a promotion for the versions still served.",
            ["model", "version", "hyperparameter_set", "role"],
            registry=None,
        )
        self.alarm = Gauge(
            "tunewatch_alarm",
            "1 while the daemon's policy for an event holds (its last `consecutive` "
            "evaluated windows that share no request alarmed; cool-down aside), else 0. "
            "Alert on this, not on one window's figures, to apply the same hysteresis as "
            "the daemon.",
            ["model", "event"],
            registry=None,
        )
        self.evaluations = Counter(
            "tunewatch_evaluations",
            "Scheduled runs by outcome: an evaluation's ok or insufficient_data, or "
            "reference_unreadable (its champion's reference snapshot cannot be read: drift "
            "and the estimate not evaluated), a comparison run's comparison, and "
            "<job>_failed for a scheduled job that failed "
            "(evaluate_failed, compare_failed, retune_schedule_failed, retune_owed_failed; "
            "launch_jobs_failed, export_tuning_failed, count_events_failed under model -), "
            "and <job>_skipped "
            "for a run not started "
            "because the job's previous run was still going (evaluate_skipped, "
            "compare_skipped, ...; launch_jobs_skipped under model -).",
            ["model", "outcome"],
            registry=r,
        )
        self.events = Counter(
            "tunewatch_events",
            "Events raised, whichever process raised them: counted from the store by the "
            "scheduler's leader.",
            ["model", "type"],
            registry=r,
        )
        self.notifications = Counter(
            "tunewatch_notifications",
            "Events whose trigger is `do: notify`, by event: the shipped rule "
            "TunewatchNotification alerts on each (Alertmanager tells the people); counted "
            "from the store by the scheduler's leader, whichever process decided them.",
            ["model", "event"],
            registry=r,
        )
        # set by the scheduler's leader (dropped with the evaluation figures elsewhere)
        self.scheduled_streak = Gauge(
            "tunewatch_scheduled_streak",
            "Runs in a row of a scheduled job with an outcome, as tunewatch_evaluations_total "
            "names it: <job>_failed, its runs failed since the last that succeeded (0 after "
            "one); <job>_skipped, its runs skipped since it last ended a run with none due "
            "meanwhile (0 after one); reference_unreadable, the model's evaluations in a row "
            "that could not read its champion's reference snapshot. Exported by the "
            "scheduler's leader only, counted from when it took the lease.",
            ["model", "outcome"],
            registry=None,
        )
        # -- re-tuning jobs (the scheduler's leader, from their rows) ---------------------
        # One series per running job: the concurrent-job quota bounds them, and a job's are
        # removed once it ended (tunewatch._tuning_metrics). Its id is `job_id`: Prometheus
        # gives each target a `job` label, and would rename one exported as `exported_job`.
        self.tuning_trials = Gauge(
            "tunewatch_tuning_trials",
            "Trials a running re-tuning job trained so far, as its max_trials counts them "
            "(those rejected for their serving cost aside). Exported by the scheduler's "
            "leader, per running job, until the job ends.",
            ["model", "job_id"],
            registry=None,
        )
        self.tuning_max_trials = Gauge(
            "tunewatch_tuning_max_trials",
            "max_trials of a running re-tuning job (as tunewatch_tuning_trials).",
            ["model", "job_id"],
            registry=None,
        )
        self.tuning_best_value = Gauge(
            "tunewatch_tuning_best_value",
            "Best loss (lower is better) of a running re-tuning job's completed trials; absent "
            "until one completes (as tunewatch_tuning_trials).",
            ["model", "job_id"],
            registry=None,
        )
        self.tuning_spent = Gauge(
            "tunewatch_tuning_spent_seconds",
            "Seconds a running re-tuning job's study spent, as its workers last recorded after "
            "a trial and as its budget counts them: clock=wall, while at least one worker "
            "worked; clock=cpu, all its workers' CPU time (as tunewatch_tuning_trials).",
            ["model", "job_id", "clock"],
            registry=None,
        )
        self.tuning_budget = Gauge(
            "tunewatch_tuning_budget_seconds",
            "Time budget of a running re-tuning job: wall_time_s (clock=wall), cpu_time_s "
            "(clock=cpu); absent for one it runs without (as tunewatch_tuning_trials).",
            ["model", "job_id", "clock"],
            registry=None,
        )
        # the leader's: not collected from a process that counts itself the leader while
        # its lease has run out by its own clock (its renewals stalled: another process
        # may lead and export its own); a follower's are cleared at each of its ticks
        r.register(Gated(self._leader_only, self._shows_evaluation))

        # -- the Alertmanager webhook ----------------------------------------------------
        self.alerts_ignored = Counter(
            "tunewatch_alerts_ignored",
            "Alerts the Alertmanager webhook answered 2xx without acting on them, counted at "
            "each delivery that carried them, by reason: model_unknown, model_label_missing, "
            "starts_at, status, nul, resolved_unseen, not_an_object, unstorable; truncated "
            "counts the alerts Alertmanager left out of its notifications (truncatedAlerts).",
            ["reason"],
            registry=r,
        )

    @property
    def exports_evaluation(self) -> bool:
        """Whether this process exports the evaluation figures: the scheduler's leader
        does, and only while its lease is unexpired by its own clock (where a scheduler
        runs: :meth:`track_scheduler_lease`). A leader whose renewals stalled (its wall
        clock stepped back, the store hanging) kept exporting its alarms under the new
        leader's after its lease had run out."""
        leads = self._leads
        return self._exports_evaluation and (leads is None or leads())

    @exports_evaluation.setter
    def exports_evaluation(self, value: bool) -> None:
        self._exports_evaluation = value

    def _shows_evaluation(self) -> bool:
        leads = self._leads
        return leads is None or not self._exports_evaluation or leads()

    def track_scheduler_lease(self, leads: Callable[[], bool]) -> None:
        """A scheduler runs in this process: export ``tunewatch_scheduler_leader`` as
        ``leads()`` says at each scrape (whether this process holds the lease unexpired by
        its own clock), and no figures of the leader's while this process counts itself
        the leader (:attr:`exports_evaluation` set) but ``leads()`` is false."""
        self._leads = leads
        self.scheduler_leader.set_function(lambda: float(leads()))

    @property
    def _leader_only(self) -> tuple[Gauge, ...]:
        """The gauges only the scheduler's leader exports (:meth:`clear_evaluation`)."""
        return (
            self.scheduled_streak,
            self.drift_share,
            self.drift_detected,
            self.feature_drift,
            self.feature_drifted,
            self.objective_realised,
            *self.estimate_gauges,
            self.decay_slope,
            self.label_coverage,
            self.label_delay,
            self.latency_p99,
            self.alarm,
            *self.tuning_gauges,
        )

    @property
    def tuning_gauges(self) -> tuple[Gauge, Gauge, Gauge, Gauge, Gauge]:
        """The running re-tuning jobs' gauges (trials, max_trials, best value, seconds
        spent, time budget), each series labelled with its job's model and id (``job_id``)."""
        return (
            self.tuning_trials,
            self.tuning_max_trials,
            self.tuning_best_value,
            self.tuning_spent,
            self.tuning_budget,
        )

    @property
    def estimate_gauges(self) -> tuple[Gauge, Gauge, Gauge]:
        """The label-free estimate's gauges (estimated, realised, reference accuracy):
        set, exported again and removed together, per champion version."""
        return (self.objective_estimated, self.estimate_realised, self.estimate_reference)

    def clear_evaluation(self) -> None:
        """Drop every figure the scheduled evaluation exports, the scheduled jobs' streaks
        and the running re-tuning jobs' progress: a process that does not lead the
        scheduler (any longer, or at all) stops exporting them, so alert rules taking the
        ``max`` over replicas read the leader's figures only."""
        for gauge in self._leader_only:
            gauge.clear()

    def set_feature_drift(
        self, model: str, features: Mapping[str, tuple[str, float, bool] | None]
    ) -> None:
        """Export each feature's ``(method, statistic, drifted)`` of the latest window:
        the score under its method's label (the series of another method removed: one
        series a feature) and the 0/1 verdict. ``None``: not tested, both removed.

        Each stale series is removed by its labels, which are all known here: a call
        costs the same whatever the gauges hold (a :meth:`forget` per feature and method
        read every model's series each time, 180 passes a model of 30 features)."""
        for feature, measured in features.items():
            for method in DRIFT_METHODS:
                if measured is None or method != measured[0]:
                    self.feature_drift.remove(model, feature, method)  # (none: a no-op)
            if measured is None:
                self.feature_drifted.remove(model, feature)
                continue
            method, statistic, drifted = measured
            self.feature_drift.labels(model, feature, method).set(statistic)
            self.feature_drifted.labels(model, feature).set(int(drifted))

    def set_latency_p99(self, model: str, p99s: Mapping[tuple[str, str, str], float]) -> None:
        """Export ``model``'s p99 latencies as ``p99s`` holds them, keyed by (version,
        hyperparameter set, role), and remove its other series: one pass over the
        gauge's series (a version's roles each have one)."""
        for (version, hp, role), p99 in p99s.items():
            self.latency_p99.labels(model, version, hp, role).set(p99)
        stale: list[tuple[str, str, str]] = []
        for metric in self.latency_p99.collect():
            for sample in metric.samples:
                labels = sample.labels
                key = (labels["version"], labels["hyperparameter_set"], labels["role"])
                if labels["model"] == model and key not in p99s:
                    stale.append(key)
        for version, hp, role in stale:
            self.latency_p99.remove(model, version, hp, role)

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        self.shadow_queue_depth.set_function(depth)

    def track_shadow_cpu(self, seconds: Callable[[], float]) -> None:
        """Read the shadow workers' total CPU time from ``seconds`` at each scrape."""
        self.shadow_cpu.read = seconds

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format, without ``_created`` samples
        (:class:`~monitor._collectors.WithoutCreated`)."""
        return generate_latest(WithoutCreated(self.registry))

    # series upkeep shared by every gauge and counter (monitor/_series.py)
    start_at_zero = staticmethod(start_at_zero)
    forget = staticmethod(forget)
