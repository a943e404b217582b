"""Mirrored traffic outside the configured feature ranges (``models[].features``) was
already served by the stack: it is recorded, so drift sees it, and only the challengers
skip it (counted). One out-of-range record refused the whole batch (400 ``out_of_range``),
so a stack whose traffic drifted past a bound lost every batch, in-range records
included, and drift on that feature was never seen. An input that cannot be recorded as
it is (the wrong shape, past float32's range) still refuses the batch, and every input
error names its record, as the output errors did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.tunewatch.api.mirror_records import ANSWER, ROW, post_records
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel

DRIFTED = [7.0, *ROW[1:]]  # x0 past its high bound of 4


@pytest.fixture
def ranged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """The example models with x0 bounded to [-4, 4]. The shadow queue holds no job (its
    byte bound is one byte): each job handed to the challenger is counted dropped
    (``queue_full``) as it is handed over, so the hand-overs are counted without waiting
    for a challenger."""
    extra = {
        "models": [
            {
                "name": MODEL,
                "task": "binary",
                "features": [{"name": "x0", "low": -4.0, "high": 4.0}],
            }
        ],
        "scoring": {"shadow_queue_max_bytes": 1},
    }
    with serving(tmp_path, trained, extra=extra) as running:
        yield running


def _sample(running: Running, name: str, **labels: str) -> float:
    value = running.daemon.runtime.metrics.registry.get_sample_value(
        name, {"model": MODEL, **labels}
    )
    return value or 0.0


def test_an_out_of_range_record_is_recorded_and_not_shadowed(ranged: Running) -> None:
    r = post_records(
        ranged,
        {"id": "in-0", "inputs": [ROW], "outputs": [ANSWER]},
        {"id": "drifted", "inputs": [DRIFTED], "outputs": [ANSWER]},
        {"id": "in-1", "inputs": [ROW], "outputs": [ANSWER]},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": [], "conflicts": []}
    stored = ranged.daemon.store.get_request(MODEL, "drifted")
    assert stored is not None and stored.source == "mirror"
    np.testing.assert_array_equal(np.frombuffer(stored.inputs, np.float32), np.float32(DRIFTED))
    assert _sample(ranged, "tunewatch_mirror_records_total", outcome="accepted") == 3
    assert _sample(ranged, "tunewatch_shadow_dropped_total", reason="out_of_range") == 1
    # the two in-range records were handed to the challenger, the drifted one was not; the
    # hand-over runs on the server's loop just after the answer: a request answered after it
    assert httpx.get(f"{ranged.url}/healthz", timeout=30).status_code == 200
    assert _sample(ranged, "tunewatch_shadow_dropped_total", reason="queue_full") == 2


def test_an_input_that_cannot_be_recorded_refuses_the_batch_naming_its_record(
    ranged: Running,
) -> None:
    """Refused records are counted (``outcome="refused"``), every record of the batch."""
    cases = [
        ([ROW[:7]], "shape_mismatch", "records[1].inputs: input 'input' must have shape"),
        ([[1e39, *ROW[1:]]], "out_of_range", "records[1].inputs: input 'input' value 1e+39"),
    ]
    for i, (inputs, code, message) in enumerate(cases):
        r = post_records(
            ranged,
            {"id": f"ok-{i}", "inputs": [ROW], "outputs": [ANSWER]},
            {"id": f"bad-{i}", "inputs": inputs, "outputs": [ANSWER]},
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == code
        assert r.json()["error"].startswith(message), r.json()["error"]
        assert ranged.daemon.store.get_request(MODEL, f"ok-{i}") is None
    assert _sample(ranged, "tunewatch_mirror_records_total", outcome="refused") == 4
    assert _sample(ranged, "tunewatch_mirror_records_total", outcome="accepted") == 0
