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


def test_a_request_naming_the_champion_is_shadowed_as_one_naming_none(running: Running) -> None:
    """Clients often pin the version they mean (tritonclient's ``model_version``): a request
    to ``/versions/{champion}/infer`` was answered by the champion and never shadowed, so
    the challengers got no paired rows from such clients, with nothing said."""
    body = {
        "id": "rec-pinned",
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [ROW]}],
    }
    r = httpx.post(
        f"{running.url}/v2/models/{MODEL}/versions/1/infer",
        json=body,
        headers=running.auth("scorer"),
    )
    assert r.status_code == 200, r.text
    store = running.daemon.store
    _wait_for(
        lambda: (
            {(o.version, o.role) for o in store.get_outputs(MODEL, "rec-pinned")}
            == {(1, "champion"), (2, "challenger")}
        )
    )


def test_mirror_records_are_stored_and_shadowed(running: Running) -> None:
    body = {
        "records": [{"id": f"mir-{i}", "inputs": [ROW], "outputs": [[0.3, 0.7]]} for i in range(3)]
    }
    url = f"{running.url}/v1/models/{MODEL}/records"
    r = httpx.post(url, json=body, headers=running.auth("scorer"))
    assert r.json() == {"accepted": 3, "duplicates": [], "conflicts": []}
    again = httpx.post(url, json=body, headers=running.auth("scorer")).json()
    assert again == {"accepted": 0, "duplicates": ["mir-0", "mir-1", "mir-2"], "conflicts": []}
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


def test_a_label_must_fit_its_request_and_equal_labels_are_one_label(running: Running) -> None:
    """A 3-value label on a 1-row request was stored (unusable) and every later correct
    label was a conflict; ``1``, ``[1]``, ``1.0`` and an outcome past 2**53 replayed as
    itself were conflicts too."""
    assert _infer(running, "fit-1", [ROW]).status_code == 200
    assert _infer(running, "fit-2", [ROW, ROW]).status_code == 200
    url = f"{running.url}/v1/models/{MODEL}/feedback"

    def post(*items: dict[str, object]) -> list[str]:
        r = httpx.post(url, json={"items": list(items)}, headers=running.auth("labeller"))
        assert r.status_code == 200, r.text
        return [i["status"] for i in r.json()["results"]]

    assert (
        post(
            {"request_id": "fit-1", "label": [1, 0, 1]},
            {"request_id": "fit-2", "label": 1},
            {"request_id": "fit-2", "label": [1, 0, 0]},
        )
        == ["shape_mismatch"] * 3
    )
    assert running.daemon.store.get_label(MODEL, "fit-1") is None
    big = 9007199254740993
    assert post(
        {"request_id": "fit-1", "label": [1], "outcome": big},
        {"request_id": "fit-2", "label": [-0.0, 1]},
    ) == ["created", "created"]
    assert (
        post(
            {"request_id": "fit-1", "label": 1, "outcome": big},
            {"request_id": "fit-1", "label": 1.0, "outcome": float(big)},
            {"request_id": "fit-2", "label": [0, 1.0]},
        )
        == ["duplicate"] * 3
    )
    label = running.daemon.store.get_label(MODEL, "fit-1")
    assert label is not None and label.value == 1.0


def test_mirror_outputs_must_fit_the_model_and_name_a_registered_version(
    running: Running,
) -> None:
    """One mirrored record with three output columns on a binary model made every
    comparison read (and consume) the next requests without scoring them; a value past
    float32 was stored as infinity; an unregistered version was accepted."""
    url = f"{running.url}/v1/models/{MODEL}/records"

    def post(outputs: object, **extra: object) -> httpx.Response:
        record = {"id": "mir-bad", "inputs": [ROW], "outputs": outputs, **extra}
        return httpx.post(url, json={"records": [record]}, headers=running.auth("scorer"))

    for outputs in ([[0.2, 0.3, 0.5]], [[0.5]], [[1e300, 0.5]]):
        r = post(outputs)
        assert r.status_code == 400 and r.json()["code"] == "shape_mismatch", (outputs, r.text)
    r = post([[0.5, 0.5]], version=999)
    assert r.status_code == 404 and r.json()["code"] == "version_not_found", r.text
    assert running.daemon.store.get_request(MODEL, "mir-bad") is None
    # a record of a version the daemon shadows keeps the external answer; the shadow
    # does not score that version again
    ok = post([[0.5, 0.5]], version=2)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    after = {"id": "mir-after", "inputs": [ROW], "outputs": [[0.5, 0.5]]}
    httpx.post(url, json={"records": [after]}, headers=running.auth("scorer")).raise_for_status()
    store = running.daemon.store
    _wait_for(lambda: any(o.version == 2 for o in store.get_outputs(MODEL, "mir-after")))
    roles = {(o.version, o.role) for o in store.get_outputs(MODEL, "mir-bad")}
    assert roles == {(2, "external")}
