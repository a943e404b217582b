"""A daemon whose SQLite data directory is removed while it serves answers 503
``store_unavailable`` and is not ready, instead of acknowledging requests and labels
whose records went into an unlinked file, lost at the next start (see
tests/tunewatch/store/test_store_file_removed.py for the store's side)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
READY_ROUTES = ("/readyz", "/v2/health/ready", f"/v2/models/{MODEL}/ready")
UNAVAILABLE = {"error": "the store is unavailable; retry later", "code": "store_unavailable"}


@pytest.fixture
def replica(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path / "data", trained) as served:
        yield served


def _infer(running: Running, request_id: str) -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}],
    }
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )


def _feedback(running: Running, request_id: str) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/feedback",
        json={"items": [{"request_id": request_id, "label": 1}]},
        headers=running.auth("labeller"),
    )


def test_a_replica_whose_data_directory_is_removed_answers_503_and_is_not_ready(
    replica: Running,
) -> None:
    assert _infer(replica, "before").status_code == 200
    assert [httpx.get(f"{replica.url}{r}").status_code for r in READY_ROUTES] == [200] * 3
    shutil.rmtree(replica.daemon.config.data_dir)

    answers = [_infer(replica, f"after-{i}") for i in range(3)]
    answers.append(_feedback(replica, "before"))
    for r in answers:
        assert (r.status_code, r.json()) == (503, UNAVAILABLE), r.text
    for route in READY_ROUTES:
        r = httpx.get(f"{replica.url}{route}")
        assert (r.status_code, r.json()["code"]) == (503, "store_unavailable"), (route, r.text)
