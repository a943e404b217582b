"""HTML building blocks for the dashboard: the page shell, tables, formatting.

Pages carry no JavaScript; the Content-Security-Policy forbids scripts outright.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import HTMLResponse

from tunewatch._auth import Principal

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
TABS = (
    ("ab", "A/B results"),
    ("drift", "Drift"),
    ("decay", "Decay"),
    ("telemetry", "Latency & memory"),
    ("tuning", "Tuning"),
    ("events", "Events & audit"),
)
# the current tab is announced by screen readers, not only styled (class "current"):
# WCAG 1.3.1, information conveyed by presentation is available in the markup too
CURRENT_TAB = ' aria-current="page"'
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:12px}
header form{margin:0}
main{padding:16px;max-width:1100px}
nav.tabs a{display:inline-block;padding:4px 10px;margin-right:4px;border:1px solid #ccc;
border-radius:4px;text-decoration:none;color:#23395d;background:#fff}
nav.tabs a.current{background:#23395d;color:#fff}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f0f3f7}
.ok{color:#16794c}.bad{color:#b3261e;font-weight:600}.muted{color:#666}
section{margin-bottom:28px}
svg.chart{background:#fff;border:1px solid #ddd;font-size:11px}
details.chart-data{overflow-x:auto;max-width:720px;margin:4px 0 12px}
svg rect.drifted{stroke:#000;stroke-width:1}
svg .grid{stroke:#eee}svg .axis{stroke:#888}svg .label{fill:#555}
svg .band{fill:#1f77b4;fill-opacity:.18;stroke:none}
svg .estimate{fill:none;stroke:#1f77b4;stroke-width:1.5}
svg .zero{stroke:#444;stroke-dasharray:4 3}
svg .look{fill:#1f77b4}svg .ci{stroke:#1f77b4;stroke-opacity:.35}
svg .decision-marker line{stroke:#b3261e;stroke-dasharray:2 2}
svg .decision-marker circle{fill:none;stroke:#b3261e;stroke-width:2}
svg .decision-marker text{fill:#b3261e}
svg .series{fill:none;stroke-width:1.5}
.chips a{display:inline-block;margin:2px;padding:1px 8px;border-radius:10px;background:#e8edf4;
text-decoration:none;color:#23395d;font-size:12px}
.chips a.current{background:#23395d;color:#fff}
pre{white-space:pre-wrap;font-size:12px;margin:0;max-width:520px}
.tag{display:inline-block;margin:1px 2px;padding:0 6px;border-radius:8px;background:#eef1e4;
font-size:12px;max-width:360px;overflow-wrap:anywhere}
code{font-size:12px}
"""


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: numbers rounded, None as an em dash, timestamps shortened.

    NaN and the infinities (in payloads older writers stored) are missing values, an em
    dash like None, as the JSON endpoints answer them ``null``; no page means "inf"."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}g}"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:  # only an ISO timestamp is shortened, not any name with a T at index 10
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return value
    if isinstance(value, dict | list):
        return json.dumps(_finite(value), sort_keys=True, default=str)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity at any depth as None (``null``, not the
    ``NaN`` no JSON reader takes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def e(value: Any, digits: int = 4) -> str:
    return escape(fmt(value, digits))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table; cells are already-escaped HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return (
        f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def pre(value: Any) -> str:
    if value is None or value == {} or value == []:
        return '<span class="muted">—</span>'
    text = escape(json.dumps(_finite(value), indent=1, sort_keys=True, default=str))
    if len(text) > 400:  # long documents (warm-start plans) fold away, no script needed
        return f"<details><summary>{len(text)} characters</summary><pre>{text}</pre></details>"
    return f"<pre>{text}</pre>"


def tag_list(tags: Mapping[str, str]) -> str:
    """A version's tags as ``key=value`` chips (empty for none), escaped: a value may hold
    any printable text (:mod:`tunewatch._tag_rules`), ``<`` and quotes included. Each
    value is its own bidi isolate (``<bdi>``), so a right-to-left value cannot reorder its
    key, the next tag or the version number beside it."""
    chips = (
        f'<span class="tag">{escape(key)}=<bdi>{escape(value)}</bdi></span>'
        for key, value in tags.items()
    )
    return f'<span class="tags">{"".join(chips)}</span>' if tags else ""


def status(ok: bool | None, text: str) -> str:
    cls = "muted" if ok is None else ("ok" if ok else "bad")
    return f'<span class="{cls}">{escape(text)}</span>'


def model_url(model: str, tab: str, query: Mapping[str, str | None] | None = None) -> str:
    url = f"/dashboard/models/{quote(model, safe='')}/{tab}"
    params = {k: v for k, v in (query or {}).items() if v}
    return f"{url}?{urlencode(params)}" if params else url


def shell(
    title: str, body: str, *, who: Principal | None, model: str | None = None, tab: str = ""
) -> str:
    nav = ""
    if model is not None:
        links = "".join(
            f'<a href="{escape(model_url(model, key))}" class="{"current" if key == tab else ""}"'
            f"{CURRENT_TAB if key == tab else ''}>{escape(name)}</a>"
            for key, name in TABS
        )
        nav = f'<nav class="tabs" aria-label="model pages">{links}</nav>'
    user = ""
    if who is not None:
        user = (
            f'<span class="who">{escape(who.name)} ({escape(who.role)})</span>'
            '<form method="post" action="/dashboard/logout"><button type="submit" '
            'class="logout">Sign out</button></form>'
        )
    heading = f"<h1>{escape(title)}</h1>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{escape(title)} · tunewatch</title><link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head><body>"
        f'<header><a href="/dashboard/">tunewatch</a>{user}</header>'
        f"<main>{heading}{nav}{body}</main></body></html>"
    )


def respond(html: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def error_page(status_code: int, message: str, who: Principal | None) -> HTMLResponse:
    title = {
        400: "Bad request",
        403: "Forbidden",
        404: "Not found",
        429: "Busy",
        500: "Server error",
    }.get(status_code, "Unavailable")
    body = f'<p class="bad" data-status="{status_code}">{escape(message)}</p>'
    body += '<p><a href="/dashboard/">Back to the overview</a></p>'
    return respond(shell(title, body, who=who), status_code)
