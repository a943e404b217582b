"""The telemetry kind of a scheduled evaluation: each version's serving latency.

The latency percentiles of every version that answered since the window's oldest
request, with its hyperparameter set and load memory; the p99 exported as a metric.
Only the versions that can have answered since are read, not every one the model kept.
It raises no alarm.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitor import LatencySummary, ServingMetrics
from tunewatch._span import ts
from tunewatch.store import ModelRow, Store, Window

#: How long before a time a version taken out of service may still have answered after
#: it: a replica serves its line-up until its next refresh (``scoring.refresh_s``), a
#: shadow's queued jobs run after, and each host stamps outputs and stage changes by its
#: own clock, which may run minutes off the others'.
STAGE_CHANGE_LAG = timedelta(hours=1)


def telemetry_verdict(
    store: Store, metrics: ServingMetrics, model: ModelRow, window: Window
) -> tuple[str, dict[str, Any]]:
    """The latency (p50, p90, p99) of each version that answered since the window's
    oldest request, with its hyperparameter set and load memory; never an alarm.

    Of the versions that can have answered since (the line-up, and those whose stage
    changed since, or ``STAGE_CHANGE_LAG`` before) only: a model keeps every version its
    re-tunes retired, and one latency read each (2,000 versions: 2,002 statements, 0.6 s
    on PostgreSQL) found the two that answered."""
    if not window.n_rows:  # no `since` to read from: not the model's whole history
        metrics.forget(metrics.latency_p99, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": "no requests in the window"}
    since = ts(window.received_at.min())
    versions = {
        v.version: v for v in store.versions_served_since(model.name, since - STAGE_CHANGE_LAG)
    }
    latencies = store.latencies(model.name, since=since, versions=list(versions))
    out: dict[str, Any] = {}
    for version, samples in sorted(latencies.items()):
        summary = LatencySummary.from_samples(samples)
        row = versions[version]
        hp = row.hyperparameter_set_id
        out[str(version)] = {
            "p50": summary.p50,
            "p90": summary.p90,
            "p99": summary.p99,
            "n": summary.n,
            "hyperparameter_set": hp,
            "memory_bytes": row.load_memory_bytes,
        }
        if summary.p99 is not None:
            metrics.latency_p99.labels(model.name, str(version), hp).set(summary.p99)
    metrics.forget(metrics.latency_p99, model=model.name, keep=out)
    status = "ok" if out else "insufficient_data"
    return status, {"alarm": False, "versions": out}
