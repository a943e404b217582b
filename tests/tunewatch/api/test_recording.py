"""What an acknowledged request leaves behind: request, outputs, shadows, labels."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, Running

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


def _infer(running: Running, request_id: str, rows: list[list[float]]) -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [len(rows), 8], "datatype": "FP32", "data": rows}],
    }
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )


def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_acknowledged_request_is_durable_with_champion_output(running: Running) -> None:
    r = _infer(running, "rec-1", [ROW, ROW])
    assert r.status_code == 200
    store = running.daemon.store
    req = store.get_request(MODEL, "rec-1")
    assert req is not None and (req.n_rows, req.n_cols, req.source) == (2, 8, "infer")
    np.testing.assert_array_equal(
        np.frombuffer(req.inputs, np.float32).reshape(2, 8), np.array([ROW, ROW], np.float32)
    )
    outputs = {o.version: o for o in store.get_outputs(MODEL, "rec-1")}
    assert outputs[1].role == "champion" and outputs[1].latency_s > 0
    probs = np.frombuffer(outputs[1].values, np.float32).reshape(2, 2)
    np.testing.assert_allclose(probs, np.array(r.json()["outputs"][1]["data"]).reshape(2, 2))


def test_challenger_scores_the_same_request_in_shadow(running: Running) -> None:
    assert _infer(running, "rec-shadow", [ROW]).status_code == 200
    store = running.daemon.store
    _wait_for(lambda: any(o.version == 2 for o in store.get_outputs(MODEL, "rec-shadow")))
    challenger = next(o for o in store.get_outputs(MODEL, "rec-shadow") if o.version == 2)
    assert challenger.role == "challenger"


def test_reused_request_id_is_a_conflict_and_keeps_the_original(running: Running) -> None:
    assert _infer(running, "rec-dup", [ROW]).status_code == 200
    again = _infer(running, "rec-dup", [[0.0] * 8])
    assert again.status_code == 409 and again.json()["code"] == "duplicate_request_id"
    stored = running.daemon.store.get_request(MODEL, "rec-dup")
    assert stored is not None
    np.testing.assert_array_equal(np.frombuffer(stored.inputs, np.float32), np.float32(ROW))


def test_feedback_is_idempotent_and_reports_each_item(running: Running) -> None:
    assert _infer(running, "rec-fb", [ROW]).status_code == 200
    url = f"{running.url}/v1/models/{MODEL}/feedback"
    items = {
        "items": [{"request_id": "rec-fb", "label": 1}, {"request_id": "never-seen", "label": 0}]
    }
    first = httpx.post(url, json=items, headers=running.auth("labeller")).json()["results"]
    assert [i["status"] for i in first] == ["created", "unknown_request"]
    replay = httpx.post(url, json=items, headers=running.auth("labeller")).json()["results"]
    assert [i["status"] for i in replay] == ["duplicate", "unknown_request"]
    changed = httpx.post(
        url,
        json={"items": [{"request_id": "rec-fb", "label": 0}]},
        headers=running.auth("labeller"),
    ).json()["results"]
    assert changed[0]["status"] == "conflict"
    label = running.daemon.store.get_label(MODEL, "rec-fb")
    assert label is not None and label.value == 1


def test_mirror_records_are_stored_and_shadowed(running: Running) -> None:
    body = {
        "records": [{"id": f"mir-{i}", "inputs": [ROW], "outputs": [[0.3, 0.7]]} for i in range(3)]
    }
    url = f"{running.url}/v1/models/{MODEL}/records"
    r = httpx.post(url, json=body, headers=running.auth("scorer"))
    assert r.json() == {"accepted": 3, "duplicates": []}
    again = httpx.post(url, json=body, headers=running.auth("scorer")).json()
    assert again == {"accepted": 0, "duplicates": ["mir-0", "mir-1", "mir-2"]}
    store = running.daemon.store
    req = store.get_request(MODEL, "mir-0")
    assert req is not None and req.source == "mirror"
    _wait_for(
        lambda: {o.role for o in store.get_outputs(MODEL, "mir-2")} == {"external", "challenger"}
    )


@pytest.mark.prometheus
def test_metrics_exposition_passes_promtool(running: Running, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    from tests.conftest import service_missing

    promtool = shutil.which("promtool")
    if promtool is None:
        service_missing("promtool (Debian package prometheus) is not installed")
    _infer(running, "rec-metrics", [ROW])
    text = httpx.get(f"{running.url}/metrics").text
    assert "tunewatch_inference_latency_seconds_bucket" in text
    assert 'hyperparameter_set="' in text
    assert "tunewatch_shadow_queue_depth" in text
    result = subprocess.run(
        [str(promtool), "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
