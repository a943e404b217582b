"""The shipped rules over what a real daemon exports: its ``/metrics`` scraped before and
after a fault, fed to `promtool test rules` as Prometheus would have scraped them.

A retune webhook delivery naming its model with a typo was answered 200 and ignored, one
with a wrong token 401, and no rule read either; a model whose champion would not load
answered every request 503 model_not_ready and only a 10-minute ticket fired. The
promtool input of tests/test_configs.py is written by hand: these check that the series
and labels the rules read are the ones a daemon exports, at 0 before the first fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_configs import _firing, _promtool_test
from tests.tunewatch.api.alert_helpers import alert, payload
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._alert_ignores import IgnoreReason

Samples = dict[str, float]  # a scrape's samples, by series as promtool writes them


def _samples(text: str, *, instance: str, names: tuple[str, ...]) -> Samples:
    """The samples of the families ``names`` in a scrape, as Prometheus stores them (the
    target's ``instance`` added)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in names:
                continue
            labels = {**sample.labels, "instance": instance}
            matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out[f"{sample.name}{{{matchers}}}"] = sample.value
    return out


def _series(*scrapes: tuple[Samples, int]) -> list[dict[str, str]]:
    """promtool input series: each scrape's samples held for its count of minutes, one
    after the other (a series missing from a scrape: no sample)."""
    names = sorted({name for samples, _ in scrapes for name in samples})
    return [
        {
            "series": name,
            "values": " ".join(
                f"{samples[name]:g}x{minutes - 1}" if name in samples else f"_x{minutes}"
                for samples, minutes in scrapes
            ),
        }
        for name in names
    ]


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


WEBHOOK = ("tunewatch_alerts_ignored_total", "tunewatch_http_requests_total")


@pytest.mark.prometheus
def test_a_mistyped_model_and_a_wrong_token_on_the_retune_webhook_open_tickets(
    served: Running, tmp_path: Path
) -> None:
    before = httpx.get(f"{served.url}/metrics", timeout=30).text
    # every reason an alert is ignored for is exported at 0 before the first: increase()
    # cannot count a series' first sample, and the first ignored alert read as none
    for reason in get_args(IgnoreReason):
        assert f'tunewatch_alerts_ignored_total{{reason="{reason}"}} 0.0' in before, reason
    # and so is every refusal of a whole delivery TunewatchAlertWebhookRefused reads: a
    # body past server.max_body_bytes (413) included, counted under the webhook's route
    for status in ("400", "401", "403", "413"):
        refused_at_0 = (
            'tunewatch_http_requests_total{route="/v1/alerts/alertmanager",'
            f'status="{status}"}} 0.0'
        )
        assert refused_at_0 in before, status
    url = f"{served.url}/v1/alerts/alertmanager"
    typo = payload(alert("fp-typo", model="credt", name="KpiDropped"))
    assert httpx.post(url, json=typo, headers=served.auth("alertmanager"), timeout=60).is_success
    wrong = {"Authorization": "Bearer tw_revoked_or_wrong"}
    refused = httpx.post(url, json=payload(alert("fp-ok")), headers=wrong, timeout=60)
    assert refused.status_code == 401
    after = httpx.get(f"{served.url}/metrics", timeout=30).text

    scrapes = [_samples(text, instance="a:8080", names=WEBHOOK) for text in (before, after)]
    series = _series((scrapes[0], 10), (scrapes[1], 60))  # the deliveries at 10m
    ignored = _firing("TunewatchAlertsIgnored", model="-", reason="model_unknown")
    refusals = _firing("TunewatchAlertWebhookRefused", model="-", status="401")
    expected: list[dict[str, object]] = [
        {"eval_time": "9m", "alertname": "TunewatchAlertsIgnored", "exp_alerts": []},
        {"eval_time": "9m", "alertname": "TunewatchAlertWebhookRefused", "exp_alerts": []},
        {"eval_time": "11m", "alertname": "TunewatchAlertsIgnored", "exp_alerts": [ignored]},
        {"eval_time": "11m", "alertname": "TunewatchAlertWebhookRefused", "exp_alerts": [refusals]},
    ]
    _promtool_test(tmp_path / "webhook_scraped.test.yml", "1m", series, expected)


LINEUP = ("tunewatch_lineup_stale", "tunewatch_champion_version")


def _damage(daemon: Daemon, stage: str) -> None:
    """Truncate the artefact of ``MODEL``'s version in ``stage``, as a restore that missed
    a file, or a new host's, leaves it."""
    [version] = [v for v in daemon.store.lineup_versions(MODEL) if v.stage == stage]
    path = daemon.artefacts.path(version.artefact_sha256)
    path.write_bytes(path.read_bytes()[:100])


def _scraped_after_start(
    trained: list[ExampleModel], data_dir: Path, damaged: str, instance: str
) -> tuple[Samples, int]:
    """The line-up series of a daemon started with its ``damaged`` version's artefact
    truncated (its ``/readyz`` and an inference's status code)."""
    daemon, tokens = make_daemon(data_dir, trained, extra={"tuning": {"workers": 0}})
    _damage(daemon, damaged)
    try:
        with BackgroundServer(daemon.app) as server:
            text = httpx.get(f"{server.url}/metrics", timeout=30).text
            scored = httpx.post(
                f"{server.url}/v2/models/{MODEL}/infer",
                json={
                    "inputs": [
                        {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [[0.0] * 8]}
                    ]
                },
                headers={"Authorization": f"Bearer {tokens['scorer']}"},
                timeout=60,
            )
    finally:
        daemon.close()
    return _samples(text, instance=instance, names=LINEUP), scored.status_code


@pytest.mark.prometheus
def test_a_champion_that_would_not_load_pages_and_a_shadow_that_would_not_does_not(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """tunewatch_champion_version is absent while a replica serves no champion, and
    present while only a shadow version would not load (its champion serving)."""
    down, down_status = _scraped_after_start(trained, tmp_path / "down", "champion", "a:8080")
    shadow, shadow_status = _scraped_after_start(trained, tmp_path / "shadow", "shadow", "b:8080")
    assert (down_status, shadow_status) == (503, 200)
    stale = f'tunewatch_lineup_stale{{instance="a:8080",model="{MODEL}"}}'
    assert down == {stale: 1.0}
    assert shadow == {
        stale.replace("a:8080", "b:8080"): 1.0,
        f'tunewatch_champion_version{{instance="b:8080",model="{MODEL}"}}': 1.0,
    }
    name = "TunewatchChampionNotServed"
    fired = _firing(name, model=MODEL, instance="a:8080")
    expected: list[dict[str, object]] = [
        {"eval_time": "1m", "alertname": name, "exp_alerts": []},
        {"eval_time": "3m", "alertname": name, "exp_alerts": [fired]},
    ]
    series = _series(({**down, **shadow}, 20))
    _promtool_test(tmp_path / "champion_scraped.test.yml", "1m", series, expected)
