"""A retune's training window across generations: a job takes from the champion it was
queued against only the traffic that champion was tuned on (its snapshot's traffic part),
never the rows that champion itself inherited, and no row its own window reads again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tests.tunewatch.one_trial_tuning import one_trial_daemon
from tunewatch._daemon import Daemon
from tunewatch._evaluation_baseline import traffic_part
from tunewatch._example import ExampleModel
from tunewatch._reference import Reference
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_window import training_window
from tunewatch.store import VersionRow


@pytest.fixture
def regime_a(trained: list[ExampleModel]) -> np.ndarray:
    reference = trained[0].reference
    assert reference is not None and reference.labels is not None
    return np.asarray(reference.features, dtype=np.float32)


def _window(d: Daemon, parent: VersionRow) -> tuple[int, np.ndarray, np.ndarray, int]:
    """A manual retune queued now against ``parent`` (the champion), and its window as
    the real builder reads it from the store: (job id, features, labels, traffic rows)."""
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = d.store.get_job(outcome.job_id)
    assert job.spec["champion_version"] == parent.version
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    x, y, n_traffic = training_window(d.store, d.artefacts, model, cfg, job, parent=parent)
    return job.id, x, y, n_traffic


def _register_as_job(
    d: Daemon, trained: list[ExampleModel], job_id: int, x: np.ndarray, y: np.ndarray, n: int
) -> VersionRow:
    """Register and promote what a job of ``job_id`` registers (tunewatch._tuning): its
    training rows as the snapshot, with the job, `rows` and `traffic_rows` in details."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    details = {"job": job_id, "rows": int(x.shape[0]), "traffic_rows": n}
    row = d.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, parent_version=champion.version, details=details),
        actor=f"job:{job_id}",
        reference=Reference(features=x, labels=y.astype(np.float64)),
    )
    d.store.promote(MODEL, row.version, actor="t", reason="tuned")
    # and ends (a retune while it is queued would be its duplicate, on its parent)
    d.store.finish_job(job_id, status="succeeded", result={"version": row.version})
    return row


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in np.ascontiguousarray(x, dtype=np.float32)}


@pytest.fixture
def three_generations(
    trained: list[ExampleModel], tmp_path: Path, regime_a: np.ndarray
) -> Iterator[tuple[Daemon, np.ndarray, np.ndarray, Clock]]:
    """v1 by hand (regime A); 300 labelled requests at regime B; v2 tuned on them (its
    window: v1's reference, then B). Yields the daemon, B's rows as v2 trained on them,
    v2's window and the traffic clock; a window holds 300 rows."""
    d = one_trial_daemon(tmp_path, trained, window_rows=300)
    try:
        clock = Clock()
        feed(d, clock, 0, 300, shift=1.5, seed=3)  # regime B
        v1 = d.store.champion(MODEL)
        assert v1 is not None
        job, x2, y2, n2 = _window(d, v1)
        assert n2 == 300 and x2.shape[0] == regime_a.shape[0] + 300
        np.testing.assert_array_equal(x2[: regime_a.shape[0]], regime_a)  # v1's reference
        _register_as_job(d, trained, job, x2, y2, n2)
        yield d, x2[-n2:], x2, clock
    finally:
        d.close()


def test_a_third_generation_trains_on_its_parent_s_traffic_not_the_first_reference(
    three_generations: tuple[Daemon, np.ndarray, np.ndarray, Clock], regime_a: np.ndarray
) -> None:
    """v3's window held v1's reference (regime A, before two drifts) in front of its own
    traffic: every generation carried the first one's rows, and stored them again. It
    holds v2's traffic part (regime B, what v2 was tuned on), then its own (C)."""
    d, regime_b, _, clock = three_generations
    feed(d, clock, 1_000, 300, shift=3.0, seed=4)  # regime C, newer than B
    v2 = d.store.champion(MODEL)
    assert v2 is not None and v2.version == 2
    _, x3, _, n3 = _window(d, v2)
    assert n3 == 300
    assert x3.shape[0] == 600
    np.testing.assert_array_equal(x3[:300], regime_b)  # v2's traffic part, in order
    assert abs(float(x3[300:, 0].mean()) - 3.0) < 0.2  # then regime C
    assert not _rows(x3) & _rows(regime_a)  # nothing of regime A


def test_a_job_takes_none_of_its_parent_s_traffic_that_its_window_reads_again(
    three_generations: tuple[Daemon, np.ndarray, np.ndarray, Clock], regime_a: np.ndarray
) -> None:
    """With 100 new requests, a 300-row window reads the newest 200 of v2's traffic
    again: only the 100 before them come from v2's snapshot, so no row is there twice."""
    d, regime_b, _, clock = three_generations
    feed(d, clock, 1_000, 100, shift=3.0, seed=4)
    v2 = d.store.champion(MODEL)
    assert v2 is not None
    _, x3, _, n3 = _window(d, v2)
    assert n3 == 300  # 200 of B again, 100 of C
    assert x3.shape[0] == 400
    np.testing.assert_array_equal(x3[:300], regime_b)  # 100 from v2's snapshot, 200 read
    assert len(_rows(x3)) == 400  # no row twice
    assert not _rows(x3) & _rows(regime_a)


def test_a_job_with_no_new_traffic_takes_nothing_from_its_parent(
    three_generations: tuple[Daemon, np.ndarray, np.ndarray, Clock],
) -> None:
    """Queued again with no new traffic, the window reads all of v2's traffic again."""
    d, regime_b, _, _ = three_generations
    v2 = d.store.champion(MODEL)
    assert v2 is not None
    _, x3, _, n3 = _window(d, v2)
    assert n3 == 300
    np.testing.assert_array_equal(x3, regime_b)


def test_a_third_generation_s_snapshot_holds_its_parent_s_traffic_then_its_own(
    three_generations: tuple[Daemon, np.ndarray, np.ndarray, Clock], regime_a: np.ndarray
) -> None:
    """The job's version stores its window as its snapshot: [v2's traffic, then its own],
    with `rows` and `traffic_rows` telling the evaluation which part is its own."""
    d, regime_b, _, clock = three_generations
    feed(d, clock, 1_000, 300, shift=3.0, seed=4)
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "drift again"})
    assert outcome.job_id is not None
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
    )
    job = runner.run(outcome.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None
    v3 = d.store.get_version(MODEL, job.result["version"])
    assert (v3.details["rows"], v3.details["traffic_rows"]) == (600, 300)
    snapshot = Reference.from_bytes(d.artefacts.get(v3.details["reference_sha256"], ".npz"))
    np.testing.assert_array_equal(snapshot.features[:300], regime_b)
    assert not _rows(snapshot.features) & _rows(regime_a)
    monitored = traffic_part(snapshot, v3.details, min_rows=30, label="v3")
    np.testing.assert_array_equal(monitored.features, snapshot.features[300:])
