"""The shadow queue: challengers score the champion's requests off the request path.

:meth:`ShadowQueue.submit` never blocks: when ``maxsize`` jobs are waiting it drops
the new job, counts it in :attr:`ShadowQueue.dropped` and returns ``False``. Worker
threads score every challenger of a job, timing each with ``perf_counter``, and hand
the job's results to ``on_result`` in one call. A failing challenger becomes a result
with ``error`` set; a failing ``on_result`` is logged and counted. Neither stops a
worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from shadow._deployment import LoadedVersion

logger = logging.getLogger(__name__)

_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One validated request batch to be scored by every challenger listed."""

    model: str
    request_id: str
    x: np.ndarray[Any, Any]
    challengers: tuple[LoadedVersion, ...]


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """One challenger's answer to one job: the primary output (float32, 2-D) or an error."""

    model: str
    request_id: str
    version: int
    values: np.ndarray[Any, Any] | None
    latency_s: float
    error: str | None = None


def score(job: ShadowJob, loaded: LoadedVersion) -> ShadowResult:
    """Score ``job`` with one challenger; exceptions become an error result."""
    start = time.perf_counter()
    try:
        model = loaded.model
        x = job.x
        dtype = model.signature.input.dtype
        if x.dtype != dtype:
            x = x.astype(dtype)
        values = model.primary(model.run(x))
    except Exception as exc:  # job boundary: record, log with traceback, carry on
        latency = time.perf_counter() - start
        logger.exception(
            "shadow scoring failed: model=%s version=%d request=%s",
            job.model,
            loaded.version,
            job.request_id,
        )
        return ShadowResult(
            job.model, job.request_id, loaded.version, None, latency, f"{type(exc).__name__}: {exc}"
        )
    return ShadowResult(
        job.model, job.request_id, loaded.version, values, time.perf_counter() - start
    )


class ShadowQueue:
    """A bounded, non-blocking job queue drained by daemon worker threads."""

    def __init__(
        self,
        *,
        maxsize: int,
        on_result: Callable[[Sequence[ShadowResult]], None],
        workers: int = 1,
        name: str = "shadow",
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"`maxsize` must be >= 1, got {maxsize}")
        if workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {workers}")
        self.maxsize = maxsize
        self.name = name
        self._on_result = on_result
        self._n_workers = workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._depth = 0
        self._dropped = 0
        self._processed = 0
        self._errors = 0
        self._callback_errors = 0
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- counters -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Jobs waiting for a worker."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Jobs refused because the queue was full (or closed)."""
        return self._dropped

    @property
    def processed(self) -> int:
        """Jobs fully handled (scored and passed to ``on_result``)."""
        return self._processed

    @property
    def errors(self) -> int:
        """Failed challenger scorings plus failed ``on_result`` calls."""
        return self._errors

    @property
    def callback_errors(self) -> int:
        """Failed ``on_result`` calls (also included in :attr:`errors`)."""
        return self._callback_errors

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"shadow queue {self.name!r} is closed")
        if self._threads:
            raise RuntimeError(f"shadow queue {self.name!r} is already started")
        for i in range(self._n_workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Enqueue ``job`` without blocking; ``False`` (and a drop counted) if full."""
        with self._lock:
            if self._closed or self._depth >= self.maxsize:
                self._dropped += 1
                return False
            self._depth += 1
        self._queue.put(job)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting jobs, let workers finish those queued, then stop them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.running:
            logger.warning(
                "shadow queue %s: workers still busy after %.1f s, %d jobs left",
                self.name,
                timeout,
                self._depth,
            )

    def __enter__(self) -> ShadowQueue:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- worker -------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            with self._lock:
                self._depth -= 1
            self._handle(job)

    def _handle(self, job: ShadowJob) -> None:
        results = [score(job, loaded) for loaded in job.challengers]
        failures = sum(1 for r in results if r.error is not None)
        callback_failed = False
        try:
            self._on_result(results)
        except Exception:  # job boundary: the worker must survive its consumer
            callback_failed = True
            logger.exception(
                "shadow queue %s: on_result failed for model=%s request=%s",
                self.name,
                job.model,
                job.request_id,
            )
        with self._lock:
            self._processed += 1
            self._errors += failures + callback_failed
            self._callback_errors += callback_failed
