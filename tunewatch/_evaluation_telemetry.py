"""The telemetry kind of a scheduled evaluation: each version's serving latency.

The latency percentiles of every version that answered since the window's oldest
request, with its hyperparameter set and load memory; the p99 exported as a metric.
It raises no alarm.
"""

from __future__ import annotations

from typing import Any

from monitor import LatencySummary, ServingMetrics
from tunewatch._span import ts
from tunewatch.store import ModelRow, Store, Window


def telemetry_verdict(
    store: Store, metrics: ServingMetrics, model: ModelRow, window: Window
) -> tuple[str, dict[str, Any]]:
    """The latency (p50, p90, p99) of each version that answered since the window's
    oldest request, with its hyperparameter set and load memory; never an alarm."""
    if not window.n_rows:  # no `since` to read from: not the model's whole history
        metrics.forget(metrics.latency_p99, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": "no requests in the window"}
    latencies = store.latencies(model.name, since=ts(window.received_at.min()))
    versions = {v.version: v for v in store.list_versions(model.name)}
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
            metrics.latency_p99.labels(model.name, str(version), hp).set(summary.p99)
    metrics.forget(metrics.latency_p99, model=model.name, keep=out)
    status = "ok" if out else "insufficient_data"
    return status, {"alarm": False, "versions": out}
