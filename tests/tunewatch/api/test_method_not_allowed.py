"""Every 405 names the methods its path takes in ``Allow`` (RFC 9110 §15.5.6: the
origin server must send one), all of them where two routes share a path (``GET`` and
``POST /v1/models/{m}/versions``). The error handler rebuilt Starlette's 405 as JSON
without its headers, and the inference front's own 405 set none."""

from __future__ import annotations

import re

import httpx

from tests.tunewatch.conftest import MODEL, Running

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# routes the schema does not describe
UNDESCRIBED = [
    "/openapi.json",
    "/dashboard/",
    "/dashboard/login",
    "/dashboard/logout",
    "/dashboard/models/{model}",
    "/dashboard/models/{model}/drift/{evaluation_id}/report",
]


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template.replace("{model}", MODEL))


def test_every_405_lists_every_method_its_path_takes_in_allow(running: Running) -> None:
    with httpx.Client(base_url=running.url, timeout=60) as client:
        schema = client.get("/openapi.json").json()["paths"]
        templates = {**{t: {m.upper() for m in ops} for t, ops in schema.items()}}
        templates.update({t: set() for t in UNDESCRIBED})
        wrong = {}
        for template, described in sorted(templates.items()):
            # no token: a method the path takes answers 401 and does nothing
            answers = {m: client.request(m, _concrete(template)) for m in METHODS}
            taken = {m for m, r in answers.items() if r.status_code != 405}
            refused = {m: r for m, r in answers.items() if r.status_code == 405}
            if not described <= taken or not refused:
                wrong[template] = f"takes {sorted(taken)}, described {sorted(described)}"
            for method, r in refused.items():
                allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
                code = r.json()["code"] if method != "HEAD" else "method_not_allowed"
                if allow != taken or code != "method_not_allowed":
                    wrong[f"{method} {template}"] = f"Allow {r.headers.get('allow')!r}, {code}"
    assert wrong == {}
