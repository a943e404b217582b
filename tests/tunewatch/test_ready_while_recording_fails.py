"""Readiness says whether requests can be recorded: while the recorder's commits fail
for the store (a full disk under SQLite), ``/readyz``, ``/v2/health/ready`` and the
model's ready route answer 503 ``store_unavailable``, as every inference does.

They answered 200 on a full disk: the store's ping only reads, so a load balancer kept
sending every request to a replica that answered each one 503. Readiness follows the
newest commit: failed within ``READY_RECHECK_S``, not ready; a commit that succeeds, or
that long without a failed one (no traffic left to fail: a replica out of rotation
would otherwise never come back), ready again.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, serving
from tests.tunewatch.tmpfs import filled, mounted_tmpfs
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch._recorder import READY_RECHECK_S

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
READY_ROUTES = ("/readyz", "/v2/health/ready", f"/v2/models/{MODEL}/ready")


@pytest.fixture
def on_a_small_disk(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    with mounted_tmpfs(tmp_path / "data", "size=32m") as root:
        with serving(root, trained) as served:
            yield served


def _infer(running: Running, rows: int = 64) -> httpx.Response:
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 8], "data": ROW * rows}]
    }
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )


def _ready(running: Running) -> list[tuple[int, str | None]]:
    answers = [httpx.get(f"{running.url}{route}") for route in READY_ROUTES]
    return [(r.status_code, r.json().get("code") if r.content else None) for r in answers]


def test_a_replica_whose_commits_fail_on_a_full_disk_is_not_ready_until_one_succeeds(
    on_a_small_disk: Running,
) -> None:
    running = on_a_small_disk
    assert _infer(running).status_code == 200
    assert [status for status, _ in _ready(running)] == [200, 200, 200]
    root = filled(Path(running.daemon.config.data_dir))
    failed = [_infer(running) for _ in range(20)]
    assert any(r.status_code == 503 for r in failed), [r.status_code for r in failed]
    # a commit may still fit into pages a checkpoint freed meanwhile (one did, in CI under
    # load), and its success makes the replica ready again: read readiness after a failure
    for _ in range(40):
        if failed[-1].status_code == 503:
            break
        failed.append(_infer(running))
    assert all(r.json()["code"] == "store_unavailable" for r in failed if r.status_code == 503)
    if failed[-1].status_code != 503:
        pytest.fail(f"the last of {len(failed)} commits on a full disk succeeded")
    assert _ready(running) == [(503, "store_unavailable")] * len(READY_ROUTES)

    (root / "filler").unlink()
    assert _infer(running).status_code == 200
    assert [status for status, _ in _ready(running)] == [200, 200, 200]


def test_readiness_returns_once_no_commit_failed_for_the_recheck_span(
    on_a_small_disk: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = on_a_small_disk
    root = filled(Path(running.daemon.config.data_dir))
    failed = [_infer(running) for _ in range(20)]
    assert failed[-1].status_code == 503, failed[-1].text
    assert _ready(running)[0] == (503, "store_unavailable")
    recorder = running.daemon.recorder
    later = recorder._monotonic() + READY_RECHECK_S + 1  # its injected clock
    monkeypatch.setattr(recorder, "_monotonic", lambda: later)
    assert [status for status, _ in _ready(running)] == [200, 200, 200]
    (root / "filler").unlink()


def test_each_readiness_check_raises_an_error_of_its_own(on_a_small_disk: Running) -> None:
    """The recorder's error was raised itself by every check: its traceback grew by each
    raise, from every probe's thread at once."""
    running = on_a_small_disk
    root = filled(Path(running.daemon.config.data_dir))
    failed = [_infer(running) for _ in range(20)]
    assert failed[-1].status_code == 503, failed[-1].text
    raised = []
    for _ in range(3):
        with pytest.raises(StoreUnavailableError) as info:
            running.daemon.runtime.check_recordable()
        raised.append(info.value)
    assert len({id(e) for e in raised}) == 3
    depths = [len(traceback.extract_tb(e.__traceback__)) for e in raised]
    assert depths[0] == depths[-1], depths
    (root / "filler").unlink()
