"""The pages' accessibility (WCAG 2.1 AA): muted text is legible on every background it
sits on, and the current tab and filter chip are announced, not only coloured."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import service_missing
from tests.dashboard.scenario import Served, session_cookie
from tunewatch.dashboard._html import STYLE, TABS, shell

AA_TEXT = 4.5  # WCAG 2.1 success criterion 1.4.3, text under 18pt (the pages' 11-14px)


def _rules() -> dict[str, str]:
    """Every rule of the pages' style sheet: selector to declarations."""
    rules: dict[str, str] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", STYLE):
        for selector in selectors.split(","):
            rules[selector.strip()] = rules.get(selector.strip(), "") + ";" + body
    return rules


def _colour(selector: str, prop: str) -> str:
    """The ``rrggbb`` of ``selector``'s ``prop`` (``#rgb`` written out)."""
    found = re.search(rf"(?:^|;){prop}:#([0-9a-f]{{6}}|[0-9a-f]{{3}})\b", _rules()[selector])
    assert found, f"{selector} sets no hex {prop}"
    code = found.group(1)
    return code if len(code) == 6 else "".join(c * 2 for c in code)


def _luminance(hex6: str) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour ``rrggbb``."""
    channels = [int(hex6[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    la, lb = _luminance(a), _luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_the_contrast_function_matches_wcags_reference_values() -> None:
    assert _contrast("000000", "ffffff") == pytest.approx(21.0)
    assert _contrast("777777", "ffffff") == pytest.approx(4.48, abs=0.01)
    assert _contrast("777777", "fafafa") == pytest.approx(4.29, abs=0.01)


# where muted text (and a status's colour) is drawn: paragraphs on the page, spans and
# cells in a table's cells, and a header cell's own background
BACKGROUNDS = {"page": ("body", "background"), "table-cell": ("table", "background")}
BACKGROUNDS["header-cell"] = ("th", "background")


@pytest.mark.parametrize("text", [".muted", ".ok", ".bad"])
@pytest.mark.parametrize(("selector", "prop"), BACKGROUNDS.values(), ids=BACKGROUNDS.keys())
def test_coloured_text_meets_aa_contrast_on_each_background(
    text: str, selector: str, prop: str
) -> None:
    """`.muted{color:#777}` was 4.29:1 on the page's #fafafa (4.48:1 on a cell's white)."""
    ratio = _contrast(_colour(text, "color"), _colour(selector, prop))
    assert ratio >= AA_TEXT, f"{text} on {selector}: {ratio:.2f}:1"


@pytest.mark.parametrize("tab", [key for key, _ in TABS])
def test_exactly_the_current_tab_is_aria_current_page(tab: str) -> None:
    html = shell("m: page", "", who=None, model="m", tab=tab)
    marked = re.findall(r'<a href="([^"]*)"[^>]*aria-current="page"', html)
    assert marked == [f"/dashboard/models/m/{tab}"]
    assert html.count("aria-current") == 1


def test_a_page_without_tabs_marks_nothing_current() -> None:
    assert "aria-current" not in shell("Models", "", who=None)


# -- rendered pages ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cookies(served: Served) -> dict[str, str]:
    return session_cookie(served.url, served.tokens["viewer"])


def _get(served: Served, path: str, cookies: dict[str, str]) -> str:
    r = httpx.get(f"{served.url}{path}", cookies=cookies, timeout=60)
    assert r.status_code == 200, r.text[:300]
    return r.text


def test_a_rendered_page_marks_its_own_tab_current(served: Served, cookies: dict[str, str]) -> None:
    html = _get(served, f"/dashboard/models/{served.model}/drift", cookies)
    assert re.findall(r'<a ([^>]*)aria-current="([^"]*)"', html) == [
        (f'href="/dashboard/models/{served.model}/drift" class="current" ', "page")
    ]


def _current_chips(html: str) -> dict[str, list[str]]:
    """Each filter group's chips marked aria-current, by their text."""
    groups = re.findall(r'<p class="chips" data-filter-group="(\w+)">(.*?)</p>', html)
    return {
        group: re.findall(r'<a [^>]*aria-current="true"[^>]*>([^<]*)</a>', chips)
        for group, chips in groups
    }


def test_exactly_the_current_filter_chip_of_each_group_is_aria_current(
    served: Served, cookies: dict[str, str]
) -> None:
    page = f"/dashboard/models/{served.model}/events"
    unfiltered = _current_chips(_get(served, page, cookies))
    assert unfiltered == {"type": ["all"], "action": ["all"], "actor": ["all"]}
    kind = served.daemon.store.list_events(model=served.model, limit=1)[0].type
    html = _get(served, f"{page}?type={kind}", cookies)
    assert _current_chips(html) == {"type": [kind], "action": ["all"], "actor": ["all"]}
    # the class and the attribute mark the same chips
    assert html.count('class="current"') == 3 + 1  # the three groups' chips and the tab
    assert html.count('aria-current="true"') == 3


# -- in a browser: the colours as drawn, on every background they land on ----------------------

CHROMIUM = "/usr/bin/chromium"

LOWEST_MUTED_CONTRAST = """() => {
  const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = el => { for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c !== 'rgba(0, 0, 0, 0)') return c; } return 'rgb(255, 255, 255)'; };
  return [...document.querySelectorAll('.muted')].filter(e => e.textContent.trim())
      .map(e => { const a = lum(getComputedStyle(e).color), b = lum(bg(e));
          return [(Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), e.textContent.trim()]; })
      .sort((x, y) => x[0] - y[0]);
}"""


@pytest.fixture(scope="module")
def signed_in_page(served: Served) -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        service_missing(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_missing(f"the playwright package is not installed: {exc}")
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{served.url}/dashboard/login")
            yield page
        finally:
            browser.close()


@pytest.mark.browser
def test_muted_text_as_drawn_meets_aa_contrast_on_every_page(
    served: Served, signed_in_page: Any
) -> None:
    page = signed_in_page
    measured = {"/dashboard/login": page.evaluate(LOWEST_MUTED_CONTRAST)}
    page.fill("#token", served.tokens["viewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/dashboard/")
    for path in ["/dashboard/"] + [f"/dashboard/models/{served.model}/{t}" for t, _ in TABS]:
        page.goto(served.url + path)
        measured[path] = page.evaluate(LOWEST_MUTED_CONTRAST)
    lowest = {
        path: (round(found[0][0], 2), found[0][1][:40]) for path, found in measured.items() if found
    }
    assert len(lowest) >= 4, measured  # the sign-in, overview, A/B and decay pages at least
    assert all(ratio >= AA_TEXT for ratio, _ in lowest.values()), lowest


def test_every_chart_of_the_ab_page_has_its_own_accessible_name(
    served: Served, cookies: dict[str, str]
) -> None:
    """Two tests of one pair (a shadow comparison and a rollback watch) drew charts both
    named "v3 vs v2: estimate and always-valid interval by n"."""
    html = _get(served, "/dashboard/models/credit/ab", cookies)
    names = re.findall(r'<svg[^>]*role="img"[^>]*aria-label="([^"]*)"', html)
    assert len(names) >= 2
    assert len(set(names)) == len(names), names
    assert all(name.startswith("Test #") for name in names if "interval" in name)
