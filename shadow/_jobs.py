"""A shadow job, one validated request batch for the challengers, and how one challenger
scores jobs: one alone, a backlog in one batched call, each result split back to its
request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from shadow._deployment import LoadedVersion
from shadow._errors import ShadowError
from shadow._validation import cast_rows, check_other_outputs, check_output

logger = logging.getLogger(__name__)


class ShadowJob(NamedTuple):
    """One validated request batch to be scored by every challenger listed (named tuples:
    one is built per request and per result, where a frozen dataclass cost ~1.5 µs)."""

    model: str
    request_id: str
    x: np.ndarray[Any, Any]
    challengers: tuple[LoadedVersion, ...]


class ShadowResult(NamedTuple):
    """One challenger's answer to one job: the primary output (float32, 2-D) or an error.
    ``latency_s`` is the run's; for an error, that of a run that finished before its
    output failed a check, or the deadline for a run stopped at it, else ``None``."""

    model: str
    request_id: str
    version: int
    values: np.ndarray[Any, Any] | None
    latency_s: float | None
    error: str | None = None
    code: str | None = None  # the error's: a ShadowError's code, else "shadow_error"


class FailureLog:
    """Logs challengers' failed runs: the first of each (model, version, code) with its
    traceback, then at most one an hour (``every_s``) with how many were not logged since.
    Each failure was logged with its traceback: a challenger failing every request it
    shadows wrote one per request, thousands a second under load, on the shadow workers'
    CPU share. Every failure is still an error result (tunewatch counts them all, by
    code). Thread-safe: one per queue, its workers share it."""

    def __init__(
        self, *, every_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: dict[tuple[str, int, str], float] = {}
        self._unlogged: dict[tuple[str, int, str], int] = {}

    def failed(self, job: ShadowJob, version: int, code: str, exc: Exception) -> None:
        key = (job.model, version, code)
        now = self._clock()
        with self._lock:
            last = self._logged_at.get(key)
            if last is not None and now - last < self._every_s:
                self._unlogged[key] = self._unlogged.get(key, 0) + 1
                return
            self._logged_at[key] = now
            unlogged = self._unlogged.pop(key, 0)
        logger.error(
            "shadow scoring failed: model=%s version=%d request=%s code=%s (%d more of this "
            "version with this code since it was last logged; the next are logged at most "
            "once in %g s, all counted)",
            job.model,
            version,
            job.request_id,
            code,
            unlogged,
            self._every_s,
            exc_info=exc,
        )


def _censored(exc: ShadowError, run_timeout_s: float | None, elapsed: float) -> float | None:
    """The latency of a run that failed: the deadline, for one stopped at it (censored:
    the true latency is at least that), else none. A run refused at once by the model's
    breaker (:class:`shadow._deadline.RunBreaker`, code ``run_timeout`` too) never ran."""
    if exc.code == "run_timeout" and run_timeout_s is not None and elapsed >= run_timeout_s:
        return run_timeout_s
    return None


def score(
    job: ShadowJob, loaded: LoadedVersion, *, failures: FailureLog | None = None
) -> ShadowResult:
    """Score ``job`` with one challenger; exceptions become an error result, logged with
    its traceback (by ``failures`` if given: the first of its version and code only).

    The latency is the model's run alone, as the champion's on the request path
    (``tunewatch._runtime``): it also covered the cast, the output check and the primary
    output, and the latency ratio guardrail read the same artefact as champion and as
    shadow at p99 10 against 14 µs in one thread (1.42x), before any queueing. A run
    stopped at ``scoring.run_timeout_s`` gets the deadline as its latency (censored): a
    model looping past it on 2.5% of rows read p99 0.8 ms without them."""
    latency: float | None = None
    try:
        model = loaded.model
        x = cast_rows(job.x, model.signature.input.dtype, model.signature.input.name)
        start = time.perf_counter()
        try:
            outputs = model.run(x)
        except ShadowError as exc:
            latency = _censored(exc, model.run_timeout_s, time.perf_counter() - start)
            raise
        latency = time.perf_counter() - start
        name = model.signature.primary_output
        check_output(outputs[name], name)  # recorded as float32
        check_other_outputs(outputs, name)  # as the champion's answer is refused
        values = model.primary(outputs)
        if not _one_row_per_input_row(values, x):
            raise ShadowError(
                f"the model's output {name!r} must hold one row per input row "
                f"({x.shape[0]}), got shape {values.shape}",
                code="output_shape_mismatch",
            )
    except Exception as exc:  # job boundary: record, log with traceback, carry on
        code = exc.code if isinstance(exc, ShadowError) else ShadowError.default_code
        (failures if failures is not None else FailureLog()).failed(job, loaded.version, code, exc)
        return ShadowResult(
            job.model,
            job.request_id,
            loaded.version,
            None,
            latency,
            f"{type(exc).__name__}: {exc}",
            code,
        )
    return ShadowResult(job.model, job.request_id, loaded.version, values, latency)


def score_many(
    jobs: Sequence[ShadowJob], loaded: LoadedVersion, *, failures: FailureLog | None = None
) -> list[ShadowResult]:
    """Score several jobs with one challenger: the first alone, the rest in one batch
    (failed jobs logged as :func:`score` logs them).

    Batching the backlog makes shadow scoring cheap under load (one onnxruntime call for
    many requests). The first job is scored on its own so that every drained backlog
    yields one honest single-request latency; the batched ones carry ``latency_s=None``
    (their cost is shared, not a latency). If the batched run fails, each job is scored
    alone so that one bad job cannot sink the others; so too when the batch's primary
    output does not hold one row per input row (a 0-d output, a ``[1, batch]`` one): it
    cannot be split by request, and each job alone gets its own score or its own error.

    A batched run that succeeds is taken as each job's: a model whose answer depends on
    the batch (one that fails on some batch sizes only, a batch-level operation) is
    counted, and compared, on the batches its backlog happened to form, not on each
    request alone. Scoring every job alone would cost one onnxruntime call per request
    under load; such models are rare, and this is left as it is (a review found a model
    failing on every 7-row request counted 10 % of runs failed where alone it fails 21 %).
    """
    results = [score(jobs[0], loaded, failures=failures)]
    rest = jobs[1:]
    if not rest:
        return results
    try:
        spec = loaded.model.signature.input
        x = cast_rows(np.concatenate([j.x for j in rest]), spec.dtype, spec.name)
        outputs = loaded.model.run(x)
        name = loaded.model.signature.primary_output
        check_output(outputs[name], name)  # else each job alone: the bad one fails
        check_other_outputs(outputs, name)
        values = loaded.model.primary(outputs)
    except (ShadowError, ValueError):  # isolate the failing job below (each logged there)
        # also after a deadline: a batch of rows slow to score may pass it where each job
        # alone does not, and a model that loops on every row opens its breaker after two
        # more (shadow._deadline.RunBreaker), then the rest are refused at once
        return results + [score(j, loaded, failures=failures) for j in rest]
    if not _one_row_per_input_row(values, x):  # not batch-major: no slice is one job's
        return results + [score(j, loaded, failures=failures) for j in rest]
    start = 0
    for job in rest:  # slices: np.split costs ~5x as much (50 against 10 µs for 31 jobs)
        end = start + job.x.shape[0]
        results.append(
            ShadowResult(job.model, job.request_id, loaded.version, values[start:end], None)
        )
        start = end
    return results


def _one_row_per_input_row(values: np.ndarray[Any, Any], x: np.ndarray[Any, Any]) -> bool:
    return values.ndim >= 1 and values.shape[0] == x.shape[0]
