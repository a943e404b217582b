"""The dashboard's A/B page under ``/dashboard/models/{model}/ab``: the live split's
sample-ratio check and every comparison test with its always-valid interval by look.
It renders exactly the JSON ``/v1/dashboard/models/{model}/ab`` serves
(:func:`tunewatch.dashboard._data.ab_results`).
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tunewatch._auth import Principal

from . import _data, _svg
from ._html import e, model_url, shell, status, table
from ._limit import PageRoute
from ._session import page_number, page_parameter, render_page
from ._sources import sources

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=PageRoute)


_TEST_LIMIT = page_number(0, _data.MAX_TESTS_SHOWN)


@router.get("/models/{model}/ab")
def ab_page(model: str, request: Request, limit: str | None = None) -> Response:
    def render(who: Principal) -> str:
        shown = (
            _data.AB_TESTS
            if limit is None
            else page_parameter(
                "limit", limit, _TEST_LIMIT, f"an integer in [0, {_data.MAX_TESTS_SHOWN}]"
            )
        )
        data = _data.ab_results(sources(request), model, limit=shown)
        parts = []
        srm = data["srm"]
        if srm is not None:
            parts.append(
                "<p>Live split (SRM): "
                + status(
                    not srm["mismatch"],
                    f"{'MISMATCH' if srm['mismatch'] else 'ok'} — {srm['n_champion']} champion / "
                    f"{srm['n_challenger']} challenger at {srm['percent']}%, "
                    f"p={srm['p_value']}",
                )
                + "</p>"
            )
        else:
            parts.append('<p class="muted">Live split (SRM): no split configured or checked.</p>')
        if not data["tests_total"]:
            parts.append('<p class="muted">No comparisons yet.</p>')
        elif len(data["tests"]) < data["tests_total"]:
            wider = min(_data.MAX_TESTS_SHOWN, 2 * max(shown, 10))
            more = (
                f' <a class="more" href="{escape(model_url(model, "ab", {"limit": str(wider)}))}">'
                f"Show the {wider} newest</a>."
                if wider > shown
                else ""
            )
            parts.append(
                f'<p class="muted shown">Showing {len(data["tests"])} of '
                f"{data['tests_total']} tests: the {shown} newest and the current champion's "
                f"open ones (<code>?limit=</code>, 0 to {_data.MAX_TESTS_SHOWN}).{more}</p>"
            )
        for t in data["tests"]:
            looks = [
                _svg.Look(
                    n=float(p["n"]),
                    estimate=p["estimate"],
                    low=p["ci_low"],
                    high=p["ci_high"],
                    decision=p["decision"],
                )
                for p in t["series"]
            ]
            chart = _svg.interval_chart(
                looks,
                decided_at=t["decision_look"],
                # the test's id and kind: two tests of one pair had one accessible name
                label=f"Test #{t['id']} ({t['kind']}): v{t['challenger_version']} vs "
                f"v{t['champion_version']}: estimate and always-valid interval by n",
                marks=t["status"] == "open",
            )
            guard = t["guardrails"]
            guard_html = (
                '<span class="muted">— (not checked now: decided, or not the current '
                "champion's test)</span>"
                if guard is None
                else status(guard["passed"], "passed" if guard["passed"] else "failed")
                + "".join(f"<br>{escape(v)}" for v in guard["violations"])
            )
            last = t["series"][-1] if t["series"] else {}
            summary = table(
                [
                    "kind",
                    "status",
                    "decision",
                    "n",
                    "looks",
                    "estimate",
                    "interval",
                    "p (adjusted)",
                    "correction",
                    "guardrails",
                ],
                [
                    [
                        e(t["kind"]),
                        e(t["status"]),
                        f'<strong class="decision">{e(t["decision"])}</strong>',
                        e(t["n"]),
                        e(t["looks"]),
                        e(last.get("estimate")),
                        f"[{e(last.get('ci_low'))}, {e(last.get('ci_high'))}]",
                        f"{e(last.get('p_value'))} ({e(last.get('adjusted_p_value'))})",
                        e(t["correction"] or "none"),
                        guard_html,
                    ]
                ],
            )
            parts.append(
                f'<section class="comparison" data-test="{t["id"]}" '
                f'data-kind="{escape(str(t["kind"]))}" '
                f'data-challenger="{t["challenger_version"]}">'
                f"<h2>{_test_heading(t)}</h2>{summary}{chart}"
                f'<p class="muted">{len(t["series"])} of {t["series_total"]} looks drawn'
                f"{'' if t['status'] == 'open' else ' (decided: its line and band, no marks)'}; "
                f"{_estimate_note(t)}</p></section>"
            )
        return shell(f"{model}: A/B results", "".join(parts), who=who, model=model, tab="ab")

    return render_page(request, render)


def _test_heading(t: dict[str, Any]) -> str:
    """A comparison test's heading. A rollback watch keeps the champion it follows in the
    challenger slot and the champion that one replaced in the champion slot (see
    :class:`~tunewatch.comparison.RollbackWatch`): it is named by those roles."""
    if t["kind"] == "rollback_watch":
        return (
            f"Test #{t['id']} (rollback watch): v{t['challenger_version']} (promoted champion) "
            f"vs v{t['champion_version']} (replaced champion)"
        )
    return (
        f"Test #{t['id']}: v{t['challenger_version']} (challenger) vs "
        f"v{t['champion_version']} (champion)"
    )


def _estimate_note(t: dict[str, Any]) -> str:
    """What the sign of a test's estimate means: always challenger slot minus champion
    slot, for a rollback watch the promoted champion's loss minus the replaced one's."""
    if t["kind"] == "rollback_watch":
        promoted, replaced = t["challenger_version"], t["champion_version"]
        return (
            f"estimate is v{promoted} (promoted) minus v{replaced} (replaced): a loss "
            "difference, below zero favours the promoted champion, above zero the replaced "
            f"one (a decision there rolls back to v{replaced})."
        )
    return (
        "estimate is challenger minus champion (loss difference: below zero favours "
        "the challenger; for DeLong an AUC difference: above zero favours the challenger)."
    )
