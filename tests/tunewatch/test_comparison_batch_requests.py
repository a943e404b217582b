"""Batch requests on a real store: the paired test and both rollback watches count
requests, not rows. A request's rows share its traffic segment; counted as independent
observations, five 100-row requests met the burn-in of "500 paired requests", and an
exchangeable challenger was promoted in 18 % of seeded runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    Traffic,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
)
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonResult, ComparisonRunner, GuardrailSettings
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store

ROWS = 100  # rows per request
MIN_N = 20  # the burn-in, in requests
# The latency ratio is replayed on the recorded requests, batches of 100 rows
# here, where the example gradient boosting runs ~7x the logistic model: off, as these
# tests are about what a look counts.
NO_RATIO = GuardrailSettings(max_memory_ratio=100.0, max_latency_p99_ratio=None)


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def write_batches(
    store: Store,
    requests: Sequence[int],
    t: Traffic,
    answers: dict[int, np.ndarray],
    roles: dict[int, str],
    *,
    received_at: datetime | None = None,
) -> None:
    """Requests ``requests`` of ``ROWS`` rows each (request ``i`` holds rows
    ``i*ROWS .. (i+1)*ROWS`` of the traffic), each version's output on them and their
    labels, the way the daemon records a batch request."""
    at = received_at or datetime.now(UTC)
    reqs, outs, labels = [], [], []
    for j, i in enumerate(requests):
        s, rid = slice(i * ROWS, (i + 1) * ROWS), f"r{i}"
        x = np.ascontiguousarray(t.x[s], dtype=np.float32)
        reqs.append(
            RequestRecord(
                MODEL, rid, at + timedelta(milliseconds=j), "infer", ROWS, 8, x.tobytes(), None
            )
        )
        for version, values in answers.items():
            v = np.ascontiguousarray(values[s], dtype=np.float32)
            outs.append(
                OutputRecord(
                    MODEL, rid, version, roles[version], 0.001, ROWS, v.shape[1], v.tobytes()
                )  # type: ignore[arg-type]
            )
        labels.append(LabelItem(rid, [float(v) for v in t.y[s]]))
    store.write_records(reqs, outs)
    store.add_labels(MODEL, labels)


def _kind(loop: ComparisonRunner, kind: str) -> ComparisonResult | None:
    found = [r for r in loop.run(MODEL) if r.kind == kind]
    assert len(found) <= 1
    return found[0] if found else None


def test_a_paired_look_counts_batch_requests_and_decides_only_after_min_n_of_them(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A clearly better challenger (the true probabilities) on 100-row requests, 4
    requests a run: each look's ``n`` is the requests consumed so far, and none decides
    before ``min_n`` requests (rows counted, the first look had n = 400)."""
    t = traffic(trained, 40 * ROWS, seed=13)
    loop = runner(daemon, min_n=MIN_N, planned_n=100, guardrails=NO_RATIO)
    roles = {1: "champion", 2: "challenger"}
    answers = {1: t.logistic, 2: oracle(t.x)}
    looks = []
    for first in range(0, 40, 4):
        write_batches(daemon.store, range(first, first + 4), t, answers, roles)
        paired = _kind(loop, "paired")
        assert paired is not None and paired.look is not None
        assert paired.fed == 4
        looks.append((paired.look.n, paired.decision))
        if paired.decision != "continue":
            break
    assert [n for n, _ in looks] == list(range(4, 4 * len(looks) + 1, 4))
    assert all(decision == "continue" for n, decision in looks if n < MIN_N)
    assert looks[-1] == (20, "challenger_better"), looks
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def test_the_paired_watch_counts_batch_requests_to_its_end(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A watch of ``watch_requests`` = 20 ends after 20 batch requests (rows counted, it
    ended after 5 of them: 500 rows)."""
    t = traffic(trained, 40 * ROWS, seed=17)
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="test", reason="v2")
    assert outcome.status == "promoted"
    loop = runner(daemon, min_n=MIN_N, rollback={"watch_requests": MIN_N}, guardrails=NO_RATIO)
    first_run = _kind(loop, "rollback_watch")
    assert first_run is not None and first_run.action == "none"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"  # kept to pair with
    roles = {2: "champion", 1: "challenger"}
    swap = np.repeat(np.random.default_rng(2).random(40) < 0.5, ROWS)[:, None]
    answers = {2: np.where(swap, t.gbm, t.logistic), 1: np.where(swap, t.logistic, t.gbm)}
    seen = []
    for first in range(0, 40, 5):
        write_batches(daemon.store, range(first, first + 5), t, answers, roles)
        watch = _kind(loop, "rollback_watch")
        assert watch is not None
        if watch.action != "none":
            break
        assert watch.look is not None and watch.fed == 5
        seen.append(watch.look.n)
    assert seen == [5, 10, 15, 20]
    assert watch.action == "watch_passed"
    test = loop.comparisons.get_test(watch.test_id)
    assert test.outcome == {"action": "watch_passed", "n": 20}


def _promote_after_batches(d: Daemon, t: Traffic, requests: int) -> None:
    """v1 answered ``requests`` labelled batch requests an hour ago; v2 is promoted."""
    write_batches(
        d.store,
        range(requests),
        t,
        {1: t.logistic},
        {1: "champion"},
        received_at=datetime.now(UTC) - timedelta(hours=1),
    )
    outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="v2")
    assert outcome.status == "promoted"


def test_the_unpaired_watch_baseline_counts_batch_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """10 baseline requests are under a burn-in of 20 requests however many rows they
    hold (rows counted, 1,000 rows passed it)."""
    t = traffic(trained, 10 * ROWS, seed=19)
    _promote_after_batches(daemon, t, 10)
    loop = runner(daemon, rollback={"paired": False, "min_n": MIN_N}, guardrails=NO_RATIO)
    watch = _kind(loop, "rollback_watch")
    assert watch is not None and watch.action == "closed"
    assert watch.detail == (
        f"v1 recorded only 10 labelled requests before the promotion (need {MIN_N}): "
        "nothing to compare with",
    )


def test_the_unpaired_watch_counts_batch_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Each side counts requests: the baseline's and the new champion's, whose losses
    are compared per row, with a variance over requests."""
    t = traffic(trained, 60 * ROWS, seed=23)
    _promote_after_batches(daemon, t, 30)
    loop = runner(daemon, rollback={"paired": False, "min_n": MIN_N}, guardrails=NO_RATIO)
    seen = []
    for first in range(30, 50, 5):
        write_batches(daemon.store, range(first, first + 5), t, {2: t.gbm}, {2: "champion"})
        watch = _kind(loop, "rollback_watch")
        assert watch is not None and watch.look is not None and watch.fed == 5
        seen.append(watch.look.n)
    assert seen == [5, 10, 15, 20]
    test = loop.comparisons.get_test(watch.test_id)
    assert test.state["baseline_n"] == 30
    assert test.state["stats_with_cubes"][0][:2] == [30, 30 * ROWS]  # requests, rows
    assert test.state["stats_with_cubes"][1][:2] == [20, 20 * ROWS]
