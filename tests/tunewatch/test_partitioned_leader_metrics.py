"""A leader cut off from the store stops exporting the evaluation figures once its lease
has run out by its own clock; within the lease it keeps them (a store hiccup does not
make the alerts resolve and fire again as new episodes).

It kept them for as long as the store stayed out of reach: another process took the
lease and exported its own (a cleared alarm: 0), and the shipped ``max by (model)``
rules read the stale 1 and kept ``TunewatchDriftDetected`` firing.

Two real schedulers on one PostgreSQL schema; the leader reaches it through a loopback
TCP proxy that is then cut, as a network partition would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy import make_url

from monitor import ServingMetrics
from tests.tunewatch.tcp_proxy import TcpProxy
from tunewatch._config import Config, build_config
from tunewatch._errors import StoreUnavailableError
from tunewatch._scheduler import LEASE, Scheduler
from tunewatch.store import Store

pytestmark = pytest.mark.postgres

TTL_S = 30.0
ALARM = 'tunewatch_alarm{event="drift_detected",model="credit"}'
SHARE = 'tunewatch_drift_share{model="credit"}'


class _Clock:
    """The leader's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, url: str) -> Config:
    return build_config(
        {"data_dir": str(tmp_path), "store": {"url": url}, "scheduler": {"lease_ttl_s": TTL_S}},
        env={},
    )


def _exported(metrics: ServingMetrics) -> dict[str, float]:
    """The evaluation figures in a scrape of ``metrics``' registry, by series."""
    out = {}
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(("tunewatch_alarm{", "tunewatch_drift_share{")):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


@pytest.fixture
def pair(tmp_path: Path, pg_url: str) -> Iterator[tuple[Scheduler, Scheduler, TcpProxy, _Clock]]:
    """Scheduler A (through the proxy, its clock injected) and B (direct), one schema."""
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config_a, config_b = _config(tmp_path / "a", through), _config(tmp_path / "b", pg_url)
    store_b = Store.open(config_b.store_url)  # creates the schema
    store_a = Store.open(config_a.store_url)
    clock = _Clock()
    a = Scheduler(
        store=store_a,
        config=config_a,
        jobs=[],
        metrics=ServingMetrics(registry=CollectorRegistry()),
        holder="a",
        clock=clock,
    )
    b = Scheduler(
        store=store_b,
        config=config_b,
        jobs=[],
        metrics=ServingMetrics(registry=CollectorRegistry()),
        holder="b",
    )
    try:
        yield a, b, proxy, clock
    finally:
        proxy.close()
        store_b.release_lease(LEASE, "b")
        store_a.close()
        store_b.close()


def _lead_and_export_an_alarm(a: Scheduler) -> ServingMetrics:
    a._lead()
    assert a.leader and a.metrics is not None and a.metrics.exports_evaluation
    a.metrics.alarm.labels("credit", "drift_detected").set(1)  # as its evaluation did
    a.metrics.drift_share.labels("credit").set(0.8)
    return a.metrics


def test_a_cut_off_leader_drops_its_evaluation_figures_once_its_lease_ran_out(
    pair: tuple[Scheduler, Scheduler, TcpProxy, _Clock],
) -> None:
    a, b, proxy, clock = pair
    metrics = _lead_and_export_an_alarm(a)
    proxy.close()
    with pytest.raises(StoreUnavailableError):
        a.store.acquire_lease(LEASE, a.holder, ttl_s=TTL_S)
    clock.now += TTL_S / 3
    a._lead()  # a failed renewal within the lease: the figures stay
    assert _exported(metrics) == {ALARM: 1.0, SHARE: 0.8}
    clock.now += TTL_S / 3
    a._lead()
    assert _exported(metrics) == {ALARM: 1.0, SHARE: 0.8}
    clock.now += TTL_S / 3 + 1  # past the lease by A's own clock
    a._lead()
    assert not a.leader and not metrics.exports_evaluation
    assert _exported(metrics) == {}

    # meanwhile the lease ran out in the store (backdated rather than waited for), B took
    # it and exports its figures: a cleared alarm
    with b.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE leases SET expires_at = expires_at - interval '1 hour'"))
    b._lead()
    assert b.leader and b.metrics is not None
    b.metrics.alarm.labels("credit", "drift_detected").set(0)
    assert _exported(b.metrics) == {ALARM: 0.0}
    clock.now += TTL_S / 3
    a._lead()  # still cut off: still none
    assert _exported(metrics) == {}
