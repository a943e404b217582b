"""The runtime's loaded sessions follow the line-ups: a version that leaves every line-up
(retired, rolled back) has its session closed and its memory gauge removed."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel


def _gauged_versions(daemon: object) -> set[str]:
    text = generate_latest(daemon.metrics.registry).decode()  # type: ignore[attr-defined]
    return {
        line.split('version="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("tunewatch_session_memory_bytes{")
    }


def test_a_retired_challenger_s_session_and_gauge_are_dropped(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    try:
        runtime = daemon.runtime
        runtime.load(MODEL)
        gbm = runtime.model(MODEL).deployment.get(2).model.sha256
        assert gbm in runtime._sessions and _gauged_versions(daemon) == {"1", "2"}
        daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="done")
        runtime.load(MODEL)
        assert gbm not in runtime._sessions
        assert _gauged_versions(daemon) == {"1"}
        # The same artefact registered again shares nothing stale and loads afresh.
        daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")
        runtime.load(MODEL)
        assert gbm in runtime._sessions and _gauged_versions(daemon) == {"1", "3"}
    finally:
        daemon.close()
