"""Removing a model's stale evaluation series costs one pass over the gauge, whatever
the number of features: ``set_feature_drift`` forgot each feature under each drift method
in turn, every time reading every series of the gauge (every model's), so a takeover's
export at 100 models x 30 features held the scheduler lease for over a minute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import Gauge

from monitor import ServingMetrics
from monitor.drift import METHODS

FEATURES = [f"f{j}" for j in range(30)]
KS, PSI = "ks", "psi"


class Passes:
    """Counts the passes over every series of the gauges it watches: a ``collect`` reads
    them all, and so does a ``remove_by_labels`` (it matches each series in turn)."""

    def __init__(self, *gauges: Gauge) -> None:
        self.count = 0
        for gauge in gauges:
            for name in ("collect", "remove_by_labels"):
                setattr(gauge, name, self._counted(getattr(gauge, name)))

    def _counted(self, method):  # type: ignore[no-untyped-def]
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return method(*args, **kwargs)

        return counted


def _series(metrics: ServingMetrics) -> Iterator[tuple[str, tuple[str, ...]]]:
    for gauge in (metrics.feature_drift, metrics.feature_drifted):
        for metric in gauge.collect():
            for s in metric.samples:
                yield s.name, tuple(sorted(s.labels.items()))


def _samples(gauge: Gauge) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for metric in gauge.collect() for s in metric.samples}


@pytest.fixture
def metrics() -> ServingMetrics:
    """Ten models' features exported under ks, so the gauges hold many series."""
    m = ServingMetrics()
    for i in range(10):
        m.set_feature_drift(f"m{i}", {f: (KS, 0.1, False) for f in FEATURES})
    return m


def test_set_feature_drift_reads_the_gauges_once_whatever_the_features(
    metrics: ServingMetrics,
) -> None:
    passes = Passes(metrics.feature_drift, metrics.feature_drifted)
    # every feature's method switched, and one feature untested: each stale series goes
    features: dict[str, tuple[str, float, bool] | None] = {
        f: (PSI, 0.2, True) for f in FEATURES[1:]
    }
    features[FEATURES[0]] = None
    metrics.set_feature_drift("m3", features)
    assert passes.count <= 2  # one pass per gauge at most, not one per feature x method
    assert len(METHODS) * len(FEATURES) > 2  # (a pass each would be many more)


def test_forget_reads_the_gauge_once_however_many_series_it_removes(
    metrics: ServingMetrics,
) -> None:
    passes = Passes(metrics.feature_drift)
    metrics.forget(metrics.feature_drift, model="m3")
    assert passes.count == 1
    assert not any(labels[0] == "m3" for labels in _samples(metrics.feature_drift))


def test_a_switched_method_leaves_one_series_a_feature(metrics: ServingMetrics) -> None:
    metrics.set_feature_drift("m3", {"f0": (PSI, 0.4, True), "f1": (KS, 0.3, False)})
    score = _samples(metrics.feature_drift)
    assert ("m3", "f0", KS) not in score
    assert score[("m3", "f0", PSI)] == 0.4
    assert score[("m3", "f1", KS)] == 0.3
    assert score[("m3", "f2", KS)] == 0.1  # a feature not named is left as it was
    drifted = _samples(metrics.feature_drifted)
    assert drifted[("m3", "f0")] == 1.0
    assert drifted[("m3", "f1")] == 0.0


def test_an_untested_feature_loses_its_score_and_verdict(metrics: ServingMetrics) -> None:
    metrics.set_feature_drift("m3", {"f0": (PSI, 0.4, True)})
    metrics.set_feature_drift("m3", {"f0": None, "f1": None})
    score = _samples(metrics.feature_drift)
    assert not any(k[:2] in {("m3", "f0"), ("m3", "f1")} for k in score)
    drifted = _samples(metrics.feature_drifted)
    assert ("m3", "f0") not in drifted
    assert ("m3", "f1") not in drifted
    assert ("m3", "f2") in drifted


def test_other_models_series_are_untouched(metrics: ServingMetrics) -> None:
    before = {k for k in _series(metrics) if ("model", "m3") not in k[1]}
    metrics.set_feature_drift("m3", {f: None for f in FEATURES})
    metrics.forget(metrics.feature_drifted, model="m4", only={"feature": "f0"})
    after = set(_series(metrics))
    assert not any(("model", "m3") in k[1] for k in after)
    gone = before - after
    assert gone == {
        ("tunewatch_feature_drifted", (("feature", "f0"), ("model", "m4"))),
    }


def test_forget_keeps_the_versions_it_is_told_to() -> None:
    metrics = ServingMetrics()
    gauge = metrics.objective_realised
    for model in ("a", "b"):
        for version in ("1", "2", "3"):
            gauge.labels(model, version, "accuracy").set(0.5)
    metrics.forget(gauge, model="a", keep={"2"})
    assert set(_samples(gauge)) == {
        ("a", "2", "accuracy"),
        ("b", "1", "accuracy"),
        ("b", "2", "accuracy"),
        ("b", "3", "accuracy"),
    }
