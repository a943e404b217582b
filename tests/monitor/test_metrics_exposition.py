"""The scrape's text: every series but the ``_created`` samples prometheus-client adds to
counters and histograms (a series of their own in Prometheus: 38 % of the samples of a
60-model daemon's scrape, read by no rule or panel)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from monitor import ServingMetrics


def test_the_exposition_holds_every_series_but_no_created_sample() -> None:
    metrics = ServingMetrics()
    metrics.http_requests.labels("/v2/models/{model}/infer", "200").inc(3)
    metrics.inference_latency.labels("credit", "1", "hp", "champion").observe(0.002)
    text = metrics.exposition().decode()
    assert "_created" not in text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = (("route", "/v2/models/{model}/infer"), ("status", "200"))
    assert samples[("tunewatch_http_requests_total", route)] == 3
    series = (("hyperparameter_set", "hp"), ("model", "credit"), ("role", "champion"))
    assert samples[("tunewatch_inference_latency_seconds_count", (*series, ("version", "1")))] == 1
    # the registry itself still holds them: only the scrape leaves them out
    assert any(s.name.endswith("_created") for m in metrics.registry.collect() for s in m.samples)
