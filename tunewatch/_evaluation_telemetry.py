"""The telemetry kind of a scheduled evaluation: each version's serving latency, by role.

The latency percentiles of every version that answered since the window's oldest
request, in each role it answered in, with its hyperparameter set and load memory; the
p99 exported as a metric per version and role. Only the versions that can have answered
since are read, not every one the model kept. It raises no alarm.

A version promoted after it shadowed answered in both roles: as a challenger, timed in
the deprioritised shadow worker (one served gradient boosting read p99 1.25 ms there
against 0.32 ms on the request path), then as the champion. Its figures mixed the two (800
requests, a promotion and 800 more read n=1198, p99 0.45 ms); they are now each role's,
the version's own figures those of the role it serves in (:func:`_current_role`).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitor import LatencySummary, ServingMetrics
from tunewatch._span import ts
from tunewatch.store import ModelRow, Store, VersionRow, Window

#: How long before a time a version taken out of service may still have answered after
#: it: a replica serves its line-up until its next refresh (``scoring.refresh_s``), a
#: shadow's queued jobs run after, and each host stamps outputs and stage changes by its
#: own clock, which may run minutes off the others'.
STAGE_CHANGE_LAG = timedelta(hours=1)

#: The roles a version answers in with a latency of its own (a mirrored record's
#: ``external`` answer has none).
ROLES = ("champion", "challenger")


def telemetry_verdict(
    store: Store, metrics: ServingMetrics, model: ModelRow, window: Window
) -> tuple[str, dict[str, Any]]:
    """The latency (p50, p90, p99) of each version that answered since the window's
    oldest request, per role it answered in (``roles``) and in the role it serves in
    (``role``, its figures at the top: what the API and the dashboard show), with its
    hyperparameter set and load memory; never an alarm.

    Of the versions that can have answered since (the line-up, and those whose stage
    changed since, or ``STAGE_CHANGE_LAG`` before) only: a model keeps every version its
    re-tunes retired, and one latency read each (2,000 versions: 2,002 statements, 0.6 s
    on PostgreSQL) found the two that answered. Each is read in the roles it can have
    answered in (:func:`_roles_read`): one read each, two for a version whose stage
    changed since."""
    if not window.n_rows:  # no `since` to read from: not the model's whole history
        metrics.forget(metrics.latency_p99, model=model.name)
        return "insufficient_data", {"alarm": False, "reason": "no requests in the window"}
    since = ts(window.received_at.min())
    versions = {
        v.version: v for v in store.versions_served_since(model.name, since - STAGE_CHANGE_LAG)
    }
    by_role: dict[int, dict[str, np.ndarray]] = {}
    for role in ROLES:
        named = [v for v, row in versions.items() if role in _roles_read(row, since)]
        if not named:
            continue
        read = store.latencies(
            model.name, since=since, versions=named, roles=dict.fromkeys(named, role)
        )
        for version, samples in read.items():
            by_role.setdefault(version, {})[role] = samples
    out: dict[str, Any] = {}
    for version, samples_by_role in sorted(by_role.items()):
        row = versions[version]
        roles = {
            role: _summary(LatencySummary.from_samples(samples_by_role[role]))
            for role in ROLES
            if role in samples_by_role
        }
        role = _current_role(row, roles)
        out[str(version)] = {
            **roles[role],
            "role": role,
            "roles": roles,
            "hyperparameter_set": row.hyperparameter_set_id,
            "memory_bytes": row.load_memory_bytes,
        }
    export_latency_p99(metrics, model.name, out)
    status = "ok" if out else "insufficient_data"
    return status, {"alarm": False, "versions": out}


def export_latency_p99(
    metrics: ServingMetrics,
    model: str,
    versions: Mapping[str, Any],
    *,
    served: Container[str] | None = None,
) -> None:
    """Export the p99 of each version and role a telemetry verdict's ``versions``
    measured (of the versions in ``served`` only, when given), and remove ``model``'s
    other series. A verdict stored before the roles were read (no ``roles``: its
    figures mixed them) exports none of that version's."""
    p99s: dict[tuple[str, str, str], float] = {}
    for version, summary in versions.items():
        if not isinstance(summary, dict) or (served is not None and version not in served):
            continue
        roles = summary.get("roles")
        for role, figures in (roles if isinstance(roles, dict) else {}).items():
            p99 = figures.get("p99") if isinstance(figures, dict) else None
            if role in ROLES and p99 is not None:
                p99s[(version, str(summary.get("hyperparameter_set")), role)] = float(p99)
    metrics.set_latency_p99(model, p99s)


def _roles_read(row: VersionRow, since: datetime) -> tuple[str, ...]:
    """The roles ``row`` can have answered in since ``since``: the one its stage serves in
    (the champion's; a shadow's, split arm's or named version's: challenger), both for a
    version whose stage changed since then (or ``STAGE_CHANGE_LAG`` before: a replica
    not yet refreshed, another host's clock), a promoted shadow or a retired champion."""
    if row.stage_changed_at >= since - STAGE_CHANGE_LAG:
        return ROLES
    return ("champion",) if row.stage == "champion" else ("challenger",)


def _current_role(row: VersionRow, roles: Mapping[str, Any]) -> str:
    """The role whose figures are ``row``'s own: the one it serves in (the champion's;
    any other's, a retired version's too: challenger) if it answered in it, else the
    other (a champion retired or rolled back in the window answered as champion only)."""
    serves = "champion" if row.stage == "champion" else "challenger"
    return serves if serves in roles else next(iter(roles))


def _summary(summary: LatencySummary) -> dict[str, Any]:
    return {"p50": summary.p50, "p90": summary.p90, "p99": summary.p99, "n": summary.n}
