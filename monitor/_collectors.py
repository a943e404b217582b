"""The custom collectors :class:`~monitor._metrics.ServingMetrics` registers beside its
metric objects: a counter read when scraped, and a gate over metrics only some processes
export."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily, Metric


class ReadCounter:
    """A counter whose value is read from ``read`` when scraped (0 until it is set)."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self.read: Callable[[], float] = lambda: 0.0

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.read())


class Gated:
    """Collects ``metrics`` while ``when()`` holds; otherwise their families without a
    sample (described, as to a registry checking names, but no series exported)."""

    def __init__(self, metrics: Sequence[Gauge], when: Callable[[], bool]) -> None:
        self._metrics = tuple(metrics)
        self._when = when

    def describe(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        show = self._when()
        for metric in self._metrics:
            yield from (metric.collect() if show else metric.describe())
