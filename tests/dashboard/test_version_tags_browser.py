"""Version tags in a real browser (Debian's chromium): a tag reads ``key=value`` as
typed, whatever its value holds, on the overview and the tuning page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.scenario import serve
from tests.dashboard.test_browser import _login, browser  # noqa: F401

pytestmark = pytest.mark.browser

SCRIPT = "</span><script>window.injected = 1</script>"
TAGS = {"note": SCRIPT, "reviewer": "שלום עולם", "ticket": "RISK-123"}
SHOWN = [f"{k}={v}" for k, v in TAGS.items()]  # by key, as the store orders them


def test_tags_read_as_typed_on_the_overview_and_the_tuning_page(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    with serve(tmp_path) as served:
        store = served.daemon.store
        store.ensure_model(name="tagged", task="binary", feature_names=["a"])
        store.add_version(
            model="tagged",
            artefact_sha256="t" * 64,
            hyperparameters={"C": 1.0},
            size_bytes=1,
            actor="t",
            stage="champion",
        )
        for key, value in TAGS.items():
            store.set_version_tag("tagged", 1, key, value, actor="t")
        sessions = _login(browser, served, "viewer")
        viewer = next(sessions)
        try:
            for path in ("/dashboard/", "/dashboard/models/tagged/tuning"):
                assert viewer.open(path).status == 200
                chips = viewer.page.locator(".tag").evaluate_all("ns => ns.map(n => n.innerText)")
                assert chips == SHOWN, path
                assert viewer.page.evaluate("() => window.injected") is None
                assert viewer.errors == [], (path, viewer.errors)
        finally:
            sessions.close()
