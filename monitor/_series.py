"""Upkeep of a metric's series: created at 0 before their first increment, removed once
they describe nothing. :class:`~monitor._metrics.ServingMetrics` offers both as its own
static methods."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from prometheus_client import Counter, Gauge


def start_at_zero(counter: Counter, *labels: Sequence[str]) -> None:
    """Export each of ``counter``'s series ``labels`` (label values, in the counter's
    label order) at 0 before its first increment, a series already counting as it is.

    Prometheus's ``increase()`` and ``rate()`` cannot count a series' first sample: a
    series born at 1 hides its first increment from every rule and panel reading it
    (``TunewatchScheduledJobFailing``, "three failures within an hour", fired at the
    fourth). Create at 0 only series of a bounded set, known in advance.
    """
    for values in labels:
        counter.labels(*values)


def forget(
    gauge: Gauge, *, model: str, keep: Container[str] = (), only: Mapping[str, str] = {}
) -> None:
    """Remove ``model``'s series of ``gauge`` but those whose ``version`` is in ``keep``
    (and, with ``only``, but those whose labels differ from it).

    A gauge holds its last value until its series is removed, so a figure that no
    longer describes anything (a replaced champion's accuracy, a slope with no window
    left to fit) would go on feeding dashboards and ``max by (model)`` alert rules.
    """
    # One pass over the gauge's series, each match then removed by its label values
    # (a gauge's sample lists them in the gauge's label order): ``remove_by_labels``
    # would pass over every series again for each one removed.
    stale = [
        tuple(labels.values())
        for metric in gauge.collect()
        for labels in (sample.labels for sample in metric.samples)
        if labels.get("model") == model
        and labels.get("version") not in keep
        and all(labels.get(k) == v for k, v in only.items())
    ]
    for values in stale:
        gauge.remove(*values)
