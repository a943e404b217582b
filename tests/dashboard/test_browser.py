"""The dashboard in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing
from tests.dashboard.scenario import Served

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artefacts" / "screenshots"
TABS = ("ab", "drift", "decay", "telemetry", "tuning", "events")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        service_missing(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_missing(f"the playwright package is not installed: {exc}")
        raise
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Session:
    """A logged-in browser page that records console errors and page errors."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response


def _login(browser: Any, served: Served, role: str) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    session = Session(context.new_page(), served.url)
    session.open("/dashboard/login")
    session.page.fill("#token", served.tokens[role])
    session.page.click("button[type=submit]")
    session.page.wait_for_url(served.url + "/dashboard/")
    try:
        yield session
    finally:
        context.close()


@pytest.fixture
def viewer(browser: Any, served: Served) -> Iterator[Session]:
    yield from _login(browser, served, "viewer")


def test_every_page_loads_without_console_errors_and_is_screenshotted(
    viewer: Session, served: Served
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"overview": "/dashboard/"}
    pages.update({tab: f"/dashboard/models/{served.model}/{tab}" for tab in TABS})
    for name, path in pages.items():
        response = viewer.open(path)
        assert response.status == 200, (name, response.status)
        assert viewer.page.locator("h1").count() == 1
        viewer.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        assert viewer.errors == [], (name, viewer.errors)
    assert {p.stem for p in SCREENSHOTS.glob("*.png")} >= set(pages)


def _band_widths(section: Any) -> list[float]:
    """The band's height at each look, in px (its points run along the upper bound, then
    back along the lower one)."""
    band = section.locator("svg polygon.band")
    if band.count() == 0:
        return []
    points = [tuple(map(float, p.split(","))) for p in (band.get_attribute("points") or "").split()]
    half = len(points) // 2
    upper, lower = points[:half], points[half:][::-1]
    return [lo[1] - up[1] for up, lo in zip(upper, lower, strict=True)]


def test_ab_chart_draws_a_narrowing_interval_with_a_decision_marker(
    viewer: Session, served: Served
) -> None:
    """An open test draws each look's interval (``circle.look`` with its width); a decided
    one only its band and line, whose height narrows the same way."""
    viewer.open(f"/dashboard/models/{served.model}/ab")
    charts = viewer.page.locator("section.comparison")
    widths_by_test = {}
    for i in range(charts.count()):
        section = charts.nth(i)
        looks = section.locator("svg circle.look")
        if section.locator("svg").count() == 0:  # a test with no look yet draws no chart
            assert section.locator("p.empty").count() == 1
            continue
        if looks.count():
            widths = [
                float(w)
                for w in (looks.nth(j).get_attribute("data-width") for j in range(looks.count()))
                if w
            ]
            last_n = float(looks.last.get_attribute("data-n") or -1)
        else:
            widths = _band_widths(section)
            line = section.locator("svg polyline.estimate").get_attribute("points") or ""
            last_x = float(line.split()[-1].split(",")[0]) if line else -1.0
        widths_by_test[section.get_attribute("data-test")] = widths
        if len(widths) >= 3:
            assert all(b <= a + 0.02 for a, b in zip(widths, widths[1:], strict=False)), widths
            assert widths[-1] < widths[0] / 3
            marker = section.locator("svg g.decision-marker")
            assert marker.count() == 1
            assert marker.get_attribute("data-decision") in (
                "challenger_better",
                "challenger_worse",
            )
            if looks.count():
                assert float(marker.get_attribute("data-n") or 0) == last_n
            else:  # the marker stands at the line's last point
                x = float(marker.locator("line").get_attribute("x1") or 0)
                assert x == pytest.approx(last_x, abs=0.01)
    assert any(len(w) >= 3 for w in widths_by_test.values()), widths_by_test
    assert viewer.errors == []


def test_event_type_filter_shows_only_that_type(viewer: Session, served: Served) -> None:
    viewer.open(f"/dashboard/models/{served.model}/events")
    chip = viewer.page.locator('[data-filter="type"][data-value="drift_detected"]')
    assert chip.count() == 1
    chip.click()
    viewer.page.wait_for_url("**type=drift_detected**")
    types = viewer.page.locator("table.events .event-type").all_inner_texts()
    assert types and set(types) == {"drift_detected"}
    viewer.open(f"/dashboard/models/{served.model}/events")
    everything = viewer.page.locator("table.events .event-type").all_inner_texts()
    assert len(set(everything)) > 1
    assert viewer.errors == []


def test_a_viewer_gets_no_action_buttons_and_the_api_refuses_its_actions(
    viewer: Session, served: Served
) -> None:
    for path in ["/dashboard/", *(f"/dashboard/models/{served.model}/{t}" for t in TABS)]:
        viewer.open(path)
        buttons = viewer.page.locator("button")
        assert [buttons.nth(i).get_attribute("class") for i in range(buttons.count())] == ["logout"]
        forms = viewer.page.locator("form")
        actions = [forms.nth(i).get_attribute("action") for i in range(forms.count())]
        assert actions == ["/dashboard/logout"]
    refused = viewer.page.request.post(
        f"{served.url}/v1/models/{served.model}/evaluate", headers=served.auth("viewer")
    )
    assert refused.status == 403
    by_cookie = viewer.page.request.post(f"{served.url}/v1/models/{served.model}/evaluate")
    assert by_cookie.status in (401, 403)


def test_without_a_session_pages_send_the_browser_to_login(browser: Any, served: Served) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{served.url}/dashboard/models/{served.model}/ab")
        assert page.url == f"{served.url}/dashboard/login"
        assert page.locator("input#token[type=password]").count() == 1
    finally:
        context.close()


def test_a_bad_token_stays_on_login_with_a_message(browser: Any, served: Served) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{served.url}/dashboard/login")
        page.fill("#token", "tw_not-a-real-token")
        page.click("button[type=submit]")
        assert "invalid or revoked token" in page.locator("[role=alert]").inner_text()
        assert context.cookies() == []
    finally:
        context.close()


def test_unknown_model_renders_a_404_page(viewer: Session, served: Served) -> None:
    response = viewer.open("/dashboard/models/no-such-model/drift")
    assert response.status == 404
    assert "no-such-model" in viewer.page.locator("[data-status='404']").inner_text()


def test_the_drift_report_renders_its_scripts_in_an_opaque_origin(
    viewer: Session, served: Served
) -> None:
    """evidently's report runs its own inline scripts; served sandboxed, they run in an
    opaque origin ("null"), so a script smuggled in through a column name could not reach
    the dashboard's origin, session or API."""
    [latest] = served.daemon.store.list_evaluations(served.model, kind="drift", limit=1)
    response = viewer.open(f"/dashboard/models/{served.model}/drift/{latest.id}/report")
    assert response.status == 200
    viewer.page.wait_for_load_state("load")
    assert viewer.page.evaluate("() => window.origin") == "null"
    assert viewer.page.evaluate("() => document.scripts.length") > 0
    assert viewer.page.evaluate("() => document.body.innerText.length") > 100  # it rendered


def test_a_feature_name_holding_a_script_neither_runs_it_nor_breaks_the_plots(
    browser: Any,
) -> None:
    """evidently writes column names into an inline script's JSON: a name holding
    ``</script><script>…`` ran its script and left the report with no plot."""
    import numpy as np
    import pandas as pd

    from monitor import evidently_report

    rng = np.random.default_rng(5)
    name = "x</script><script>window.injected = 1</script><!--"
    reference = pd.DataFrame({name: rng.normal(size=300), "b": rng.normal(size=300)})
    current = pd.DataFrame({name: rng.normal(1.0, size=300), "b": rng.normal(size=300)})
    html, _ = evidently_report(reference, current)
    context = browser.new_context()
    try:
        session = Session(context.new_page(), "")
        session.page.set_content(html, wait_until="load")
        session.page.wait_for_function("() => document.querySelectorAll('svg').length > 0")
        assert session.page.evaluate("() => window.injected") is None
        assert "window.injected = 1" in session.page.evaluate("() => document.body.innerText")
        assert session.errors == []
    finally:
        context.close()


def test_heatmap_row_labels_are_distinct_and_drawn_whole_beside_the_cells(
    browser: Any, tmp_path: Path
) -> None:
    """Names sharing their first 20 characters all read ``num_transactions_las``; each
    label now differs, and chromium draws it inside the chart, left of the first cell."""
    from datetime import UTC, datetime, timedelta

    from tests.dashboard.scenario import serve

    names = [
        "num_transactions_last_7d",
        "num_transactions_last_30d",
        "num_transactions_last_90d",
        "customer_profile_aggregates_rolling_window_sum_of_card_spend_last_30_days",
        "customer_profile_aggregates_rolling_window_mean_of_card_spend_last_30_days",
    ]
    now = datetime.now(UTC)
    with serve(tmp_path) as served:
        store = served.daemon.store
        store.ensure_model(name="cards", task="binary", feature_names=names)
        for h in range(3):
            columns = [
                {"column": n, "method": "ks", "statistic": 0.1, "threshold": 0.05,
                 "p_value": 0.001 if n == names[1] else 0.6, "drifted": n == names[1],
                 "status": "ok", "n_cur": 500}
                for n in names
            ]  # fmt: skip
            store.add_evaluation(
                model="cards",
                version=None,
                kind="drift",
                status="ok",
                window_start=now - timedelta(hours=h + 1),
                window_end=now - timedelta(hours=h),
                payload={"alarm": False, "rule": "share", "columns": columns},
            )
        sessions = _login(browser, served, "viewer")
        viewer = next(sessions)
        try:
            viewer.open("/dashboard/models/cards/drift")
            labels = viewer.page.locator("svg.heatmap > text").evaluate_all(
                "ns => ns.map(n => { const b = n.getBBox(); return "
                "{text: n.textContent, x: b.x, right: b.x + b.width}; })"
            )[: len(names)]
            first_cell = float(
                viewer.page.locator("svg.heatmap rect").first.get_attribute("x") or 0
            )
            outlined = viewer.page.locator("svg.heatmap rect.drifted").first
            assert outlined.get_attribute("data-feature") == names[1]
            assert outlined.evaluate("n => getComputedStyle(n).stroke") == "rgb(0, 0, 0)"
            assert len({lb["text"] for lb in labels}) == len(names), labels
            assert all(lb["x"] >= 0 and lb["right"] <= first_cell for lb in labels), labels
            assert viewer.errors == []
        finally:
            sessions.close()
