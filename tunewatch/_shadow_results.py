"""What becomes of the shadow queue's results and drops: challengers' outputs recorded,
their latency, failed runs and dropped jobs counted.

Each result is built alone: one that cannot be recorded (a challenger answering a
rank-3 tensor) is counted as its version's failed run and logged once per version,
while the rest of its drain — other challengers', other models' — is recorded.

Nothing is recorded for a version that has left its model's line-up (retired, rolled
back): the queue skips its queued jobs (:meth:`ShadowResults.is_live`, asked once per
drain group), and a result of a version that left while its drain scored it is
discarded; both are counted in ``tunewatch_shadow_dropped_total{reason="left_lineup"}``,
one per (request, version) pair. A version promoted to champion is still in the
line-up: its backlog, handed over while it shadowed, is recorded as a challenger's.

A run onnxruntime could not allocate memory for (``insufficient_memory``: the host's
condition and the batch's size) is not a failed run of the challenger, which the
``max_error_rate`` guardrail would hold against it: it is counted in
``tunewatch_shadow_dropped_total{reason="insufficient_memory"}``.

Every run of a live version is counted in the store with the failed ones
(:class:`~tunewatch.store.RunTally`, in the transaction that records the drain's outputs):
the ``max_error_rate`` guardrail reads what share of a challenger's runs failed.

A failed run's latency, when it has one, is observed in the version's latency histogram:
a run stopped at ``scoring.run_timeout_s`` carries the deadline (censored), a run whose
output failed its checks its own. Neither has an output, so neither is in the store: the
``max_latency_p99_s`` cap, where it reads the recorded latencies (without a replay),
does not see them (the replay the ratio and the cap read does: a replayed run stopped at
the deadline is a violation).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from monitor import ServingMetrics
from shadow import DropReason, ShadowError, ShadowJob, ShadowResult
from tunewatch._record_rows import output_record
from tunewatch._recorder import Recorder
from tunewatch._version_series import VersionSeries
from tunewatch.store import OutputRecord, RunTally

logger = logging.getLogger(__name__)


class ShadowResults:
    """The shadow queue's ``on_result`` and ``on_drop``: records through ``recorder``,
    counts in ``series`` and ``metrics``."""

    def __init__(
        self, *, recorder: Recorder, series: VersionSeries, metrics: ServingMetrics
    ) -> None:
        self._recorder = recorder
        self._series = series
        self._metrics = metrics

    def is_live(self, model: str, version: int) -> bool:
        """Whether ``version`` is in ``model``'s line-up (the queue's ``is_live``)."""
        return self._series.hyperparameter_set(model, version) is not None

    def on_drop(self, jobs: Sequence[ShadowJob], reason: DropReason) -> None:
        for model, n in Counter(job.model for job in jobs).items():
            self._metrics.shadow_dropped.labels(model, reason).inc(n)

    def on_results(self, results: Sequence[ShadowResult]) -> None:
        records = []
        now = datetime.now(UTC)  # one drain, one timestamp: it is when they were recorded
        # None: the challenger left the lineup while it scored, and its series with it
        hps: dict[tuple[str, int], str | None] = {}
        left: Counter[str] = Counter()  # by model: results of versions that left
        starved: Counter[str] = Counter()  # by model: runs given no memory (not failed runs)
        tallies = _Tallies()
        for r in results:
            key = (r.model, r.version)
            if key not in hps:
                hps[key] = self._series.hyperparameter_set(r.model, r.version)
            hp = hps[key]
            if hp is None:  # a version out of service: not recorded, no failed run
                left[r.model] += 1
                continue
            if r.code == "insufficient_memory":
                starved[r.model] += 1
                continue
            if r.error is not None or r.values is None:
                code = r.code or ShadowError.default_code
                self._series.run_failure(r.model, r.version, "challenger", code).inc()
                tallies.failed(key, code)
                if r.latency_s is not None:  # a run stopped at its deadline: the deadline
                    self._series.latency(r.model, r.version, hp, "challenger").observe(r.latency_s)
                continue
            try:  # job boundary: a result that cannot be recorded fails alone, not the drain
                record = _shadow_record(r, now)
            except Exception as exc:
                code = exc.code if isinstance(exc, ShadowError) else "unrecordable"
                self._unrecordable(r, exc, code)
                tallies.failed(key, code)
                continue
            if r.latency_s is not None:  # a backlog batch has no latency
                self._series.latency(r.model, r.version, hp, "challenger").observe(r.latency_s)
            tallies.ran(key)
            records.append(record)
        for model, n in left.items():
            self._metrics.shadow_dropped.labels(model, "left_lineup").inc(n)
        for model, n in starved.items():
            self._metrics.shadow_dropped.labels(model, "insufficient_memory").inc(n)
        for (model, version), n in tallies.runs():
            self._series.runs(model, version, "challenger").inc(n)
        self._recorder.record_outputs(records, tallies.as_records())

    def _unrecordable(self, r: ShadowResult, exc: Exception, code: str) -> None:
        """Count a shadow result that cannot be recorded as its version's failed run;
        log it with its traceback the first time for the version (a bad challenger fails
        every request it shadows: one line each drowned the log)."""
        self._series.run_failure(r.model, r.version, "challenger", code).inc()
        if self._series.first_unrecordable(r.model, r.version):
            logger.error(
                "model=%s version=%d request=%s: shadow output not recorded, counted as a "
                "failed run (later ones of this version only counted in "
                "tunewatch_run_failures_total): %s",
                r.model,
                r.version,
                r.request_id,
                exc,
                exc_info=exc,
            )


class _Tallies:
    """One drain's shadow runs per (model, version), with the failed ones and the last
    failure's code: what the ``max_error_rate`` guardrail reads once stored."""

    def __init__(self) -> None:
        self._runs: Counter[tuple[str, int]] = Counter()
        self._failures: Counter[tuple[str, int]] = Counter()
        self._last: dict[tuple[str, int], str] = {}

    def ran(self, key: tuple[str, int]) -> None:
        self._runs[key] += 1

    def failed(self, key: tuple[str, int], code: str) -> None:
        self._runs[key] += 1
        self._failures[key] += 1
        self._last[key] = code

    def runs(self) -> Iterable[tuple[tuple[str, int], int]]:
        """Each (model, version)'s runs in this drain, failed ones included."""
        return self._runs.items()

    def as_records(self) -> list[RunTally]:
        return [
            RunTally(
                model=model,
                version=version,
                role="challenger",
                runs=runs,
                failures=self._failures[model, version],
                last_failure=self._last.get((model, version)),
            )
            for (model, version), runs in self._runs.items()
        ]


def _shadow_record(r: ShadowResult, now: datetime) -> OutputRecord:
    """The record of a challenger's answer, which must be a matrix: one row per input
    row (the shadow scoring checked the count), as the recorder keeps it."""
    assert r.values is not None
    if r.values.ndim != 2:
        raise ShadowError(
            "a shadow output must be a matrix of one row per input row, got shape "
            f"{r.values.shape}",
            code="output_shape_mismatch",
        )
    return output_record(r.model, r.request_id, r.version, "challenger", r.values, r.latency_s, now)
