"""The drift page and its JSON: heatmap columns over many windows and the latest window."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.store._schema import evaluations

FEATURES = [f"x{i}" for i in range(4)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A daemon with no models; each test adds its own model and drift windows."""
    with serve(tmp_path_factory.mktemp("drift")) as running:
        yield running


def _column(name: str, p: float) -> dict[str, Any]:
    return {
        "column": name,
        "method": "ks",
        "statistic": 1 - p,
        "p_value": p,
        "threshold": 0.05,
        "drifted": p < 0.05,
        "status": "ok",
        "n_cur": 500,
    }


def _add_windows(
    served: Served, model: str, ps: Sequence[dict[str, float]], alarms: Sequence[bool]
) -> None:
    """One hourly drift window per entry of ``ps`` (feature -> p-value), oldest first."""
    store = served.daemon.store
    store.ensure_model(name=model, task="binary", feature_names=FEATURES)
    start = datetime.now(UTC) - timedelta(hours=len(ps) + 1)
    for i, (by_feature, alarm) in enumerate(zip(ps, alarms, strict=True)):
        columns = [_column(f, p) for f, p in by_feature.items()]
        drifted = [c["column"] for c in columns if c["drifted"]]
        store.add_evaluation(
            model=model,
            version=None,
            kind="drift",
            status="drift" if alarm else "ok",
            window_start=start + timedelta(hours=i),
            window_end=start + timedelta(hours=i + 1),
            payload={
                "alarm": alarm,
                "drifted_share": len(drifted) / len(FEATURES),
                "drifted_columns": drifted,
                "rule": "share",
                "columns": columns,
            },
        )


def _drift(served: Served, model: str, **params: str) -> dict[str, Any]:
    r = httpx.get(
        f"{served.url}/v1/dashboard/models/{quote(model, safe='')}/drift",
        headers=served.auth("viewer"),
        params=params,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _page(served: Served, model: str) -> str:
    r = httpx.get(
        f"{served.url}/dashboard/models/{quote(model, safe='')}/drift",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.text


def test_latest_window_keeps_its_columns_when_an_older_window_of_its_column_alarmed(
    daemon: Served,
) -> None:
    """The newest heatmap column shows its newest alarming window; the latest window (which
    recovered) was not that one, and its payload used to be left unread."""
    quiet = dict.fromkeys(FEATURES, 0.6)
    loud = dict.fromkeys(FEATURES, 0.001)
    _add_windows(daemon, "recovered", [quiet, quiet, loud, quiet], [False, False, True, False])
    body = _drift(daemon, "recovered", max_points="2")
    latest = body["latest"]
    assert latest["alarm"] is False
    assert latest["rule"] == "share"
    assert [c["column"] for c in latest["columns"]] == FEATURES


def test_drift_page_lists_the_latest_window_s_features_when_columns_hold_two_windows(
    daemon: Served,
) -> None:
    """800 windows fill the page's 400 columns two at a time; the window before the latest
    alarmed, so the newest column shows it rather than the latest."""
    quiet = dict.fromkeys(FEATURES, 0.6)
    loud = dict.fromkeys(FEATURES, 0.001)
    n = 800
    ps = [loud if i == n - 2 else quiet for i in range(n)]
    _add_windows(daemon, "recovered-page", ps, [i == n - 2 for i in range(n)])
    page = _page(daemon, "recovered-page")
    table = page[page.index("<h2>Latest window") :]
    assert all(f"<td>{f}</td>" in table for f in FEATURES), table[:400]


def test_a_column_shows_the_highest_score_and_any_drift_of_all_its_windows(
    daemon: Served,
) -> None:
    """Four windows in two columns, no dataset alarm: each column used to copy its newest
    window, so x0's drift in window 0 vanished behind window 1's calm."""
    ps = [
        {"x0": 0.001, "x1": 0.5, "x2": 0.7},
        {"x0": 0.9, "x1": 0.2, "x2": 0.7},
        {"x0": 0.8, "x1": 0.6, "x2": 0.04},
        {"x0": 0.7, "x1": 0.6},
    ]
    _add_windows(daemon, "bucketed", ps, [False] * 4)
    body = _drift(daemon, "bucketed", max_points="2")
    first, second = body["columns"]
    assert body["features"] == FEATURES
    assert (first["windows"], second["windows"]) == (2, 2)
    assert first["scores"][:3] == pytest.approx([0.999, 0.8, 0.3])
    assert first["drifted"] == [True, False, False, False]
    assert second["scores"][:3] == pytest.approx([0.3, 0.4, 0.96])
    assert second["drifted"] == [False, False, True, False]
    assert first["scores"][3] is None and second["scores"][3] is None


def test_a_column_links_its_newest_alarming_window_and_counts_its_alarms(
    daemon: Served,
) -> None:
    loud = dict.fromkeys(FEATURES, 0.001)
    half = {"x0": 0.001, "x1": 0.001, "x2": 0.6, "x3": 0.6}
    quiet = dict.fromkeys(FEATURES, 0.6)
    _add_windows(daemon, "alarming", [loud, half] + [quiet] * 4, [True, True] + [False] * 4)
    body = _drift(daemon, "alarming", max_points="2")
    windows = daemon.daemon.store.list_evaluations("alarming", kind="drift", limit=10)
    newest_alarm = sorted(windows, key=lambda w: w.window_end)[1]
    column, calm = body["columns"]
    assert (column["windows"], column["alarms"]) == (3, 2)
    assert column["evaluation"] == newest_alarm.id
    assert column["alarm"] is True and column["status"] == "drift"
    assert column["drifted_share"] == 0.5
    assert column["window_end"] == newest_alarm.window_end.isoformat()
    assert column["drifted"] == [True] * 4
    assert (calm["windows"], calm["alarms"], calm["alarm"]) == (3, 0, False)
    assert calm["drifted"] == [False] * 4


def test_latest_report_link_quotes_the_model_name(daemon: Served) -> None:
    """Model names may hold `?`, `#`, `%` and spaces; unquoted, the link named model
    `credit` (the rest read as a query and a fragment)."""
    name = "credit?eu#2 %"
    _add_windows(daemon, name, [dict.fromkeys(FEATURES, 0.6)], [False])
    latest = _drift(daemon, name)["latest"]
    assert latest["report"] == f"/v1/models/credit%3Feu%232%20%25/evaluations/{latest['id']}/report"


def test_latest_window_table_shows_a_feature_name_with_a_t_at_index_10_verbatim(
    daemon: Served,
) -> None:
    name = "days_sinceTransaction_count"
    daemon.daemon.store.ensure_model(name="named", task="binary", feature_names=[name])
    now = datetime.now(UTC)
    daemon.daemon.store.add_evaluation(
        model="named",
        version=None,
        kind="drift",
        status="ok",
        window_start=now - timedelta(hours=1),
        window_end=now,
        payload={"alarm": False, "rule": "share", "columns": [_column(name, 0.5)]},
    )
    page = _page(daemon, "named")
    assert f"<td>{name}</td>" in page[page.index("<h2>Latest window") :]


def test_drift_page_renders_nonfinite_as_missing(daemon: Served) -> None:
    """A window an older writer stored with NaN and infinity (bulk-inserted: SQLAlchemy's
    JSON serializer allows them) showed ``nan`` and ``inf`` on the page, ``null`` in the
    JSON; both now say the value is missing."""
    daemon.daemon.store.ensure_model(name="nonfinite", task="binary", feature_names=FEATURES)
    now = datetime.now(UTC)
    columns = [
        {**_column("x0", 0.5), "statistic": math.nan, "p_value": math.nan},
        {**_column("x1", 0.5), "statistic": math.inf, "p_value": -math.inf},
    ]
    with daemon.daemon.store.engine.begin() as conn:
        conn.execute(
            evaluations.insert(),
            [
                {
                    "model": "nonfinite",
                    "version": None,
                    "kind": "drift",
                    "status": "ok",
                    "window_start": now - timedelta(hours=1),
                    "window_end": now,
                    "created_at": now,
                    "payload": {
                        "alarm": False,
                        "drifted_share": math.nan,
                        "drifted_columns": [],
                        "rule": "share",
                        "columns": columns,
                    },
                }
            ],
        )
    latest = _drift(daemon, "nonfinite")["latest"]
    assert [(c["statistic"], c["p_value"]) for c in latest["columns"]] == [(None, None)] * 2
    page = _page(daemon, "nonfinite")
    table = page[page.index("<h2>Latest window") :]
    rows = re.findall(r"<tr><td>(x[01])</td><td>ks</td><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert rows == [("x0", "—", "—"), ("x1", "—", "—")], table[:600]
    assert not re.search(r">-?(nan|inf)<", table)


def test_many_features_show_the_most_drifting_rows_in_the_models_order(daemon: Served) -> None:
    """400 features made a 35 MB page (a heatmap row per feature): the rows are bounded
    to the features that drifted or scored highest, kept in the model's order."""
    names = [f"f{i:03d}" for i in range(120)]
    store = daemon.daemon.store
    store.ensure_model(name="wide", task="binary", feature_names=names)
    start = datetime.now(UTC) - timedelta(hours=4)
    for i in range(3):
        ps = {n: 0.9 - 0.005 * (k % 50) for k, n in enumerate(names)}
        ps["f099"], ps["f007"] = 0.001, 0.2 if i else 0.01  # f007 drifted once
        columns = [_column(n, p) for n, p in ps.items()]
        store.add_evaluation(
            model="wide",
            version=None,
            kind="drift",
            status="ok",
            window_start=start + timedelta(hours=i),
            window_end=start + timedelta(hours=i + 1),
            payload={"alarm": False, "rule": "share", "columns": columns},
        )
    body = _drift(daemon, "wide", features="3")
    # drifted first (f007, f099), then the highest score: f049 (k % 50 == 49, p 0.655)
    assert body["features"] == ["f007", "f049", "f099"]
    assert body["features_total"] == 120
    assert all(len(c["scores"]) == 3 and len(c["drifted"]) == 3 for c in body["columns"])
    assert [c["drifted"] for c in body["columns"]][0] == [True, False, True]

    default = _drift(daemon, "wide")
    assert len(default["features"]) == 50 and default["features_total"] == 120
    page = _page(daemon, "wide")
    assert "Showing the 50 most drifting of 120 features" in page
    assert len(re.findall(r'text-anchor="end">(f\d{3})</text>', page)) == 50
    r = httpx.get(
        f"{daemon.url}/dashboard/models/wide/drift",
        params={"features": "3"},
        cookies=session_cookie(daemon.url, daemon.tokens["viewer"]),
        timeout=60,
    )
    shown = re.findall(r'text-anchor="end">(f\d{3})</text>', r.text)
    assert r.status_code == 200 and shown == ["f007", "f049", "f099"]
    assert "Show 6</a>" in r.text
    r = httpx.get(
        f"{daemon.url}/dashboard/models/wide/drift",
        params={"features": "0"},
        cookies=session_cookie(daemon.url, daemon.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 400 and "`features` must be an integer in [1, 1000]" in r.text
