"""A challenger that left its model's line-up (retired, rolled back) while its jobs were
queued scores none of them: each skipped (job, challenger) pair is reported to
``on_drop`` as ``"left_lineup"``; the challengers still in the line-up score the job."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest
from shadow_models import N_FEATURES, Exported

from shadow import LoadedVersion, ShadowJob, ShadowQueue, ShadowResult


def _challenger(exported: Exported, version: int) -> LoadedVersion:
    return LoadedVersion(version=version, model=exported.model, hyperparameter_set="hp")


class _Lineups:
    """``is_live`` over a set of (model, version) pairs, recording every question."""

    def __init__(self, live: set[tuple[str, int]]) -> None:
        self.live = live
        self.asked: list[tuple[str, int]] = []

    def __call__(self, model: str, version: int) -> bool:
        self.asked.append((model, version))
        return (model, version) in self.live


def _run(q: ShadowQueue, jobs: Sequence[ShadowJob]) -> None:
    """Queue ``jobs`` in one hand-off before any worker runs (one drain), then drain."""
    assert q.submit_many(jobs) == len(jobs)
    q.start()
    q.close()


def test_a_job_scores_for_its_live_challenger_and_counts_one_pair_for_the_retired_one(
    logistic: Exported, boosting: Exported
) -> None:
    x = np.zeros((2, N_FEATURES), np.float32)
    live, retired = _challenger(logistic, 2), _challenger(boosting, 3)
    results: list[ShadowResult] = []
    drops: list[tuple[list[tuple[str, str]], str]] = []
    lineups = _Lineups({("m", 1), ("m", 2)})
    q = ShadowQueue(
        maxsize=8,
        on_result=results.extend,
        on_drop=lambda jobs, reason: drops.append(
            ([(j.model, j.request_id) for j in jobs], reason)
        ),
        is_live=lineups,
    )
    _run(q, [ShadowJob("m", f"r{i}", x, (live, retired)) for i in range(3)])
    assert [(r.request_id, r.version, r.error) for r in results] == [
        ("r0", 2, None),
        ("r1", 2, None),
        ("r2", 2, None),
    ]
    assert drops == [([("m", "r0"), ("m", "r1"), ("m", "r2")], "left_lineup")]
    assert q.skipped == 3 and q.processed == 3 and q.dropped == 0 and q.depth == 0
    assert lineups.asked == [("m", 2), ("m", 3)]  # once per drain group, not per job


def test_a_job_whose_challengers_all_left_counts_each_pair(
    logistic: Exported, boosting: Exported
) -> None:
    x = np.zeros((1, N_FEATURES), np.float32)
    drops: list[tuple[int, str]] = []
    results: list[ShadowResult] = []
    q = ShadowQueue(
        maxsize=8,
        on_result=results.extend,
        on_drop=lambda jobs, reason: drops.append((len(jobs), reason)),
        is_live=_Lineups(set()),
    )
    pair = (_challenger(logistic, 2), _challenger(boosting, 3))
    _run(q, [ShadowJob("m", "r0", x, pair), ShadowJob("m", "r1", x, pair)])
    assert results == []
    assert drops == [(4, "left_lineup")] and q.skipped == 4
    assert q.processed == 0 and q.depth == 0  # not scored: not processed


def test_liveness_is_asked_per_model_even_when_models_share_a_challenger(
    logistic: Exported,
) -> None:
    """Two models serving the same artefact as the same version share an equal
    challenger: retired from one, it still scores for the other."""
    x = np.zeros((1, N_FEATURES), np.float32)
    shared = (_challenger(logistic, 2),)
    results: list[ShadowResult] = []
    drops: list[tuple[list[str], str]] = []
    q = ShadowQueue(
        maxsize=8,
        on_result=results.extend,
        on_drop=lambda jobs, reason: drops.append(([j.model for j in jobs], reason)),
        is_live=_Lineups({("a", 2)}),
    )
    _run(q, [ShadowJob("a", "r0", x, shared), ShadowJob("b", "r1", x, shared)])
    assert [(r.model, r.version) for r in results] == [("a", 2)]
    assert drops == [(["b"], "left_lineup")]


def test_a_failing_liveness_check_is_logged_and_the_challenger_scores(
    logistic: Exported, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model: str, version: int) -> bool:
        raise RuntimeError("line-up unreadable")

    x = np.zeros((1, N_FEATURES), np.float32)
    results: list[ShadowResult] = []
    q = ShadowQueue(maxsize=8, on_result=results.extend, is_live=broken)
    caplog.set_level(logging.ERROR, logger="shadow._queue")
    _run(q, [ShadowJob("m", "r0", x, (_challenger(logistic, 2),))])
    assert [(r.version, r.error) for r in results] == [(2, None)]
    assert q.skipped == 0
    (record,) = caplog.records
    assert "model=m version=2" in record.getMessage() and record.exc_info is not None
