"""A run onnxruntime cannot allocate its tensors for is the host's condition, not the
model's fault nor the client's.

Such a run (a batch too large for the memory left) was :class:`~shadow.ShadowError`
``run_failed``: answered 422 with onnxruntime's source path and function in the message,
and counted as the model's failed run, which the rollback watch and the
``max_error_rate`` guardrail hold against it. It is now ``insufficient_memory``, with a
message of its own that keeps the size asked for."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from shadow import InsufficientMemoryError, InvalidInputError, OnnxModel, ShadowError, _onnx
from shadow._probe import EXIT_MEMORY, probe
from shadow._probe import main as probe_main
from tests.shadow.shadow_models import ALLOCATING_X0, N_FEATURES, allocating_model


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.from_bytes(allocating_model())


def _rows(n: int, x0: float = 0.5) -> np.ndarray:
    x = np.zeros((n, N_FEATURES), np.float32)
    x[:, 0] = x0
    return x


def test_a_run_that_cannot_allocate_is_insufficient_memory(
    model: OnnxModel, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_onnx, "_memory_logged_at", [-math.inf])  # none logged yet
    x = _rows(3)
    x[1, 0] = ALLOCATING_X0
    with caplog.at_level(logging.WARNING, logger="shadow._onnx"):
        with pytest.raises(ShadowError) as caught:
            model.run(x)
    assert not isinstance(caught.value, InvalidInputError | ValueError)
    assert isinstance(caught.value, InsufficientMemoryError)
    assert caught.value.code == "insufficient_memory" and caught.value.rows == 3
    message = caught.value.message
    assert "3 rows" in message and f"{4 * 2**48 * 3:,} bytes" in message, message
    assert "onnxruntime_src" not in message and "BFCArena" not in message, message
    # the runtime's own text is for the log
    assert any("BFCArena" in r.getMessage() for r in caplog.records), caplog.text


def test_the_session_scores_on_after_a_run_that_could_not_allocate(model: OnnxModel) -> None:
    with pytest.raises(ShadowError):
        model.run(_rows(1, ALLOCATING_X0))
    probabilities = model.run(_rows(2))["probabilities"]
    assert probabilities.shape == (2, 2) and np.isfinite(probabilities).all()


def test_the_probe_refuses_a_candidate_short_of_memory_with_its_own_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A candidate whose run of the probe's rows cannot get its memory is ``load_memory``,
    told what it needed, not the served answer's "retry later or with fewer rows"."""
    path = tmp_path / "candidate.onnx"
    path.write_bytes(allocating_model(at=0.0))  # the probe's rows of zeros allocate
    assert probe_main([str(path)]) == EXIT_MEMORY
    refused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert refused["error"] == "load_memory", refused
    assert refused["message"].startswith("the model needs more memory to score 3 rows"), refused
    assert "retry" not in refused["message"], refused


def test_a_model_allocating_on_other_values_passes_the_probe() -> None:
    answered = probe(allocating_model())  # its rows never hold x0 = 7
    assert "error" not in answered
