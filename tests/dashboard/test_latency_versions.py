"""The latency page's p99-over-time chart over a year of windows whose versions change
every day (a new champion and three shadows): it drew a line per version ever served, 400
of them, the legend filling the page. It now draws the versions of the newest window and
the most recently served others, at most 10 lines, says how many it
leaves out, and draws each version's own p99 values, its one-window spike kept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.store._schema import evaluations

HOURS = 24 * 366
VERSIONS = 400
END = datetime(2025, 6, 1, tzinfo=UTC)


def _versions_at(h: int) -> list[int]:
    """The four versions window ``h`` names: a set that moves on about once a day."""
    base = 1 + h * (VERSIONS - 3) // HOURS
    return [base + k for k in range(4)]


def _p99(h: int, version: int) -> float:
    # each version's latency differs; v397 (served in the newest windows) spikes once
    return 2.5 if (version, h) == (397, HOURS - 10) else 0.003 + version * 1e-6 + (h % 7) * 1e-5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("latency")) as running:
        store = running.daemon.store
        store.ensure_model(name="daily", task="binary", feature_names=["a"])
        rows: list[dict[str, Any]] = []
        for h in range(HOURS):
            at = END - timedelta(hours=HOURS - h)
            versions = {
                str(v): {"p50": 0.001, "p90": 0.002, "p99": _p99(h, v), "n": 500,
                         "hyperparameter_set": f"{v:016x}", "memory_bytes": 2**20}
                for v in _versions_at(h)
            }  # fmt: skip
            rows.append(
                {"model": "daily", "version": None, "kind": "telemetry", "status": "ok",
                 "window_start": at - timedelta(hours=1), "window_end": at, "created_at": at,
                 "payload": {"alarm": False, "versions": versions}}
            )  # fmt: skip
        with store.engine.begin() as conn:
            conn.execute(evaluations.insert(), rows)
        yield running


def _hour(window_end: str) -> int:
    return HOURS - round((END - datetime.fromisoformat(window_end)).total_seconds() / 3600)


def test_a_year_of_400_versions_draws_the_newest_and_a_few_recent_ones(served: Served) -> None:
    body = httpx.get(
        f"{served.url}/v1/dashboard/models/daily/telemetry",
        headers=served.auth("viewer"),
        timeout=120,
    ).json()
    drawn = body["history_versions"]
    newest = [str(v) for v in _versions_at(HOURS - 1)]
    assert len(drawn) == 10
    assert drawn[: len(newest)] == newest  # the versions served now come first
    # then the most recently served others, newest first
    assert drawn[len(newest) :] == [str(int(newest[0]) - k) for k in range(1, len(drawn) - 3)]
    assert {k for h in body["history"] for k in h["p99_s"]} <= set(drawn)
    assert body["versions_left_out"] == VERSIONS - len(drawn)
    # each drawn version's points are its own p99s, and v397's one-window spike is kept
    for point in body["history"]:
        h = _hour(point["window_end"])
        for key, value in point["p99_s"].items():
            assert value == (_p99(h, int(key)) if int(key) in _versions_at(h) else None)
    assert max(p["p99_s"].get("397") or 0 for p in body["history"]) == 2.5


def test_the_latency_page_draws_at_most_ten_lines_and_says_how_many_it_leaves_out(
    served: Served,
) -> None:
    page = httpx.get(
        f"{served.url}/dashboard/models/daily/telemetry",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=120,
    ).text
    chart = page.split("p99 latency over time")[1]
    legend = re.findall(r'<g class="legend" data-series="v(\d+) p99 \(ms\)"', chart)
    assert 1 <= len(legend) <= 10
    assert legend[:4] == [str(v) for v in _versions_at(HOURS - 1)]
    assert f"{VERSIONS - len(legend)} other versions served in range are not drawn" in page
