"""The custom collectors :class:`~monitor._metrics.ServingMetrics` registers beside its
metric objects: a counter read when scraped, and a gate over metrics only some processes
export; and the view of its registry a scrape reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Gauge
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


class WithoutCreated:
    """``registry``'s metrics as a scrape reads them, without the ``<name>_created``
    sample prometheus-client adds to every counter, histogram and summary series: the
    time the series was born, which Prometheus stores as a series of its own (in the
    text format it cannot tell it from a gauge). Those were 38 % of the samples and 42 %
    of the bytes of a daemon's 60 models' scrape, and no rule or panel reads them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():  # each scrape's own Metric objects
            created = f"{metric.name}_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric
