"""What a scheduled evaluation's telemetry and a re-tuning job's serving cost read of a
model's versions: every re-tune leaves a version behind, with kilobytes of details, and
both read the latencies of every version the model ever registered, one statement each
(the telemetry read every version whole too): with 2,000 versions, 2,002 statements and
0.2 s on SQLite, 0.6 s on PostgreSQL, for the two versions that answered. They read the
versions that can have answered since their start: the line-up, and those whose stage
changed since then (or within ``STAGE_CHANGE_LAG`` before it).

The reads are counted on the store's engine (``before_cursor_execute``); the rows each
statement fetched are counted by running it again afterwards, against the same data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from retune.space import load_search_space
from tests.tunewatch.conftest import MODEL, Clock, make_daemon
from tests.tunewatch.store_reads import DETAILS, Reads, reads
from tunewatch._daemon import Daemon
from tunewatch._evaluation_telemetry import STAGE_CHANGE_LAG, telemetry_verdict
from tunewatch._example import ExampleModel
from tunewatch._serving_cost import serving_cost
from tunewatch._shipped_spaces import default_search_space
from tunewatch.store import OutputRecord, RequestRecord, Store, Window
from tunewatch.store._schema import model_versions

#: Requests in the window, each answered by the champion and the shadow.
REQUESTS = 30


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Daemon]:
    """v1 champion, v2 shadow, on each backend."""
    d, _ = make_daemon(tmp_path, trained, store_url=store_url)
    try:
        yield d
    finally:
        d.close()


def answered(d: Daemon, clock: Clock, answers: dict[int, str]) -> None:
    """``REQUESTS`` requests, ``clock`` advancing 1 s each, each answered by the versions
    ``answers`` names in the role it gives, with a latency of ``version`` ms."""
    requests, outputs = [], []
    for i in range(REQUESTS):
        clock.now += timedelta(seconds=1)
        requests.append(
            RequestRecord(
                model=MODEL,
                request_id=f"r{i}",
                received_at=clock.now,
                source="infer",
                n_rows=1,
                n_cols=8,
                inputs=np.zeros((1, 8), np.float32).tobytes(),
            )
        )
        outputs.extend(
            OutputRecord(
                model=MODEL,
                request_id=f"r{i}",
                version=version,
                role=role,
                latency_s=version / 1000,
                n_rows=1,
                n_cols=2,
                values=np.asarray([[0.4, 0.6]], np.float32).tobytes(),
                created_at=clock.now,
            )
            for version, role in answers.items()
        )
    d.store.write_records(requests, outputs)


def add_retired(d: Daemon, n: int, *, stage_changed_at: datetime) -> list[int]:
    """``n`` versions added retired, each with a re-tune's details, their stage changed at
    ``stage_changed_at``; their numbers."""
    v1 = d.store.get_version(MODEL, 1)
    added = [
        d.store.add_version(
            model=MODEL,
            artefact_sha256=v1.artefact_sha256,
            hyperparameters=v1.hyperparameters,
            size_bytes=v1.size_bytes,
            actor="t",
            details=DETAILS,
            load_memory_bytes=1000 + i,
            stage="retired",
        ).version
        for i in range(n)
    ]
    with d.store.engine.begin() as conn:
        conn.execute(
            sa.update(model_versions)
            .where(model_versions.c.model == MODEL, model_versions.c.version.in_(added))
            .values(stage_changed_at=stage_changed_at)
        )
    return added


def window(d: Daemon) -> Window:
    return d.store.window(MODEL, n_features=8, with_features=False)


def telemetry(d: Daemon, w: Window) -> tuple[tuple[str, dict[str, Any]], Reads]:
    model = d.store.get_model(MODEL)
    return reads(d.store, lambda: telemetry_verdict(d.store, d.metrics, model, w))


def test_telemetry_reads_do_not_grow_with_the_versions_retired_before_the_window(
    daemon: Daemon,
) -> None:
    clock = Clock()
    answered(daemon, clock, {1: "champion", 2: "challenger"})
    w = window(daemon)
    first, before = telemetry(daemon, w)
    assert first[0] == "ok" and sorted(first[1]["versions"]) == ["1", "2"]
    assert before.details == 2  # the line-up's
    since = clock.now - timedelta(seconds=REQUESTS)
    add_retired(daemon, 200, stage_changed_at=since - timedelta(days=1))
    again, after = telemetry(daemon, w)
    assert again == first
    assert after == before  # the same statements, fetching the same rows, no details more


def test_telemetry_reads_the_versions_taken_out_of_service_since_the_window_began(
    daemon: Daemon,
) -> None:
    """A version retired since the window's oldest request answered in it; so may one
    retired just before it (on a replica that had not yet reloaded its line-up, stamped
    by another host's clock). One retired long before answered nothing since."""
    clock = Clock()
    start = clock.now
    (stale,) = add_retired(daemon, 1, stage_changed_at=start - STAGE_CHANGE_LAG / 2)
    (old,) = add_retired(daemon, 1, stage_changed_at=start - 2 * STAGE_CHANGE_LAG)
    answered(daemon, clock, {1: "champion", 2: "challenger", stale: "challenger"})
    daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="retired in the window")
    (status, payload), read = telemetry(daemon, window(daemon))
    assert status == "ok"
    hp = daemon.store.get_version(MODEL, 2).hyperparameter_set_id
    assert sorted(payload["versions"], key=int) == ["1", "2", str(stale)]
    assert payload["versions"]["2"]["p99"] == pytest.approx(0.002)
    assert payload["versions"]["2"]["n"] == REQUESTS
    assert payload["versions"]["2"]["hyperparameter_set"] == hp
    assert payload["versions"][str(stale)]["memory_bytes"] == 1000
    assert read.details == 3  # v1, v2 and the stale one; not the old one's
    assert str(old) not in payload["versions"]


def test_serving_cost_latency_reads_do_not_grow_with_the_versions_retired_before_the_day(
    daemon: Daemon,
) -> None:
    """The predictor learns from every version's memory (every version is read), but
    only the versions in service in the last day can have a champion's latency there."""
    clock = Clock()
    answered(daemon, clock, {1: "champion", 2: "challenger"})
    cfg = daemon.config.model_or_default(MODEL, "binary")
    space = load_search_space(default_search_space("binary"))

    def cost() -> tuple[Any, ...]:
        champion = daemon.store.champion(MODEL)
        predictor, ceiling, notes = serving_cost(
            daemon.store, MODEL, cfg, champion, space, clock.now
        )
        return ceiling, notes, predictor is not None

    first, before = reads(daemon.store, cost)
    assert first[0] is not None and first[0].max_latency_p99_s == pytest.approx(0.0012)
    add_retired(daemon, 200, stage_changed_at=clock.now - timedelta(days=3))
    again, after = reads(daemon.store, cost)
    assert again == first
    assert after.statements == before.statements


def test_versions_served_since_are_the_lineup_and_those_whose_stage_changed_since(
    store_url: str,
) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        for stage in ("champion", "shadow", "retired", "shadow", "retired", "shadow"):
            store.add_version(
                model="a",
                artefact_sha256="0" * 64,
                hyperparameters={"C": 1.0},
                size_bytes=1,
                actor="t",
                details={"folds": [0.8]},
                stage=stage,  # type: ignore[arg-type]
            )
        store.set_stage("a", 4, "rolled_back", actor="t", reason="rolled back")
        store.set_stage("a", 6, "retired", actor="t", reason="retired")
        since = store.get_version("a", 6).stage_changed_at
        with store.engine.begin() as conn:
            for version, at in ((3, since - timedelta(days=1)), (4, since), (5, since)):
                conn.execute(
                    sa.update(model_versions)
                    .where(model_versions.c.model == "a", model_versions.c.version == version)
                    .values(stage_changed_at=at)
                )
        served = store.versions_served_since("a", since)
        assert [(v.version, v.stage) for v in served] == [
            (1, "champion"),
            (2, "shadow"),
            (4, "rolled_back"),
            (5, "retired"),
            (6, "retired"),
        ]
        assert served[0].details == {"folds": [0.8]}  # whole
        later = store.versions_served_since("a", since + timedelta(microseconds=1))
        assert [v.version for v in later] == [1, 2]
        assert store.versions_served_since("missing", since) == []
    finally:
        store.close()
