"""The dashboard's history pages: tuning jobs and studies, events and the audit log (with
filters as query parameters, e.g. ``?type=drift_detected``)."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from tunewatch._auth import Principal
from tunewatch._objective_display import configured_objective, score
from tunewatch._version_metadata import finite_float
from tunewatch.api._context import context

from . import _data, _svg
from ._html import e, fmt, model_url, pre, shell, table, tag_list
from ._limit import PageRoute
from ._session import page_number, page_parameter, render_page
from ._sources import sources

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=PageRoute)

# -- tuning -----------------------------------------------------------------------------------


_VERSION_LIMIT = page_number(1, _data.MAX_VERSIONS_SHOWN)


def _versions_shown(model: str, data: dict[str, Any]) -> str:
    """How many versions the table shows of how many, with a link to more."""
    shown, total, limit = len(data["versions"]), data["versions_total"], data["limit"]
    if shown >= total:
        return ""
    wider = min(_data.MAX_VERSIONS_SHOWN, 2 * limit)
    more = (
        f' <a class="more" href="{escape(model_url(model, "tuning", {"limit": str(wider)}))}">'
        f"Show the {wider} newest</a>."
        if wider > limit
        else ""
    )
    return (
        f'<p class="muted shown">Showing {shown} of {total} versions: the newest '
        f"(<code>?limit=</code>, 1 to {_data.MAX_VERSIONS_SHOWN}).{more}</p>"
    )


@router.get("/models/{model}/tuning")
def tuning_page(model: str, request: Request, limit: str | None = None) -> Response:
    def render(who: Principal) -> str:
        shown = (
            _data.TUNING_VERSIONS
            if limit is None
            else page_parameter(
                "limit", limit, _VERSION_LIMIT, f"an integer in [1, {_data.MAX_VERSIONS_SHOWN}]"
            )
        )
        src = sources(request)
        configured = configured_objective(context(request).runtime.config, src.store, model)
        data = _data.tuning(src, model, limit=shown, configured_objective=configured)
        job_rows = [
            [
                e(f"#{j['id']}"),
                e(j["status"]),
                pre(j["trigger"]),
                e(j["study"]),
                e(j["progress"].get("trials")),
                e(
                    _best(
                        j["objective"],
                        j["best_score"],
                        (j["result"] or j["progress"]).get("best_value"),
                    )
                ),
                e(j["created_at"]),
                e(j["finished_at"]),
                e(j["error"]),
            ]
            for j in data["jobs"]
        ]
        charted = [j for j in data["jobs"] if j["trials"]]
        # one objective this release knows for every curve: its values; else the losses
        named = {j["objective"] for j in charted}
        objective = next(iter(named)) if len(named) == 1 else None
        curves = [
            _svg.Series(
                name=str(j["study"])[-24:],
                x=[float(t["number"]) for t in j["trials"]],
                y=[
                    t["best"] if objective is None else score(t["best"], objective)
                    for t in j["trials"]
                ],
            )
            for j in charted
        ]
        version_rows = [
            [
                e(f"v{v['version']}"),
                e(v["stage"]),
                tag_list(v["tags"]) or '<span class="muted">—</span>',
                e(v["job"]),
                e(_best(v["objective"], v["best_score"], v["best_value"])),
                e(v["n_trials"]),
                e(v["stopped_by"]),
                pre(_folds(v)),
                pre(v["warm_start_plan"]),
            ]
            for v in data["versions"]
        ]
        body = (
            "<h2>Jobs</h2>"
            + table(
                [
                    "job",
                    "status",
                    "trigger",
                    "study",
                    "trials",
                    "best",
                    "created",
                    "finished",
                    "error",
                ],
                job_rows,
            )
            + "<h2>Best value by trial</h2>"
            + _svg.line_chart(
                curves,
                x_label="trial",
                y_label=f"best CV {objective or 'loss'}",
                label="best value by trial",
            )
            + "<h2>Versions</h2>"
            + _versions_shown(model, data)
            + table(
                [
                    "version",
                    "stage",
                    "tags",
                    "job",
                    "best value",
                    "trials",
                    "stopped by",
                    "fold scores",
                    "warm-start plan",
                ],
                version_rows,
            )
        )
        return shell(f"{model}: tuning history", body, who=who, model=model, tab="tuning")

    return render_page(request, render)


def _best(objective: str | None, best_score: float | None, loss: Any) -> str | None:
    """A job's or version's best CV figure, as its objective's value and name
    (``roc_auc 0.745``), or the ``loss`` it stored (``loss 0.254``) when its objective is
    unknown; ``None`` for none."""
    if best_score is not None:
        return f"{objective} {fmt(best_score)}"
    return None if finite_float(loss) is None else f"loss {fmt(loss)}"


def _folds(version: dict[str, Any]) -> Any:
    """A version's fold scores as its objective's values, or the losses it stored."""
    oriented = version["objective_fold_scores"]
    return version["fold_scores"] if oriented is None else oriented


# -- events and audit -------------------------------------------------------------------------

# the chip of a group's filter in force is announced by screen readers, not only styled
# (class "current"); "true", not "page": each chip links to a view of the same list
CURRENT_CHIP = ' aria-current="true"'


def _chips(
    model: str, key: str, values: list[str], current: str | None, other: dict[str, str | None]
) -> str:
    links = [
        f'<a href="{escape(model_url(model, "events", {**other, key: None}))}" '
        f'class="{"" if current else "current"}"{"" if current else CURRENT_CHIP}>all</a>'
    ]
    for v in values:
        url = model_url(model, "events", {**other, key: v})
        links.append(
            f'<a href="{escape(url)}" class="{"current" if v == current else ""}" '
            f'data-filter="{escape(key)}" data-value="{escape(v)}"'
            f"{CURRENT_CHIP if v == current else ''}>{escape(v)}</a>"
        )
    return f'<p class="chips" data-filter-group="{escape(key)}">{escape(key)}: {"".join(links)}</p>'


_FILTER: TypeAdapter[str | None] = TypeAdapter(Annotated[str | None, Field(max_length=200)])
_PAGE_LIMIT = page_number(1, 1000)


@router.get("/models/{model}/events")
def events_page(
    model: str,
    request: Request,
    type: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: str | None = None,
) -> Response:
    def render(who: Principal) -> str:
        for name, raw in (("type", type), ("action", action), ("actor", actor)):
            page_parameter(name, raw, _FILTER, "at most 200 characters")
        rows = (
            100
            if limit is None
            else page_parameter("limit", limit, _PAGE_LIMIT, "an integer in [1, 1000]")
        )
        data = _data.events(
            sources(request), model, type=type, action=action, actor=actor, limit=rows
        )
        filters = {"type": type, "action": action, "actor": actor}
        event_rows = [
            [
                e(ev["id"]),
                f'<span class="event-type">{e(ev["type"])}</span>',
                e(ev["created_at"]),
                pre(ev["payload"]),
            ]
            for ev in data["events"]
        ]
        audit_rows = [
            [
                e(a["id"]),
                e(a["at"]),
                e(a["actor"]),
                f'<span class="audit-action">{e(a["action"])}</span>',
                e(a["target"]),
                pre(a["details"]),
            ]
            for a in data["audit"]
        ]
        body = (
            "<h2>Events</h2>"
            + _chips(model, "type", data["event_types"], type, filters)
            + table(["id", "type", "at", "payload"], event_rows, cls="events")
            + "<h2>Audit log</h2>"
            + _chips(model, "action", data["audit_actions"], action, filters)
            + _chips(model, "actor", data["audit_actors"], actor, filters)
            + table(["id", "at", "actor", "action", "target", "details"], audit_rows, cls="audit")
        )
        return shell(f"{model}: events and audit", body, who=who, model=model, tab="events")

    return render_page(request, render)
