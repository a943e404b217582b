"""A mirror call that fails part-way (503: a chunk's commit failed, or
``recording.max_pending_bytes`` refused part of the batch) has the records committed
before the failure shadowed and counted as their commit resolves, as a scored request is.
They were handed to the challengers only once every record had succeeded, and a retry
found them ``duplicates``, which are never shadowed: of 4,000 records stored, 3,872 were
shadowed and counted ``accepted``."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel
from tunewatch._record_rows import output_record, request_record
from tunewatch._recorder_queue import record_size

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
ANSWER = [0.4, 0.6]


def _sample(running: Running, name: str, **labels: str) -> float:
    value = running.daemon.runtime.metrics.registry.get_sample_value(
        name, {"model": MODEL, **labels}
    )
    return value or 0.0


def test_records_committed_before_a_refusal_are_shadowed_and_counted(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The records waiting for the store may hold ten records' bytes: of a chunk of 64
    handed over at once, ten are written and the rest refused (503). The ten are stored,
    counted ``accepted`` and handed to the challenger. The shadow queue holds no job (its
    byte bound is one byte), so each job handed over is counted dropped (``queue_full``)
    as it is handed over: the hand-overs are counted without waiting for a challenger."""
    one = record_size(
        request_record(MODEL, "size", np.float32([ROW]), source="mirror"),
        [output_record(MODEL, "size", 1, "external", np.float32([ANSWER]), None)],
    )
    fits = 10
    extra = {
        "recording": {"max_batch": 64, "max_pending_bytes": fits * one},
        "scoring": {"shadow_queue_max_bytes": 1},
    }
    with serving(tmp_path, trained, extra=extra) as running:
        body = {
            "records": [
                {"id": f"part-{i}", "inputs": [ROW], "outputs": [ANSWER]} for i in range(64)
            ]
        }
        r = httpx.post(
            f"{running.url}/v1/models/{MODEL}/records",
            json=body,
            headers=running.auth("scorer"),
            timeout=60,
        )
        assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
        store = running.daemon.store
        stored = [i for i in range(64) if store.get_request(MODEL, f"part-{i}") is not None]
        assert stored == list(range(fits))
        assert _sample(running, "tunewatch_mirror_records_total", outcome="accepted") == fits
        handed_over = _sample(running, "tunewatch_shadow_dropped_total", reason="queue_full")
        assert handed_over == fits
