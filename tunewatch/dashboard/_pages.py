"""The dashboard's model pages under ``/dashboard/``: overview, drift, decay,
latency and memory. Each renders exactly the JSON its ``/v1/dashboard`` endpoint serves
(:mod:`tunewatch.dashboard._data`), as tables and server-side SVG; the A/B page is
:mod:`tunewatch.dashboard._ab_page`.

Pages hold no action buttons: changing anything goes through the token-authenticated API.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tunewatch._auth import Principal
from tunewatch._drift_report import DRIFT_REPORT_HEADERS
from tunewatch.api._context import context
from tunewatch.store import MAX_ID

from . import _data, _series, _svg
from ._html import e, model_url, pre, shell, status, table, tag_list
from ._limit import PageRoute
from ._session import page_number, page_parameter, render_page
from ._sources import sources

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=PageRoute)

# -- overview ---------------------------------------------------------------------------------


@router.get("/")
def overview_page(request: Request) -> Response:
    def render(who: Principal) -> str:
        data = _data.overview(sources(request))
        rows = []
        for m in data["models"]:
            link = f'<a href="{escape(model_url(m["name"], "ab"))}">{escape(m["name"])}</a>'
            champ = m["champion"]
            evals = "<br>".join(
                f"{escape(k)}: "
                f"{status(not v['alarm'], v['status'] + (' (alarm)' if v['alarm'] else ''))} "
                f'<span class="muted">{e(v["window_end"])}</span>'
                + (f'<br><span class="muted">{e(v["decision"])}</span>' if v["decision"] else "")
                for k, v in sorted(m["latest_evaluations"].items())
            )
            events = "<br>".join(
                f'{escape(ev["type"])} <span class="muted">{e(ev["created_at"])}</span>'
                for ev in m["recent_events"]
            )
            jobs = "<br>".join(
                f"#{j['id']} {escape(j['status'])} ({escape(str(j['trigger'].get('event', '')))})"
                for j in m["active_jobs"]
            )
            rows.append(
                [
                    link,
                    e(m["task"]),
                    _version(champ) if champ else "—",
                    "<br>".join(_version(c) for c in m["challengers"]) or "—",
                    evals or "—",
                    status(not m["alarms"], ", ".join(m["alarms"]) or "none"),
                    events or "—",
                    jobs or "—",
                ]
            )
        body = table(
            [
                "model",
                "task",
                "champion",
                "challengers",
                "last evaluations",
                "alarms",
                "recent events",
                "active jobs",
            ],
            rows,
            cls="models",
        )
        return shell("Models", body, who=who)

    return render_page(request, render)


def _version(brief: dict[str, Any]) -> str:
    """A listed version: its number and its tags."""
    return f"v{brief['version']} {tag_list(brief['tags'])}".rstrip()


@router.get("/models/{model}")
def model_page(model: str) -> Response:
    return RedirectResponse(model_url(model, "ab"), status_code=303)


# -- drift ------------------------------------------------------------------------------------


_FEATURES = page_number(1, _series.MAX_DRIFT_FEATURES)


def _features(raw: str | None) -> int:
    """The drift page's and its report page's ``?features=``: how many features the
    heatmap shows and the report of a window shows (the API's report route takes the
    same range), :data:`~tunewatch.dashboard._series.DRIFT_FEATURES` when absent."""
    if raw is None:
        return _series.DRIFT_FEATURES
    return page_parameter(
        "features", raw, _FEATURES, f"an integer in [1, {_series.MAX_DRIFT_FEATURES}]"
    )


def _report_url(model: str, evaluation_id: int, features: int) -> str:
    """The report page of a drift window, of as many features as the drift page shows:
    a heatmap of the 200 most drifting opened a report of the default 50."""
    url = f"/dashboard/models/{quote(model, safe='')}/drift/{evaluation_id}/report"
    return url if features == _series.DRIFT_FEATURES else f"{url}?features={features}"


def _features_shown(model: str, data: dict[str, Any], limit: int) -> str:
    """How many features the heatmap shows of how many, with a link to more."""
    shown, total = len(data["features"]), data["features_total"]
    if shown >= total:
        return ""
    wider = min(_series.MAX_DRIFT_FEATURES, total, 2 * limit)
    more = (
        f' <a class="more" href="{escape(model_url(model, "drift", {"features": str(wider)}))}">'
        f"Show {wider}</a>."
        if wider > limit
        else ""
    )
    return (
        f'<p class="muted shown">Showing the {shown} most drifting of {total} features '
        "(drifted more often than chance in a column first, then by highest share of "
        "windows drifted, then by highest score), in the model's order "
        f"(<code>?features=</code>, 1 to {_series.MAX_DRIFT_FEATURES}).{more}</p>"
    )


@router.get("/models/{model}/drift")
def drift_page(model: str, request: Request, features: str | None = None) -> Response:
    def render(who: Principal) -> str:
        limit = _features(features)
        data = _series.drift(sources(request), model, features=limit)
        cols = data["columns"]
        heat_rows = range(len(data["features"]))
        chart = _svg.heatmap(
            data["features"],
            [str(c["window_end"])[:16].replace("T", " ") for c in cols],
            [[c["shares"][r] for c in cols] for r in heat_rows],
            flagged=[[c["beyond_chance"][r] for c in cols] for r in heat_rows],
            tips=[[_heat_tip(c, r) for c in cols] for r in heat_rows],
            label="share of each column's windows in which the feature drifted",
        )
        parts = [
            f"<p>{data['windows_total']} drift windows in {len(cols)} columns; colour is the "
            "share of the column's windows in which the feature drifted (white 0 … red 1: "
            "a feature that did not change drifts by chance in about 1 window of 20, at the "
            "tests' level); outlined cells drifted more often than chance explains (a "
            "one-sided binomial test at that level: a column of one window is outlined when "
            "it drifted). The tooltip gives the counts and the highest drift score "
            "(1 - p, or statistic / 2x threshold).</p>",
            _features_shown(model, data, limit),
            chart,
        ]
        latest = data["latest"]
        if latest is not None:
            report = _report_url(model, latest["id"], limit)
            rows = [
                [
                    e(c.get("column")),
                    e(c.get("method")),
                    e(c.get("statistic")),
                    e(c.get("p_value")),
                    e(c.get("threshold")),
                    _drift_cell(c),
                    e(c.get("n_cur")),
                ]
                for c in latest["columns"]
            ]
            parts.append(
                f"<h2>Latest window (evaluation #{latest['id']}, {e(latest['window_end'])})</h2>"
                "<p>Status "
                + status(
                    not latest["alarm"],
                    f"{latest['status']}{' (alarm)' if latest['alarm'] else ''}",
                )
                + "; rule "
                f"{e(latest['rule'])}. "
                f'<a class="report" href="{escape(report)}">evidently report</a> '
                f"(API: <code>{escape(latest['report'])}</code>)</p>"
                + _latest_shown(len(rows), latest["columns_total"])
                + table(
                    ["feature", "method", "statistic", "p-value", "threshold", "drift", "n"], rows
                )
            )
        return shell(f"{model}: drift", "".join(parts), who=who, model=model, tab="drift")

    return render_page(request, render)


def _latest_shown(shown: int, total: int) -> str:
    """How many of the latest window's columns its table shows, when not all."""
    if shown >= total:
        return ""
    return (
        f'<p class="muted columns-shown">{shown} of {total} columns shown: the heatmap\'s '
        "features, the prediction and the label.</p>"
    )


def _heat_tip(column: dict[str, Any], row: int) -> str:
    """A heatmap cell's tooltip: how many of its windows drifted the feature, against
    chance, and the highest score among them."""
    tested = column["tested"][row]
    if not tested:
        return "not tested"
    drifted = round(column["shares"][row] * tested)
    highest = column["scores"][row]
    return f"{drifted} of {tested} windows drifted (chance {column['chance'][row]:.0%})" + (
        "" if highest is None else f"; highest score {highest:.3g}"
    )


def _drift_cell(column: dict[str, Any]) -> str:
    """A tested column's verdict; one the window could not test (constant, too few rows)
    is muted with its reason, not an "ok" it never earned."""
    if column.get("status") == "insufficient_data":
        reason = column.get("reason")
        return status(None, f"insufficient data: {reason}" if reason else "insufficient data")
    return status(not column.get("drifted"), "drifted" if column.get("drifted") else "ok")


_ROW_ID = page_number(0, MAX_ID)


@router.get("/models/{model}/drift/{evaluation_id}/report")
def drift_report_page(
    model: str, evaluation_id: str, request: Request, features: str | None = None
) -> Response:
    """The evidently report of a drift window, for a session (the API route wants a
    bearer header), of at most ``?features=`` features as the API route's: the stored
    report of the default 50, another built for the request."""

    def render(who: Principal) -> str:
        row_id = page_parameter(
            "evaluation_id", evaluation_id, _ROW_ID, f"an integer in [0, {MAX_ID}]"
        )
        return context(request).evaluator.drift_report(model, row_id, features=_features(features))

    # it takes the query the API route it stands for takes: `features`
    return render_page(
        request, render, answer=lambda html: HTMLResponse(html, headers=DRIFT_REPORT_HEADERS)
    )


# -- decay ------------------------------------------------------------------------------------


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _time_series(points: list[dict[str, Any]], x_key: str, **keys: str) -> list[_svg.Series]:
    xs = [_ts(p.get(x_key)) for p in points]
    kept = [i for i, x in enumerate(xs) if x is not None]
    return [
        _svg.Series(
            name=name, x=[float(xs[i] or 0.0) for i in kept], y=[points[i].get(key) for i in kept]
        )
        for name, key in keys.items()
    ]


@router.get("/models/{model}/decay")
def decay_page(model: str, request: Request) -> Response:
    def render(who: Principal) -> str:
        data = _series.decay(sources(request), model)
        parts = []
        trend = data["decay"]
        if trend is None:
            parts.append('<p class="muted">No decay evaluation yet.</p>')
        else:
            parts.append(
                "<h2>Decay trend</h2>"
                + table(
                    [
                        "status",
                        "objective",
                        "threshold",
                        "slope/day",
                        "current",
                        "crossing",
                        "retune every (days)",
                    ],
                    [
                        [
                            status(trend["status"] != "decaying", str(trend["status"])),
                            e(trend["objective"]),
                            e(trend["threshold"]),
                            e(trend["slope_per_day"]),
                            e(trend["current_estimate"]),
                            e(trend["projected_crossing"]),
                            e(trend["recommended_retune_interval_days"]),
                        ]
                    ],
                )
                + _svg.line_chart(
                    _time_series(trend["windows"], "end", objective="value"),
                    x_label="window end (UTC)",
                    y_label=str(trend["objective"] or "objective"),
                    label="objective per window",
                    x_time=True,
                )
            )
        parts.append(
            "<h2>Label-free estimate vs realised</h2>"
            + _svg.line_chart(
                _time_series(
                    data["estimate"],
                    "window_end",
                    estimated="estimated",
                    realised="realised",
                    ci_low="ci_low",
                    ci_high="ci_high",
                ),
                x_label="window end (UTC)",
                y_label="accuracy",
                label="estimated and realised accuracy",
                x_time=True,
            )
            + "<h2>Label coverage</h2>"
            + _svg.line_chart(
                _time_series(data["labels"], "window_end", coverage="coverage"),
                x_label="window end (UTC)",
                y_label="coverage",
                label="share of scored rows with a label",
                x_time=True,
            )
        )
        if data["estimate"]:
            last = data["estimate"][-1]
            parts.append(
                table(
                    ["latest window", "estimated", "interval", "realised", "n", "labelled"],
                    [
                        [
                            e(last["window_end"]),
                            e(last["estimated"]),
                            f"[{e(last['ci_low'])}, {e(last['ci_high'])}]",
                            e(last["realised"]),
                            e(last["n"]),
                            e(last["n_labelled"]),
                        ]
                    ],
                )
            )
        return shell(f"{model}: decay", "".join(parts), who=who, model=model, tab="decay")

    return render_page(request, render)


# -- latency and memory -----------------------------------------------------------------------


_TIMED_AS = (
    '<p class="muted">Timed as champion: on the request path. As challenger: a shadow\'s '
    "runs in the deprioritised worker thread (several times slower for the same artefact), "
    "a live split's arm, requests naming the version. Compare rows timed alike; promotion's "
    "latency guardrails replay both versions alike.</p>"
)


@router.get("/models/{model}/telemetry")
def telemetry_page(model: str, request: Request) -> Response:
    def render(who: Principal) -> str:
        data = _series.telemetry(sources(request), model)
        current = data["current"]
        groups = [f"v{c['version']} {str(c['hyperparameter_set'])[:8]}" for c in current]
        ms = [
            _svg.Series(
                name=q,
                x=list(range(len(current))),
                y=[None if c[f"{q}_s"] is None else c[f"{q}_s"] * 1000 for c in current],
            )
            for q in ("p50", "p90", "p99")
        ]
        mem = [
            _svg.Series(
                name="load memory (MiB)",
                x=list(range(len(current))),
                y=[None if not c["memory_bytes"] else c["memory_bytes"] / 2**20 for c in current],
            )
        ]
        rows = [
            [
                e(f"v{c['version']}"),
                e(c["stage"]),
                e(c["role"]),
                f'<code title="{e(c["hyperparameter_set"])}">'
                f"{e(str(c['hyperparameter_set'])[:12])}</code>",
                pre(c["hyperparameters"]),
                e(None if c["p50_s"] is None else c["p50_s"] * 1000),
                e(None if c["p90_s"] is None else c["p90_s"] * 1000),
                e(None if c["p99_s"] is None else c["p99_s"] * 1000),
                e(c["n"]),
                e(None if not c["memory_bytes"] else c["memory_bytes"] / 2**20),
            ]
            for c in current
        ]
        versions = data["history_versions"]
        left_out = data["versions_left_out"]
        history = [
            _svg.Series(
                name=f"v{v} p99 (ms)",
                x=[_ts(h["window_end"]) or 0.0 for h in data["history"]],
                y=[
                    None if h["p99_s"].get(v) is None else h["p99_s"][v] * 1000
                    for h in data["history"]
                ],
            )
            for v in versions
        ]
        body = (
            table(
                [
                    "version",
                    "stage",
                    "timed as",
                    "hyperparameter set",
                    "hyperparameters",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "n",
                    "memory MiB",
                ],
                rows,
            )
            + _TIMED_AS
            + _svg.bar_chart(groups, ms, y_label="latency (ms)", label="latency per set")
            + _svg.bar_chart(groups, mem, y_label="MiB", label="load memory per set")
            + "<h2>p99 latency over time</h2>"
            + _left_out(left_out)
            + _svg.line_chart(
                history,
                x_label="window end (UTC)",
                y_label="ms",
                label="p99 latency per version",
                x_time=True,
            )
        )
        return shell(f"{model}: latency and memory", body, who=who, model=model, tab="telemetry")

    return render_page(request, render)


def _left_out(count: int) -> str:
    """The note under the p99 chart's title: how many versions it does not draw."""
    if not count:
        return ""
    what = "version served in range is" if count == 1 else "versions served in range are"
    return (
        f'<p class="muted left-out">{count} other {what} not drawn: the chart shows the '
        "versions of the newest window and the most recently served others, "
        f"{_series.HISTORY_LINES} at most.</p>"
    )
