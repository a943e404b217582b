"""A version other than the champion scores in a worker thread: a challenger that runs
until its deadline (a live split's arm, or a version named by its route) must not hold
the champion's answers behind it on the event loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shadow import _deadline
from shadow.stats import assign
from tests.shadow.shadow_models import looping_model
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel, feature_names
from tunewatch._version_metadata import VersionMetadata

# The slow request takes the whole deadline by construction: its challenger loops on
# every row but zeros until onnxruntime stops it.
RUN_TIMEOUT_S = 2.0
SALT = "off-loop"
PERCENT = 30
WAIT_S = 30.0
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


def _unit(arm: str) -> str:
    return next(
        u for u in (f"u{i}" for i in range(1000)) if assign(u, salt=SALT, percent=PERCENT) == arm
    )


@pytest.fixture
def split(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """The example champion (v1) and, in a live split, a challenger (v2) that loops."""
    looping = ExampleModel(
        name="looping",
        onnx=looping_model(8),
        metadata=VersionMetadata(task="binary", feature_names=feature_names(8)),
    )
    split = {"challenger": 2, "percent": PERCENT, "salt": SALT}
    daemon, tokens = make_daemon(
        tmp_path,
        [trained[0], looping],
        extra={
            "scheduler": {"enabled": False},
            "scoring": {"run_timeout_s": RUN_TIMEOUT_S},
            "models": [{"name": MODEL, "task": "binary", "comparison": {"split": split}}],
        },
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _body(request_id: str, unit: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}],
    }
    if unit is not None:
        body["parameters"] = {"unit_key": unit}
    return body


@pytest.mark.parametrize("slow_route", ["split_arm", "named_version"])
def test_the_champion_answers_while_a_challenger_runs_to_its_deadline(
    split: Running, slow_route: str
) -> None:
    champion_unit = _unit("champion")
    with httpx.Client(base_url=split.url, headers=split.auth("scorer"), timeout=WAIT_S) as c:
        warm = c.post(f"/v2/models/{MODEL}/infer", json=_body("warm", champion_unit))
        assert (warm.status_code, warm.json()["model_version"]) == (200, "1"), warm.text
        assert not _deadline._inflight  # no run in onnxruntime now
        if slow_route == "split_arm":
            path, slow_body = f"/v2/models/{MODEL}/infer", _body("slow", _unit("challenger"))
        else:
            path, slow_body = f"/v2/models/{MODEL}/versions/2/infer", _body("slow")
        slow: dict[str, httpx.Response] = {}
        done = threading.Event()

        def post_slow() -> None:
            with httpx.Client(base_url=split.url, headers=split.auth("scorer")) as other:
                slow["r"] = other.post(path, json=slow_body, timeout=WAIT_S)
            done.set()

        thread = threading.Thread(target=post_slow)
        thread.start()
        try:
            # the challenger's run is in onnxruntime once its deadline is watched
            while not _deadline._inflight:
                assert not done.wait(0.01), slow["r"].text
            running = set(_deadline._inflight)
            answered = c.post(f"/v2/models/{MODEL}/infer", json=_body("during", champion_unit))
            # answered while the challenger's run was still going: on the event loop it
            # waited the whole deadline out (1.8 s for a 2 ms request)
            assert running <= set(_deadline._inflight)
            assert not done.is_set()
        finally:
            thread.join(WAIT_S)
    assert (answered.status_code, answered.json()["model_version"]) == (200, "1"), answered.text
    stopped = slow["r"]
    assert (stopped.status_code, stopped.json()["code"]) == (503, "run_timeout"), stopped.text
    store = split.daemon.store
    assert {(o.version, o.role) for o in store.get_outputs(MODEL, "during")} == {(1, "champion")}
    assert store.get_outputs(MODEL, "slow") == []
