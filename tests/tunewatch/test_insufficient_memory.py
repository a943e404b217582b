"""A run onnxruntime cannot allocate memory for is answered 503 and is no failed run.

It was 422 ``run_failed`` with onnxruntime's source path in the message, counted as the
version's failed run: a champion starved of memory by a large batch or a busy host
counted towards its rollback (``guardrails.max_error_rate`` through the rollback watch),
a challenger's shadow runs towards refusing its promotion, and the client was told the
model was at fault. Now it is 503 ``insufficient_memory`` (retry later or with fewer
rows), counted in ``tunewatch_http_errors_total``; a shadow run so starved is counted in
``tunewatch_shadow_dropped_total{reason="insufficient_memory"}``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.shadow.shadow_models import ALLOCATING_X0, allocating_model
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_error_rate_guardrail import failures_exported, infer_rows, wait_for_runs
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch._version_series import RUN_FAILURE_CODES


def _allocating_like(example: ExampleModel) -> ExampleModel:
    meta = replace(example.metadata, hyperparameters={"estimator": "allocating"})
    return ExampleModel(name="allocating", onnx=allocating_model(8), metadata=meta)


def _rows(n: int, starved: list[int]) -> np.ndarray:
    """``n`` rows of the example's features, those at ``starved`` with x0 = 7 (a run the
    allocating model cannot get the memory for)."""
    x, _ = example_data(n, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[starved, 0] = ALLOCATING_X0
    return x


@pytest.fixture
def daemons(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[dict[str, Daemon]]:
    """The allocating model as champion (a logistic shadow), and as shadow."""
    allocating = _allocating_like(trained[1])
    made = {
        "champion": make_daemon(tmp_path / "c", [allocating, trained[1]]),
        "shadow": make_daemon(tmp_path / "s", [trained[0], allocating]),
    }
    for d, tokens in made.values():
        d.tokens_for_test = tokens  # type: ignore[attr-defined]
    yield {role: d for role, (d, _) in made.items()}
    for d, _ in made.values():
        d.close()


def _exported(d: Daemon, name: str, labels: dict[str, str]) -> float | None:
    return d.metrics.registry.get_sample_value(name, labels)


def test_a_champion_run_short_of_memory_is_503_and_no_failed_run(
    daemons: dict[str, Daemon],
) -> None:
    d = daemons["champion"]
    starved = [3, 11]
    x = _rows(20, starved)
    token = d.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(d.app) as server:
        answers = infer_rows(server.url, token, x)
        assert [i for i, a in enumerate(answers) if a != 200] == starved
        assert {answers[i] for i in starved} == {"insufficient_memory"}
        champion = wait_for_runs(d, 1, 18, "champion")
    assert (champion.runs, champion.failures) == (18, 0)
    for code in RUN_FAILURE_CODES:
        assert failures_exported(d, 1, "champion", code) in (None, 0.0), code
    assert _exported(d, "tunewatch_http_errors_total", {"code": "insufficient_memory"}) == 2


def test_a_shadow_run_short_of_memory_is_dropped_not_failed(daemons: dict[str, Daemon]) -> None:
    d = daemons["shadow"]
    starved = [0, 7, 8]
    x = _rows(20, starved)
    token = d.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(d.app) as server:
        assert infer_rows(server.url, token, x) == [200] * 20  # the champion answers all
        champion = wait_for_runs(d, 1, 20, "champion")
        challenger = wait_for_runs(d, 2, 17)
    assert (champion.runs, champion.failures) == (20, 0)
    assert (challenger.runs, challenger.failures) == (17, 0)
    for code in RUN_FAILURE_CODES:
        assert failures_exported(d, 2, "challenger", code) in (None, 0.0), code
    dropped = {"model": MODEL, "reason": "insufficient_memory"}
    assert _exported(d, "tunewatch_shadow_dropped_total", dropped) == 3
    # the 17 it could score are recorded
    recorded = [
        i for i in range(20) if any(o.version == 2 for o in d.store.get_outputs(MODEL, f"q{i}"))
    ]
    assert recorded == [i for i in range(20) if i not in starved]
