"""Ingest checks made before the rows are converted: the row limit, read from the raw JSON
lists (a body declaring 493k rows was converted by numpy on the event loop, 1.2 s, before
the limit refused it), the count of values against the shape, and a classifier's mirrored
outputs must be probabilities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from retune import to_onnx
from retune.space import fit_pipeline
from tests.tunewatch.conftest import Running
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._version_metadata import VersionMetadata

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
LIMIT = 64  # the `running` daemon's `server.max_batch_rows`
RAGGED = [[1.0], [1.0, 2.0]]  # numpy refuses it: any answer but 413 read it first


def _infer(running: Running, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v2/models/credit/infer",
        content=body,
        headers=running.auth("scorer") | (headers or {}),
    )


def _mirror(running: Running, record: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/credit/records",
        json={"records": [record]},
        headers=running.auth("scorer"),
    )


def _refused_as_too_large(r: httpx.Response, rows: int) -> None:
    assert (r.status_code, r.json()["code"]) == (413, "batch_too_large"), r.text
    assert f"at most {LIMIT} rows, got {rows}" in r.json()["error"]


@pytest.mark.parametrize(
    "data",
    [RAGGED, [0.0] * 3, ["not", "numbers"]],
    ids=["ragged", "too-few-values", "strings"],
)
def test_an_inference_declaring_too_many_rows_is_refused_before_its_data_is_read(
    running: Running, data: list[Any]
) -> None:
    tensor = {"name": "input", "shape": [LIMIT + 1, 8], "datatype": "FP32", "data": data}
    r = _infer(running, json.dumps({"inputs": [tensor]}).encode())
    _refused_as_too_large(r, LIMIT + 1)


@pytest.mark.parametrize(
    "data",
    [[0.0] * 9 + ["x"], [[0.0] * 9 + ["x"]], [[0.0] * 4, [0.0] * 4, ["x"]]],
    ids=["flat", "one-nested-row", "nested-rows"],
)
def test_an_inference_carrying_more_values_than_its_shape_is_refused_before_they_are_read(
    running: Running, data: list[Any]
) -> None:
    """A body declaring one row but carrying 4M values was converted by numpy (~0.4 s on
    the event loop) before the count refused it. A string among the values tells: read,
    it is a `dtype_mismatch`."""
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": data}
    r = _infer(running, json.dumps({"inputs": [tensor]}).encode())
    assert (r.status_code, r.json()["code"]) == (400, "shape_mismatch"), r.text
    assert "`shape` [1, 8] needs 8 values, `data` has more entries" in r.json()["error"]


def test_a_binary_inference_declaring_too_many_rows_is_refused_before_its_bytes_are_read(
    running: Running,
) -> None:
    tensor = {
        "name": "input",
        "shape": [10**6, 8],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 32},  # not the shape's 32 MB: read, a 400
    }
    head = json.dumps({"inputs": [tensor]}).encode()
    r = _infer(
        running,
        head + np.zeros(8, np.float32).tobytes(),
        {"Inference-Header-Content-Length": str(len(head))},
    )
    _refused_as_too_large(r, 10**6)


def test_mirror_inputs_of_too_many_rows_are_refused_before_they_are_read(
    running: Running,
) -> None:
    r = _mirror(running, {"id": "big-in", "inputs": RAGGED * 40, "outputs": [[0.5, 0.5]]})
    _refused_as_too_large(r, 80)


def test_mirror_outputs_of_too_many_rows_are_refused_before_they_are_read(
    running: Running,
) -> None:
    r = _mirror(running, {"id": "big-out", "inputs": [ROW], "outputs": RAGGED * 40})
    _refused_as_too_large(r, 80)
    assert running.daemon.store.get_request("credit", "big-out") is None


def test_a_batch_at_the_limit_is_still_read(running: Running) -> None:
    rows = [ROW] * LIMIT
    r = _mirror(running, {"id": "at-limit", "inputs": rows, "outputs": [[0.5, 0.5]] * LIMIT})
    assert r.status_code == 200, r.text
    tensor = {"name": "input", "shape": [LIMIT, 8], "datatype": "FP32", "data": rows}
    r = _infer(running, json.dumps({"inputs": [tensor]}).encode())
    assert r.status_code == 200, r.text


# -- a classifier's mirrored outputs are probabilities ------------------------------------
TASKS = ("binary", "multiclass", "regression")


@pytest.fixture(scope="module")
def by_task(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A daemon serving one model per task, named after it; yields its URL and a scorer's
    token."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    targets = {
        "binary": ("logistic", (x[:, 0] > 0).astype(np.float64)),
        "multiclass": ("logistic", np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float64)),
        "regression": ("ridge", x[:, 0] * 3.0 + 1.0),
    }
    data: Path = tmp_path_factory.mktemp("tasks")
    config = build_config(
        {
            "data_dir": str(data),
            "scheduler": {"enabled": False},
            "models": [{"name": task, "task": task} for task in TASKS],
        },
        env={},
    )
    daemon = Daemon(config, env={})
    for task, (estimator, y) in targets.items():
        fitted = fit_pipeline({"estimator": estimator}, x, y, seed=0)
        daemon.registry.register(
            task,
            to_onnx(fitted, 4),
            VersionMetadata(task=task, feature_names=("a", "b", "c", "d")),
            actor="test",
            stage="champion",
        )
    token = new_token()
    daemon.store.add_token(
        name="test-scorer", role="scorer", token_hash=hash_token(token), actor="test"
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield server.url, token
    finally:
        daemon.close()


def _mirror_to(by_task: tuple[str, str], task: str, rid: str, outputs: Any) -> httpx.Response:
    url, token = by_task
    record = {"id": rid, "inputs": [[0.1, 0.2, 0.3, 0.4]] * len(outputs), "outputs": outputs}
    return httpx.post(
        f"{url}/v1/models/{task}/records",
        json={"records": [record]},
        headers={"Authorization": f"Bearer {token}"},
    )


LOGITS = {
    "binary": ([[0.2, 0.8], [-1.5, 1.5]], "records[0].outputs", "-1.5", "row 1, column 0"),
    "multiclass": ([[0.1, 0.2, 0.7], [0.3, 2.5, -1.0]], "records[0].outputs", "2.5", "row 1"),
}


@pytest.mark.parametrize("task", list(LOGITS))
def test_a_classifier_s_mirrored_outputs_outside_0_1_are_refused(
    by_task: tuple[str, str], task: str
) -> None:
    """Logits mirrored for a classifier were stored as its probabilities and corrupted
    realised metrics, CBPE and paired comparisons without a word."""
    outputs, where, value, at = LOGITS[task]
    r = _mirror_to(by_task, task, f"logits-{task}", outputs)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_output"), r.text
    message = r.json()["error"]
    assert where in message and value in message and at in message and "[0, 1]" in message


@pytest.mark.parametrize("task", list(LOGITS))
def test_a_classifier_s_mirrored_probabilities_are_accepted_at_the_bounds(
    by_task: tuple[str, str], task: str
) -> None:
    width = 2 if task == "binary" else 3
    outputs = [[1.0] + [0.0] * (width - 1), [0.0] * (width - 1) + [1.0]]
    r = _mirror_to(by_task, task, f"bounds-{task}", outputs)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


@pytest.mark.parametrize("task", list(LOGITS))
def test_a_classifier_s_mirrored_probabilities_off_by_float32_rounding_are_accepted(
    by_task: tuple[str, str], task: str
) -> None:
    """A random forest's float32 mean of its trees' leaves gives 1.0000001 and -1.2e-07:
    the mirror refused such a serving stack's whole batch as logits, while registration
    allows that rounding (1e-4 either side)."""
    width = 2 if task == "binary" else 3
    outputs = [[1.0000001] + [-1.2e-07] * (width - 1), [-1.2e-07] * (width - 1) + [1.0000001]]
    r = _mirror_to(by_task, task, f"rounded-{task}", outputs)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_a_regressor_s_mirrored_outputs_may_be_any_float32(by_task: tuple[str, str]) -> None:
    r = _mirror_to(by_task, "regression", "any-value", [[-12.5], [3e6]])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
