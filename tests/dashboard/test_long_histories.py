"""The dashboard over long histories: spikes survive downsampling, the A/B page is bounded,
filters and rows come from every row (not the newest few), NUL filters find nothing on
both backends, and crowded line charts stay readable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.scenario import session_cookie
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch.dashboard import extreme_indices
from tunewatch.dashboard._queries import sampled_looks
from tunewatch.dashboard._svg import PALETTE, WIDTH, Series, line_chart
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._schema import comparison_looks, comparison_tests, evaluations, events, jobs

END = datetime(2025, 6, 1, tzinfo=UTC)
YEAR = 24 * 365


@dataclass
class Served:
    daemon: Daemon
    url: str
    headers: dict[str, str]

    @property
    def store(self) -> Store:
        return self.daemon.store

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers, params=params, timeout=60)

    def page(self, path: str, **params: str) -> httpx.Response:
        cookies = session_cookie(self.url, self.headers["Authorization"].removeprefix("Bearer "))
        return httpx.get(f"{self.url}{path}", cookies=cookies, params=params, timeout=60)


@contextmanager
def _serve(data_dir: Path, store_url: str | None = None) -> Iterator[Served]:
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    if store_url is not None:
        raw["store"] = {"url": store_url}
    daemon = Daemon(build_config(raw, env={}), env={})
    token = new_token()
    daemon.store.add_token(
        name="viewer-long", role="viewer", token_hash=hash_token(token), actor="test"
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Served(daemon, server.url, {"Authorization": f"Bearer {token}"})
    finally:
        daemon.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One daemon on SQLite; each test registers its own model."""
    with _serve(tmp_path_factory.mktemp("long")) as running:
        yield running


def _insert(store: Store, table: Any, rows: list[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        conn.execute(table.insert(), rows)


def _y_ticks(svg: str) -> list[float]:
    """The y-axis tick values of the first chart in ``svg``."""
    chart = svg[: svg.index("</svg>")]
    return [
        float(t) for t in re.findall(r'<text x="58\.?0*" [^>]*text-anchor="end">([^<]+)<', chart)
    ]


# -- 1. spikes survive downsampling -----------------------------------------------------------


def test_extreme_indices_keep_every_bucket_s_extremes_and_both_ends() -> None:
    values: list[float | None] = [0.5] * 10_000
    values[4321], values[7777], values[10] = 9.0, -9.0, None
    picked = extreme_indices([(values, "both")], 10_000, 400)
    assert len(picked) <= 400
    assert picked[0] == 0 and picked[-1] == 9_999
    assert {4321, 7777} <= set(picked)
    assert picked == sorted(set(picked))


def test_extreme_indices_one_sided_keep_only_the_worst_side() -> None:
    high: list[float | None] = [1.0] * 5_000
    high[1234], high[2345] = 5.0, 0.0
    picked = extreme_indices([(high, "high")], 5_000, 50)
    assert 1234 in picked and 2345 not in picked


def test_extreme_indices_fit_max_points_with_many_series() -> None:
    series: list[tuple[list[float | None], str]] = [
        ([float((i * (k + 3)) % 97) for i in range(8_760)], "both") for k in range(9)
    ]
    for max_points in (2, 3, 10, 400):
        picked = extreme_indices(series, 8_760, max_points)  # type: ignore[arg-type]
        assert len(picked) <= max_points
        assert picked[0] == 0 and picked[-1] == 8_759


def _year_of_estimates_and_telemetry(store: Store, model: str, spike: int) -> None:
    store.ensure_model(name=model, task="binary", feature_names=["a"])
    rows = []
    for h in range(YEAR):
        at = END - timedelta(hours=YEAR - h)
        base = {
            "model": model,
            "version": None,
            "window_start": at - timedelta(hours=1),
            "window_end": at,
            "created_at": at,
            "status": "ok",
        }
        p99, acc = (2.5, 0.2) if h == spike else (0.003, 0.8)
        version = {"p50": 0.001, "p90": 0.002, "p99": p99, "n": 500, "memory_bytes": 2**20}
        rows.append({**base, "kind": "telemetry", "payload": {"versions": {"1": version}}})
        estimate = {"estimated": acc, "ci": [acc - 0.02, acc + 0.02], "realised": acc, "n": 500}
        rows.append({**base, "kind": "estimate", "payload": estimate})
        rows.append(
            {**base, "kind": "labels", "payload": {"coverage": 0.05 if h == spike else 0.8}}
        )
    _insert(store, evaluations, rows)


def test_a_one_hour_p99_spike_in_a_year_reaches_the_json_and_the_chart(served: Served) -> None:
    _year_of_estimates_and_telemetry(served.store, "spiky", spike=5000)
    body = served.get("/v1/dashboard/models/spiky/telemetry").json()
    p99s = [h["p99_s"]["1"] for h in body["history"]]
    assert len(p99s) <= 400
    assert max(p99s) == 2.5
    assert body["history"][0]["window_end"] == (END - timedelta(hours=YEAR)).isoformat()
    assert body["history"][-1]["window_end"] == (END - timedelta(hours=1)).isoformat()
    page = served.page("/dashboard/models/spiky/telemetry").text
    assert max(_y_ticks(page.split("p99 latency over time")[1])) >= 2500


def test_a_one_hour_accuracy_collapse_in_a_year_reaches_the_json_and_the_chart(
    served: Served,
) -> None:
    _year_of_estimates_and_telemetry(served.store, "collapsing", spike=6000)
    body = served.get("/v1/dashboard/models/collapsing/decay").json()
    assert len(body["estimate"]) <= 400 and len(body["labels"]) <= 400
    assert min(p["realised"] for p in body["estimate"]) == 0.2
    assert min(p["estimated"] for p in body["estimate"]) == 0.2
    assert min(p["coverage"] for p in body["labels"]) == 0.05
    page = served.page("/dashboard/models/collapsing/decay").text
    chart = page.split("Label-free estimate vs realised")[1].split("Label coverage")[0]
    assert min(_y_ticks(chart)) <= 0.2


# -- 2. the A/B page is bounded ---------------------------------------------------------------


def _look(test_id: int, champion: int, challenger: int, k: int, decision: str) -> dict[str, Any]:
    w = 1.0 / (k + 1) ** 0.5
    return {
        "test_id": test_id,
        "model": "ab",
        "kind": "paired",
        "champion_version": champion,
        "challenger_version": challenger,
        "method": "confidence_sequence",
        "n": 50 * (k + 1),
        "estimate": -0.05,
        "ci_low": -0.05 - w,
        "ci_high": -0.05 + w,
        "p_value": 0.5,
        "adjusted_p_value": 0.5,
        "decision": decision,
        "fixed_t_p": None,
        "correction": None,
        "family_size": 1,
        "created_at": END,
    }


def _test_row(test_id: int, champion: int, challenger: int, status: str) -> dict[str, Any]:
    return {
        "id": test_id,
        "model": "ab",
        "kind": "paired",
        "champion_version": champion,
        "challenger_version": challenger,
        "status": status,
        "decision": "continue" if status == "open" else "challenger_worse",
        "correction": None,
        "n": 100,
        "looks": 2,
        "state": {},
        "outcome": None,
        "created_at": END,
        "updated_at": END,
        "decided_at": None if status == "open" else END,
    }


@pytest.fixture(scope="module")
def ab_model(served: Served) -> Served:
    """Model ``ab``: champion v1 with an open test against shadow v2 (id 1), then 30 decided
    tests of older champions (ids 2..31); test 2 has 5000 looks, deciding at the 3000th."""
    store = served.store
    store.ensure_model(name="ab", task="binary", feature_names=["a"])
    store.add_version(
        model="ab",
        artefact_sha256="a" * 64,
        hyperparameters={},
        size_bytes=1,
        actor="t",
        stage="champion",
    )
    store.add_version(
        model="ab",
        artefact_sha256="b" * 64,
        hyperparameters={},
        size_bytes=1,
        actor="t",
        parent_version=1,
    )
    tests = [_test_row(1, 1, 2, "open")]
    tests += [_test_row(i, 100 + i, 200 + i, "decided") for i in range(2, 32)]
    _insert(store, comparison_tests, tests)
    looks = [_look(1, 1, 2, k, "continue") for k in range(2)]
    looks += [
        _look(2, 102, 202, k, "continue" if k < 2999 else "challenger_worse") for k in range(5000)
    ]
    for i in range(3, 32):
        looks += [
            _look(i, 100 + i, 200 + i, k, "continue" if k else "challenger_worse") for k in range(2)
        ]
    _insert(store, comparison_looks, looks)
    return served


def test_ab_shows_the_open_current_test_and_the_newest_others_up_to_limit(
    ab_model: Served,
) -> None:
    body = ab_model.get("/v1/dashboard/models/ab/ab").json()
    ids = [t["id"] for t in body["tests"]]
    assert ids == [*range(31, 11, -1), 1]  # the 20 newest, then the current champion's
    assert body["tests_total"] == 31 and body["limit"] == 20
    assert [t["id"] for t in body["tests"] if t["current"]] == [1]
    few = ab_model.get("/v1/dashboard/models/ab/ab", limit="3").json()
    assert [t["id"] for t in few["tests"]] == [31, 30, 29, 1]
    none = ab_model.get("/v1/dashboard/models/ab/ab", limit="0").json()
    assert [t["id"] for t in none["tests"]] == [1]
    page = ab_model.page("/dashboard/models/ab/ab", limit="3")
    assert page.status_code == 200
    assert page.text.count('class="comparison"') == 4
    assert "4 of 31 tests" in page.text


def test_ab_page_limit_zero_reports_hidden_tests(served: Served) -> None:
    """With no open test of the current champion, ``?limit=0`` shows no test; the page
    said "No comparisons yet." over three decided ones."""
    served.store.ensure_model(name="ab-decided", task="binary", feature_names=["a"])
    tests = [
        {**_test_row(i, 100 + i, 200 + i, "decided"), "model": "ab-decided"}
        for i in range(101, 104)
    ]
    _insert(served.store, comparison_tests, tests)
    looks = [
        {
            **_look(i, 100 + i, 200 + i, k, "continue" if k else "challenger_worse"),
            "model": "ab-decided",
        }
        for i in range(101, 104)
        for k in range(2)
    ]
    _insert(served.store, comparison_looks, looks)
    body = served.get("/v1/dashboard/models/ab-decided/ab", limit="0").json()
    assert (body["tests"], body["tests_total"]) == ([], 3)
    page = served.page("/dashboard/models/ab-decided/ab", limit="0")
    assert page.status_code == 200, page.text
    assert "No comparisons yet." not in page.text
    assert "Showing 0 of 3 tests" in page.text
    assert 'href="/dashboard/models/ab-decided/ab?limit=20">Show the 20 newest</a>' in page.text


@pytest.mark.parametrize("bad", ["-1", "101", "many", "1.5"])
def test_ab_limit_out_of_range_is_a_400_naming_the_field(ab_model: Served, bad: str) -> None:
    """The JSON route answers `{"error","code"}`; the page answers a page, and only to a
    signed-in browser (it answered the JSON 400 before the session was checked)."""
    r = ab_model.get("/v1/dashboard/models/ab/ab", limit=bad)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request" and "limit" in r.json()["error"]
    page = ab_model.page("/dashboard/models/ab/ab", limit=bad)
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert "Bad request" in page.text and "`limit` must be an integer" in page.text
    anonymous = httpx.get(
        f"{ab_model.url}/dashboard/models/ab/ab", params={"limit": bad}, follow_redirects=False
    )
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"


def test_ab_looks_of_a_long_test_are_bounded_and_keep_both_ends_and_the_deciding_look(
    ab_model: Served,
) -> None:
    for max_points in (400, 7, 2):
        body = ab_model.get(
            "/v1/dashboard/models/ab/ab", limit="100", max_points=str(max_points)
        ).json()
        (long,) = [t for t in body["tests"] if t["id"] == 2]
        series = long["series"]
        assert long["series_total"] == 5000
        assert len(series) <= max_points + 1
        assert series[0]["n"] == 50 and series[-1]["n"] == 50 * 5000
        assert series[long["decision_look"]]["n"] == 50 * 3000
        assert [p["n"] for p in series] == sorted({p["n"] for p in series})


def test_sampled_looks_are_evenly_spaced_with_the_deciding_look_on_either_backend(
    store_url: str,
) -> None:
    with Store.open(store_url) as store:
        store.ensure_model(name="ab", task="binary", feature_names=["a"])
        _insert(
            store, comparison_tests, [_test_row(1, 1, 2, "decided"), _test_row(2, 1, 3, "open")]
        )
        looks = [
            _look(1, 1, 2, k, "continue" if k < 599 else "challenger_better") for k in range(1000)
        ]
        _insert(store, comparison_looks, [*looks, _look(2, 1, 3, 0, "continue")])
        long, single = ComparisonStore(store).list_tests("ab")
        picked, total = sampled_looks(store, long, max_points=7)
        assert total == 1000
        assert [lk.n // 50 - 1 for lk in picked] == [0, 167, 333, 500, 599, 666, 833, 999]
        whole, total = sampled_looks(store, long, max_points=1000)
        assert total == 1000 and len(whole) == 1000
        one, total = sampled_looks(store, single, max_points=2)
        assert total == 1 and [lk.n for lk in one] == [50]


# -- 3-5. rows and filters come from every row --------------------------------------------------


def test_drift_rows_include_columns_of_older_windows_when_the_newest_has_none(
    served: Served,
) -> None:
    served.store.ensure_model(name="rows", task="binary", feature_names=["a"])

    def cols(p: float) -> list[dict[str, Any]]:
        return [
            {"column": "a", "p_value": 0.5, "drifted": False},
            {"column": "__prediction__", "p_value": p, "drifted": p < 0.05},
        ]

    base = {"model": "rows", "version": 1, "kind": "drift"}
    rows = [
        {
            **base,
            "status": "ok",
            "window_start": END - timedelta(hours=h + 1),
            "window_end": END - timedelta(hours=h),
            "created_at": END - timedelta(hours=h),
            "payload": {"alarm": True, "columns": cols(0.001)},
        }
        for h in range(1, 48)
    ]
    rows.append(
        {
            **base,
            "status": "insufficient_data",
            "window_start": None,
            "window_end": END,
            "created_at": END,
            "payload": {"alarm": False, "reason": "no reference snapshot"},
        }
    )
    _insert(served.store, evaluations, rows)
    body = served.get("/v1/dashboard/models/rows/drift").json()
    assert body["features"] == ["a", "__prediction__"]
    assert sum(any(c["drifted"]) for c in body["columns"]) == 47


def test_a_column_not_tested_reads_insufficient_data_with_its_reason_not_ok(
    served: Served,
) -> None:
    """A column the window could not test (constant, too few rows) was shown as a green
    "ok", as if it had passed."""
    served.store.ensure_model(name="flat", task="binary", feature_names=["a", "b"])
    column = {"method": "ks", "statistic": None, "p_value": None, "threshold": 0.05}
    columns = [
        {**column, "column": "a", "drifted": False, "status": "insufficient_data",
         "reason": "constant in the current window", "n_cur": 3},
        {**column, "column": "b", "statistic": 0.1, "p_value": 0.4, "drifted": False,
         "status": "ok", "reason": None, "n_cur": 3},
    ]  # fmt: skip
    row = {
        "model": "flat",
        "version": 1,
        "kind": "drift",
        "status": "ok",
        "window_start": END - timedelta(hours=1),
        "window_end": END,
        "created_at": END,
        "payload": {"alarm": False, "rule": "share", "columns": columns},
    }
    _insert(served.store, evaluations, [row])
    page = served.page("/dashboard/models/flat/drift").text
    cells = re.findall(r'<td><span class="(\w+)">([^<]*)</span></td>', page)
    assert cells == [
        ("muted", "insufficient data: constant in the current window"),
        ("ok", "ok"),
    ]


def test_event_type_chips_include_types_older_than_the_newest_thousand_events(
    served: Served,
) -> None:
    served.store.ensure_model(name="chatty", task="binary", feature_names=["a"])
    served.store.add_event(model="chatty", type="rolled_back", payload={"version": 3})
    rows = [
        {"model": "chatty", "type": "alert_received", "payload": {"i": i}, "created_at": END}
        for i in range(1000)
    ]
    _insert(served.store, events, rows)
    body = served.get("/v1/dashboard/models/chatty/events").json()
    assert body["event_types"] == ["alert_received", "rolled_back"]
    page = served.page("/dashboard/models/chatty/events").text
    assert 'data-value="rolled_back"' in page


def test_overview_shows_a_running_job_older_than_the_newest_200_jobs(served: Served) -> None:
    store = served.store
    store.ensure_model(name="slow", task="binary", feature_names=["a"])
    store.ensure_model(name="busy", task="binary", feature_names=["a"])
    running, _ = store.create_job(model="slow", kind="retune", trigger={"event": "t"}, spec={})
    store.claim_job(running.id, "w1")
    finished = {"kind": "retune", "status": "failed", "trigger": {}, "spec": {}, "progress": {}}
    rows = [
        {**finished, "model": "busy", "created_at": END, "finished_at": END} for _ in range(200)
    ]
    _insert(store, jobs, rows)
    body = served.get("/v1/dashboard/overview").json()
    (slow,) = [m for m in body["models"] if m["name"] == "slow"]
    assert [(j["id"], j["status"]) for j in slow["active_jobs"]] == [(running.id, "running")]


# -- 6. NUL in the audit filters ------------------------------------------------------------------


def test_a_nul_in_the_audit_filters_finds_nothing_on_either_backend(
    store_url: str, tmp_path: Path
) -> None:
    with _serve(tmp_path, store_url) as running:
        running.store.ensure_model(name="m", task="binary", feature_names=["a"])
        running.store.append_audit(actor="ops", action="set_stage", target="m/v1", details={})
        for field in ("action", "actor"):
            for path in ("/v1/dashboard/models/m/events", "/dashboard/models/m/events"):
                r = running.get(path, **{field: "set\x00stage"})
                assert r.status_code == 200, (field, path, r.text[:200])
            body = running.get("/v1/dashboard/models/m/events", **{field: "x\x00y"}).json()
            assert body["audit"] == []
        assert running.store.audit_log(10, target="m\x00/v1") == []
        assert running.store.audit_facets("m\x00") == ([], [])


# -- 7. crowded line charts -------------------------------------------------------------------


def _legend(svg: str) -> list[dict[str, str]]:
    return [
        dict(re.findall(r'data-([a-z]+)="([^"]*)"', g))
        for g in re.findall(r'<g class="legend"[^>]*>', svg)
    ]


def test_line_chart_legend_wraps_inside_the_chart() -> None:
    series = [Series(name=f"v{v} p99 (ms)", x=[0.0, 1.0], y=[v, v + 1.0]) for v in range(1, 10)]
    svg = line_chart(series, x_label="t", y_label="ms", label="p99")
    entries = _legend(svg)
    assert len(entries) == 9
    for entry in entries:
        assert float(entry["x"]) >= 0 and float(entry["right"]) <= WIDTH
    assert len({entry["y"] for entry in entries}) >= 2
    height = float(re.search(r'viewBox="0 0 \d+ (\d+)"', svg).group(1))  # type: ignore[union-attr]
    lowest_legend = max(float(e["y"]) for e in entries)
    plot_top = min(float(y) for y in re.findall(r'<line x1="[^"]+" x2="[^"]+" y1="([^"]+)"', svg))
    assert lowest_legend < plot_top < height


def test_line_series_beyond_the_palette_differ_by_dash_pattern() -> None:
    n = len(PALETTE) * 2 + 3
    series = [Series(name=f"s{i}", x=[0.0, 1.0], y=[float(i), i + 1.0]) for i in range(n)]
    svg = line_chart(series, x_label="t", y_label="y", label="many")
    styles = [(e["colour"], e["dash"]) for e in _legend(svg)]
    assert len(set(styles)) == n
    lines = re.findall(
        r'<polyline class="series" stroke="([^"]+)"(?: stroke-dasharray="([^"]+)")?', svg
    )
    assert len(set(lines)) == n
