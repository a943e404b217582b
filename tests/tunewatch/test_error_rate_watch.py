"""A new champion failing on a share of its requests is rolled back by the watch.

A champion's failed runs (422 ``non_finite_output``, ``run_failed``; 503 ``run_timeout``)
left nothing in the store: the rollback watch compares realised losses on the requests
it answered, so a promoted version failing on 2% of requests served them errors for
good. The recorder now counts the champion's runs and failures too, and the watch rolls
back once they are evidence, valid at every look, that its failure rate is above
``guardrails.max_error_rate`` (:func:`shadow.stats.failure_rate_look`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_comparison_loop import copy_daemon, runner
from tests.tunewatch.test_error_rate_guardrail import TAIL, nan_tail_model
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import RunTally


@pytest.fixture
def nan_champion(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """The model answering NaN past x0 = 2 as champion v1, the gbm in shadow as v2."""
    meta = replace(trained[0].metadata, hyperparameters={"estimator": "nan_tail"})
    champion = ExampleModel(name="nan-tail", onnx=nan_tail_model(), metadata=meta)
    d, tokens = make_daemon(tmp_path / "data", [champion, trained[1]])
    d.tokens_for_test = tokens  # type: ignore[attr-defined]
    yield d
    d.close()


def test_the_champion_s_runs_are_counted_with_the_failed_ones(nan_champion: Daemon) -> None:
    x, _ = example_data(40, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::10, 0] = TAIL
    token = nan_champion.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    codes = []
    with BackgroundServer(nan_champion.app) as server:
        for i, row in enumerate(x):
            body = {
                "id": f"q{i}",
                "inputs": [
                    {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": row.tolist()}
                ],
            }
            r = httpx.post(
                f"{server.url}/v2/models/{MODEL}/infer",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            codes.append(r.status_code if r.status_code == 200 else r.json()["code"])
        deadline = time.monotonic() + 10.0
        while (tally := nan_champion.store.run_tally(MODEL, 1, "champion")) is None or (
            tally.runs < 40
        ):
            assert time.monotonic() < deadline, tally
            time.sleep(0.01)
    assert codes == ["non_finite_output" if i % 10 == 0 else 200 for i in range(40)]
    assert tally == RunTally(
        model=MODEL,
        version=1,
        role="champion",
        runs=40,
        failures=4,
        last_failure="non_finite_output",
    )


@pytest.fixture(scope="module")
def template(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    d, _ = make_daemon(path, trained)
    d.close()
    return path


def _count(d: Daemon, runs: int, failures: int) -> None:
    """v2's runs as champion, as the recorder counts them."""
    d.store.write_records(
        [],
        [],
        tallies=[
            RunTally(
                model=MODEL,
                version=2,
                role="champion",
                runs=runs,
                failures=failures,
                last_failure="non_finite_output" if failures else None,
            )
        ],
    )


@pytest.mark.parametrize(
    ("before", "during", "action"),
    [
        ((0, 0), (300, 6), "rolled_back"),
        ((0, 0), (2000, 1), "none"),
        ((100, 50), (100, 0), "none"),
    ],
    ids=["two_percent", "one_in_two_thousand", "failures_before_the_watch"],
)
def test_the_watch_rolls_back_a_champion_failing_past_the_limit(
    template: Path,
    tmp_path: Path,
    before: tuple[int, int],
    during: tuple[int, int],
    action: str,
) -> None:
    """Counted from the watch's start: 6 failures in 300 runs roll back; 1 in 2,000
    (under the 0.001 limit) does not, nor do failures of an earlier stint as champion."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        _count(d, *before)
        outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="try v2")
        assert outcome.status == "promoted"
        loop = runner(d)
        [started] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        assert started.action == "none"
        _count(d, *during)
        [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        assert watch.action == action
        champion = d.store.champion(MODEL)
        assert champion is not None
        if action == "none":
            assert champion.version == 2
            return
        assert champion.version == 1 and d.store.get_version(MODEL, 2).stage == "rolled_back"
        [event] = d.store.list_events(model=MODEL, type="rollback_triggered")
        assert event.payload["failed_runs"] == {
            "failures": 6,
            "runs": 300,
            "limit": 0.001,
            "last_failure": "non_finite_output",
        }
        [reason] = watch.detail
        assert reason == (
            f"rollback watch {watch.test_id}: v2 failed 6 of its 300 runs as champion since "
            "the watch began (0.02; limit `max_error_rate` 0.001), the last with "
            "`non_finite_output`"
        )
    finally:
        d.close()
