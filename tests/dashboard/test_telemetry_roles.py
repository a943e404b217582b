"""The latency page says which role each version's figures were timed in: a champion's on
the request path, a shadow's in the deprioritised worker thread (several times slower for
the same artefact), so that two rows are not read as like for like."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("roles")) as running:
        store = running.daemon.store
        store.ensure_model(name="timed", task="binary", feature_names=["a"])
        now = datetime.now(UTC)
        figures = {"p50": 0.001, "p90": 0.002, "p99": 0.003, "n": 50}
        store.add_evaluation(
            model="timed",
            version=None,
            kind="telemetry",
            status="ok",
            window_start=now - timedelta(hours=1),
            window_end=now,
            payload={
                "alarm": False,
                "versions": {
                    "1": {**figures, "role": "champion", "hyperparameter_set": "a" * 16},
                    "2": {**figures, "role": "challenger", "hyperparameter_set": "b" * 16},
                    # stored before roles were read: neither said
                    "3": {**figures, "hyperparameter_set": "c" * 16},
                },
            },
        )
        yield running


def test_each_version_s_figures_name_the_role_they_were_timed_in(served: Served) -> None:
    body = httpx.get(
        f"{served.url}/v1/dashboard/models/timed/telemetry",
        headers=served.auth("viewer"),
        timeout=60,
    ).json()
    assert [(c["version"], c["role"]) for c in body["current"]] == [
        (1, "champion"),
        (2, "challenger"),
        (3, None),
    ]
    page = httpx.get(
        f"{served.url}/dashboard/models/timed/telemetry",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert page.status_code == 200
    assert ">timed as<" in page.text
    assert "Timed as champion: on the request path" in page.text
    rows = page.text.split("<tr>")
    assert any(">v1<" in r and ">champion<" in r for r in rows)
    assert any(">v2<" in r and ">challenger<" in r for r in rows)
