"""Large ingest bodies are read off the event loop: a mirror batch's records are parsed
and checked, and a large scoring, feedback, management or Alertmanager body is parsed, in
a worker thread, so liveness and other requests are answered meanwhile.

Each test holds the work on an event it controls, from inside the real handler, and
asks for liveness while it is held: done on the event loop, the work held the loop and
liveness waited for it (a 10,000-record mirror batch held it 1-2 s, an 8 MiB scoring
body of ``{}`` padding 0.3-1.6 s).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.api.alert_helpers import alert, payload
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api import _body

WAIT_S = 10.0
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
LARGE = 256 * 1024  # past the size parsed on the loop; far under the body limit


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


class _Held:
    """Wraps ``call`` so that its calls that ``hold`` wait for :attr:`release`."""

    def __init__(self, call: Callable[..., Any], hold: Callable[..., bool]) -> None:
        self.call = call
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.hold(*args, **kwargs):
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            assert self.release.wait(WAIT_S)
        return self.call(*args, **kwargs)


def _live_while_held(
    running: Running, held: _Held, method: str, path: str, **send: Any
) -> httpx.Response:
    """Send the request, wait until it reaches the held call, ask for liveness, release."""
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["response"] = httpx.request(method, f"{running.url}{path}", timeout=WAIT_S, **send)

    sender = threading.Thread(target=call)
    sender.start()
    try:
        assert held.entered.wait(WAIT_S), "the request never reached the held call"
        live = httpx.get(f"{running.url}/v2/health/live", timeout=3.0)
        assert live.status_code == 200
    finally:
        held.release.set()
        sender.join(WAIT_S)
    assert held.threads and running.server.thread.name not in held.threads  # the loop's
    return result["response"]


def test_a_mirror_batch_is_checked_off_the_event_loop(
    served: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POST /v1/models/{m}/records` checked every record (parse, rows, ranges,
    probabilities) on the loop: liveness waited for the whole batch."""
    runtime = served.daemon.runtime
    held = _Held(runtime.validate, lambda *_, **__: True)
    monkeypatch.setattr(runtime, "validate", held)
    records = [{"id": f"m{i}", "inputs": [ROW], "outputs": [[0.3, 0.7]]} for i in range(3)]
    r = _live_while_held(
        served,
        held,
        "POST",
        f"/v1/models/{MODEL}/records",
        json={"records": records},
        headers=served.auth("scorer"),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": [], "conflicts": []}


def test_a_mirror_batch_refused_off_the_event_loop_keeps_its_error(served: Running) -> None:
    """The checks moved to a worker thread answer as they did on the loop."""
    records = [
        {"id": "ok", "inputs": [ROW], "outputs": [[0.3, 0.7]]},
        {"id": "logit", "inputs": [ROW], "outputs": [[-2.0, 2.0]]},
    ]
    r = httpx.post(
        f"{served.url}/v1/models/{MODEL}/records",
        json={"records": records},
        headers=served.auth("scorer"),
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_output"
    assert set(r.json()) == {"error", "code"} and "records[1].outputs" in r.json()["error"]


def _infer_body() -> bytes:
    pad = [{}] * (LARGE // 3)  # junk in a field the request does not name
    inputs = [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}]
    return json.dumps({"id": "padded", "pad": pad, "inputs": inputs}).encode()


def _feedback_body() -> bytes:
    items = [{"request_id": f"r{i}", "label": 1} for i in range(LARGE // 30)]
    return json.dumps({"items": items}).encode()


def _retune_body() -> bytes:
    return json.dumps({"reason": "x" * LARGE}).encode()


def _alert_group() -> dict[str, Any]:
    """A group of alerts (for no known model: each is answered ignored)."""
    return payload(*(alert(f"fp{i}", model="unknown") for i in range(LARGE // 300)))


def _alerts_body() -> bytes:
    return json.dumps(_alert_group()).encode()


@pytest.mark.parametrize(
    "path,role,body,status",
    [
        (f"/v2/models/{MODEL}/infer", "scorer", _infer_body, 200),
        (f"/v1/models/{MODEL}/feedback", "labeller", _feedback_body, 200),
        (f"/v1/models/{MODEL}/retune", "operator", _retune_body, 400),
        ("/v1/alerts/alertmanager", "alertmanager", _alerts_body, 200),
    ],
    ids=["inference", "feedback", "management", "alertmanager"],
)
def test_a_large_json_body_is_parsed_off_the_event_loop(
    served: Running,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    role: str,
    body: Callable[[], bytes],
    status: int,
) -> None:
    """A scoring body was parsed on the loop before any field was checked: 8 MiB of
    ``{}`` in an unknown field (or 8 KB of gzip inflating to it) held liveness."""
    content = body()
    assert len(content) > LARGE
    held = _Held(_body.parse_json, lambda raw: len(raw) > LARGE)
    monkeypatch.setattr(_body, "parse_json", held)
    r = _live_while_held(served, held, "POST", path, content=content, headers=served.auth(role))
    assert r.status_code == status, r.text


@pytest.mark.parametrize(
    "body,message",
    [
        ([_alert_group()], "the request body must be a JSON object"),
        ({"alerts": "none", "group": _alert_group()}, "`alerts` must be a list"),
    ],
    ids=["not-an-object", "alerts-not-a-list"],
)
def test_a_large_alertmanager_body_refused_off_the_event_loop_keeps_its_error(
    served: Running, monkeypatch: pytest.MonkeyPatch, body: Any, message: str
) -> None:
    """The Alertmanager webhook parsed its body on the loop: a 7.8 MiB group held every
    request of the process about 200 ms, refused or not."""
    content = json.dumps(body).encode()
    assert len(content) > LARGE
    held = _Held(_body.parse_json, lambda raw: len(raw) > LARGE)
    monkeypatch.setattr(_body, "parse_json", held)
    r = _live_while_held(
        served,
        held,
        "POST",
        "/v1/alerts/alertmanager",
        content=content,
        headers=served.auth("alertmanager"),
    )
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "code"} and r.json()["code"] == "invalid_request"
    assert message in r.json()["error"]
