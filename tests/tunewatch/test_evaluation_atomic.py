"""An evaluation run stores its kinds' verdicts together or not at all: a database
restart during a run over a large window left one drift row and no decay, estimate,
labels or telemetry row, and no decision, which dashboards and exports read as a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch import _evaluation
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import DatabaseUnavailableError
from tunewatch._example import ExampleModel


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"window_rows": 300}}],
        },
        env={},
    )
    d = Daemon(config, env={})
    try:
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=trained[0].reference,
        )
        feed(d, Clock(), 0, 300, shift=0.0, seed=5)
        yield d
    finally:
        d.close()


def test_a_run_failing_at_its_last_kind_stores_none_of_its_verdicts(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def outage(*_: Any, **__: Any) -> Any:
        raise DatabaseUnavailableError("the database restarted")

    monkeypatch.setattr(_evaluation, "telemetry_verdict", outage)
    with pytest.raises(DatabaseUnavailableError):
        daemon.evaluator.evaluate(MODEL)
    assert daemon.store.list_evaluations(MODEL) == []


def test_a_run_stores_every_kind_at_one_time(daemon: Daemon) -> None:
    rows = daemon.evaluator.evaluate(MODEL)
    assert [r.kind for r in rows] == ["drift", "decay", "estimate", "labels", "telemetry"]
    assert len({r.created_at for r in rows}) == 1
    stored = daemon.store.list_evaluations(MODEL)
    assert sorted(r.id for r in stored) == sorted(r.id for r in rows)
