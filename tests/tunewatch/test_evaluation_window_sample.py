"""A window of ``evaluation.window_s`` holding more requests than
``evaluation.max_window_requests`` is read as a uniform sample of them: an evaluation of
a 30-day window over 2M requests read three whole windows in the scoring process (55 s of
CPU, 1.1 GB more memory, scoring's p99 14.7 -> 91 ms)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConfigError
from tunewatch._example import ExampleModel
from tunewatch.store import EvaluationRow

REQUESTS = 2_000
MAX = 500  # so a sample of 1 in 4 (2,000 / 4 = 500)


def _daemon(tmp_path: Path, trained: list[ExampleModel], max_requests: int) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_s": 12 * 3600,
                        "max_window_requests": max_requests,
                        "decay": {"window_s": 3600, "maturity_s": 60},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    return d


@pytest.fixture
def sampled(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """``REQUESTS`` labelled requests six hours old, at most ``MAX`` read a window."""
    d = _daemon(tmp_path, trained, MAX)
    try:
        feed(d, Clock(), 0, REQUESTS, shift=0.0, seed=7)
        yield d
    finally:
        d.close()


def _evaluate(d: Daemon) -> dict[str, EvaluationRow]:
    return {r.kind: r for r in d.evaluator.evaluate(MODEL)}


def test_a_window_past_max_window_requests_is_read_as_a_sample_and_says_so(
    sampled: Daemon,
) -> None:
    rows = _evaluate(sampled)
    drift, labels, estimate = (
        rows["drift"].payload,
        rows["labels"].payload,
        rows["estimate"].payload,
    )
    assert drift["sample"] == labels["sample"] == estimate["sample"] == 4
    # 1 in 4 by a hash of the request id: 500 expected, a binomial spread of 19
    assert 400 <= drift["n_current"] <= 600
    assert 400 <= labels["n"] <= 600 and 400 <= estimate["n"] <= 600
    assert drift["label_window"]["sample"] == 4 and 400 <= drift["label_window"]["n"] <= 600


def test_the_same_requests_are_sampled_every_time_and_the_report_tests_them(
    sampled: Daemon,
) -> None:
    first, again = _evaluate(sampled)["drift"], _evaluate(sampled)["drift"]
    assert first.payload["judged_rows"] == again.payload["judged_rows"]
    sampled.evaluator.drift_report(MODEL, first.id)
    [report] = sampled.store.list_evaluations(MODEL, kind="drift_report", limit=1)
    assert report.payload["same_rows"] is True
    assert report.payload["n_current"] == first.payload["n_current"]


def test_a_window_within_max_window_requests_is_read_whole(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(tmp_path, trained, REQUESTS)
    try:
        feed(d, Clock(), 0, REQUESTS, shift=0.0, seed=7)
        drift = _evaluate(d)["drift"].payload
        assert drift["n_current"] == REQUESTS and "sample" not in drift
    finally:
        d.close()


def test_a_max_window_requests_below_drift_min_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`max_window_requests` \(50\) must be at least"):
        build_config(
            {
                "data_dir": str(tmp_path),
                "models": [
                    {
                        "name": MODEL,
                        "task": "binary",
                        "evaluation": {"window_s": 3600, "max_window_requests": 50},
                    }
                ],
            },
            env={},
        )
