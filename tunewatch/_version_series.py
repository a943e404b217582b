"""The per-version Prometheus series of served versions: latency by hyperparameter set
and role, rows by model, runs and failed runs by role, and load memory.

A series is made only for a version in its model's line-up, and removed when the version
leaves every line-up (retired, rolled back): without that every re-tune would leave a
dozen exported series for the daemon's life. Labelled children are looked up once per
label set, as the scoring hot path needs.

The counters the shipped rules and dashboard read through ``increase()`` and ``rate()``
are exported at 0 when a version is loaded into its line-up, before it serves: its runs
and its failed runs (each of :data:`RUN_FAILURE_CODES`) in the role it is loaded in, and
its model's shadow drops (each ``DropReason``). Born at the first failure, a series hid
that failure from every rule: five failed runs in ten minutes read as four, and
``TunewatchChampionRunsFailing``'s ``>= 5`` never held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any, get_args

from monitor import ServingMetrics
from shadow import DropReason
from tunewatch.store import VersionRow

#: The codes of ``tunewatch_run_failures_total`` (its help names them): the run raised or
#: was stopped at its deadline, its output was non-finite, misshapen or past float32, a
#: live split's arm lacked an output the champion has, a shadow output could not be
#: recorded. A failure of another code is still counted, from its first failure.
RUN_FAILURE_CODES: tuple[str, ...] = (
    "run_failed",
    "run_timeout",
    "non_finite_output",
    "output_shape_mismatch",
    "output_out_of_range",
    "unknown_output",
    "unrecordable",
)


class VersionSeries:
    """The series of ``metrics`` per served version. ``hyperparameter_set(model,
    version)`` names the set of a version in its model's line-up, ``None`` once it has
    left it: a figure of such a version goes nowhere, and no series is made for it again."""

    def __init__(
        self, metrics: ServingMetrics, *, hyperparameter_set: Callable[[str, int], str | None]
    ) -> None:
        self._metrics = metrics
        self._hyperparameter_set = hyperparameter_set
        # held while a series is made or removed: a series is made only for a version in
        # its line-up, so one scored or shadowed while it was retired is not made again
        # after its removal
        self._lock = threading.Lock()
        self._latency: dict[tuple[str, int, str, str], Any] = {}
        self._rows: dict[str, Any] = {}
        self._runs: dict[tuple[str, int, str], Any] = {}
        self._failures: set[tuple[str, int, str, str]] = set()
        self._memory_labels: dict[tuple[str, int], tuple[str, str, str]] = {}
        # versions a shadow output of which could not be recorded: logged once each
        self._unrecordable: set[tuple[str, int]] = set()

    def hyperparameter_set(self, model: str, version: int) -> str | None:
        """The hyperparameter set of a version in its model's line-up, ``None`` once it
        has left it."""
        return self._hyperparameter_set(model, version)

    def latency(self, model: str, version: int, hp: str, role: str) -> Any:
        """The version's latency histogram child (an unexported one once it has left its
        line-up)."""
        key = (model, version, hp, role)
        child = self._latency.get(key)
        if child is None:
            with self._lock:
                if self._hyperparameter_set(model, version) is None:
                    return _UNEXPORTED
                child = self._latency[key] = self._metrics.inference_latency.labels(
                    model, str(version), hp, role
                )
        return child

    def runs(self, model: str, version: int, role: str) -> Any:
        """The counter of the version's runs in ``role`` (an unexported one once it has
        left its line-up)."""
        key = (model, version, role)
        child = self._runs.get(key)
        if child is None:
            with self._lock:
                if self._hyperparameter_set(model, version) is None:
                    return _UNEXPORTED
                child = self._runs[key] = self._metrics.runs.labels(model, str(version), role)
        return child

    def rows(self, model: str) -> Any:
        child = self._rows.get(model)
        if child is None:
            child = self._rows[model] = self._metrics.inference_rows.labels(model)
        return child

    def run_failure(self, model: str, version: int, role: str, code: str) -> Any:
        """The counter of the version's failed runs in ``role`` with ``code`` (an
        unexported one once it has left its line-up)."""
        with self._lock:
            if self._hyperparameter_set(model, version) is None:
                return _UNEXPORTED
            self._failures.add((model, version, role, code))
            return self._metrics.run_failures.labels(model, str(version), role, code)

    def first_unrecordable(self, model: str, version: int) -> bool:
        """Whether this is the first shadow output of the version that could not be
        recorded (since it last entered a line-up)."""
        key = (model, version)
        with self._lock:
            first = key not in self._unrecordable
            self._unrecordable.add(key)
        return first

    def loaded(self, v: VersionRow) -> None:
        """The version is loaded into its model's line-up (before it serves): export its
        runs and failed runs in its role at 0 (:meth:`_count_from_zero`), and its load
        memory as measured when it was registered (in a process of its own, the figure
        the guardrails, serving-cost ceilings and dashboard read), not this process's RSS
        growth while loading: that is 0 or a few pages, and 0 for an artefact whose pages
        were loaded before. A version stored without a figure exports no memory rather
        than a different measurement."""
        self._count_from_zero(v)
        if v.load_memory_bytes is None:
            return
        labels = (v.model, str(v.version), v.hyperparameter_set_id)
        self._metrics.session_memory.labels(*labels).set(v.load_memory_bytes)
        self._memory_labels[(v.model, v.version)] = labels

    def _count_from_zero(self, v: VersionRow) -> None:
        """Export at 0 the counters of ``v`` in the role its stage serves in (champion;
        a shadow version's runs are a challenger's) that the rules read through
        ``increase()``/``rate()``, and its model's shadow drops, each series already
        counting as it is. Removed with the version (:meth:`keep`), but the drops: they
        are the model's."""
        role = "champion" if v.stage == "champion" else "challenger"
        version = str(v.version)
        with self._lock:
            key = (v.model, v.version, role)
            if key not in self._runs:
                self._runs[key] = self._metrics.runs.labels(v.model, version, role)
            for code in RUN_FAILURE_CODES:
                self._failures.add((v.model, v.version, role, code))
            ServingMetrics.start_at_zero(
                self._metrics.run_failures,
                *((v.model, version, role, code) for code in RUN_FAILURE_CODES),
            )
        ServingMetrics.start_at_zero(
            self._metrics.shadow_dropped, *((v.model, reason) for reason in get_args(DropReason))
        )

    def keep(self, live: Collection[tuple[str, int]]) -> None:
        """Remove the series of every version not in ``live`` (model, version)."""
        for key, labels in list(self._memory_labels.items()):
            if key not in live:
                self._metrics.session_memory.remove(*labels)
                del self._memory_labels[key]
        with self._lock:
            for model, version, hp, role in list(self._latency):
                if (model, version) not in live:
                    self._metrics.inference_latency.remove(model, str(version), hp, role)
                    del self._latency[(model, version, hp, role)]
            for model, version, role in list(self._runs):
                if (model, version) not in live:
                    self._metrics.runs.remove(model, str(version), role)
                    del self._runs[(model, version, role)]
            for model, version, role, code in list(self._failures):
                if (model, version) not in live:
                    self._metrics.run_failures.remove(model, str(version), role, code)
                    self._failures.discard((model, version, role, code))
            self._unrecordable.intersection_update(live)


class _Unexported:
    """Where a figure of a version that left its line-up goes: nowhere."""

    def observe(self, value: float) -> None:
        pass

    def inc(self, amount: float = 1) -> None:
        pass


_UNEXPORTED = _Unexported()
