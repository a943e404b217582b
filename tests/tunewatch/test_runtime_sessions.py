"""The runtime's loaded sessions follow the line-ups: a version that leaves every line-up
(retired, rolled back) has its session closed and its memory gauge removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from shadow import OnnxModel, ShadowResult
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
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


def _series(daemon: Daemon, name: str, *labels: str) -> set[tuple[str, ...]]:
    """The label values (``labels``) of metric ``name``'s series in the registry."""
    return {
        tuple(sample.labels[label] for label in labels)
        for metric in daemon.metrics.registry.collect()
        if metric.name == name
        for sample in metric.samples
    }


def test_a_retired_version_s_latency_and_shadow_error_series_are_dropped(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Retiring a version removed its memory gauge only: its latency histogram (per role,
    one series a bucket) and its shadow error counter stayed exported for the daemon's
    life, one more set of series at every re-tune."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    try:
        runtime = daemon.runtime
        served = runtime.load(MODEL)
        x = np.zeros((2, len(served.row.feature_names)), np.float32)
        runtime.score(served, x)  # the champion answers
        runtime.score(served, x, version=2)  # the challenger, named in the request
        runtime.shadow_results.on_results(  # the challenger shadowing: one answer, one failure
            [
                ShadowResult(MODEL, "r1", 2, np.zeros((2, 1), np.float32), 0.001),
                ShadowResult(MODEL, "r2", 2, None, None, error="RuntimeError: boom"),
            ]
        )
        latency = "tunewatch_inference_latency_seconds"
        errors = "tunewatch_run_failures"
        assert _series(daemon, latency, "version", "role") == {
            ("1", "champion"),
            ("2", "challenger"),
        }
        # v1's exported at 0 since it entered the line-up
        assert _series(daemon, errors, "version") == {("1",), ("2",)}
        daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="done")
        runtime.load(MODEL)
        assert _series(daemon, latency, "version", "role") == {("1", "champion")}
        assert _series(daemon, errors, "version") == {("1",)}
        # a shadow answer of the retired version still in the queue exports nothing again
        runtime.shadow_results.on_results([ShadowResult(MODEL, "r3", 2, np.zeros((2, 1)), 0.001)])
        assert _series(daemon, latency, "version", "role") == {("1", "champion")}
        # v1's series, still served, go on counting
        runtime.score(runtime.model(MODEL), x)
        assert (
            daemon.metrics.registry.get_sample_value(
                f"{latency}_count",
                {
                    "model": MODEL,
                    "version": "1",
                    "hyperparameter_set": runtime.model(MODEL).deployment.get(1).hyperparameter_set,
                    "role": "champion",
                },
            )
            == 2
        )
    finally:
        daemon.close()


def test_a_challenger_whose_artefact_cannot_load_does_not_block_the_lineup(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A shadow version's artefact gone from the data directory (a replica without the
    shared directory, a disk fault) stopped its model's reload — a promotion made in the
    store was never served — and the refresh of every model after it."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    try:
        runtime = daemon.runtime
        gbm = daemon.store.get_version(MODEL, 2).artefact_sha256
        daemon.artefacts.path(gbm).unlink()
        daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
        daemon.store.promote(MODEL, 3, actor="t", reason="promoted elsewhere")
        daemon.registry.register(
            "other", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        assert set(runtime.refresh()) == {MODEL, "other"}
        lineup = runtime.model(MODEL).deployment.lineup
        assert lineup.champion is not None and lineup.champion.version == 3
        assert lineup.challengers == ()  # v2 cannot load: not shadowed, not fatal
        assert runtime.refresh() == []  # and not retried every tick while nothing changed
        assert runtime.model("other").deployment.lineup.champion is not None
        # a champion that cannot load is an error of that model only
        daemon.store.promote(MODEL, 2, actor="t", reason="a bad promotion")
        daemon.registry.register(
            "third", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        assert runtime.refresh() == ["third"]
        assert runtime.model(MODEL).deployment.lineup.champion.version == 3  # kept serving
    finally:
        daemon.close()


def test_a_request_in_flight_when_its_version_retires_does_not_bring_its_series_back(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request read the line-up, then the version was retired and its series removed
    while it scored; its latency was then observed into a series made anew, exported
    until the model's next line-up change."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        runtime = daemon.runtime
        served = runtime.load(MODEL)
        x = np.zeros((2, len(served.row.feature_names)), np.float32)
        v2 = served.deployment.get(2).model
        run = type(v2).run

        def retired_while_scoring(self: OnnxModel, rows: np.ndarray) -> dict[str, np.ndarray]:
            outputs = run(self, rows)
            if self is v2:
                daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="done")
                runtime.load(MODEL)
            return outputs

        monkeypatch.setattr(type(v2), "run", retired_while_scoring)
        runtime.score(served, x, version=2)
        latency = "tunewatch_inference_latency_seconds"
        assert _series(daemon, latency, "version", "role") == set()
        monkeypatch.undo()
        runtime.score(runtime.model(MODEL), x)  # the champion's is made as usual
        assert _series(daemon, latency, "version", "role") == {("1", "champion")}
    finally:
        daemon.close()


def _memory_gauge(daemon: Daemon) -> dict[str, float]:
    return {
        sample.labels["version"]: sample.value
        for metric in daemon.metrics.session_memory.collect()
        for sample in metric.samples
    }


def test_the_session_memory_gauge_reports_the_figure_measured_at_registration(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The gauge was the daemon's own RSS growth while it loaded the session: 0 or a few
    pages, different at every load (0 after a promotion and rollback reloaded it), while
    the guardrails, serving-cost ceilings and dashboard read the version's
    ``load_memory_bytes`` measured in a fresh process when it was registered."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    try:
        runtime = daemon.runtime
        stored = {str(v.version): v.load_memory_bytes for v in daemon.store.list_versions(MODEL)}
        assert all(stored.values())  # measured when registered
        runtime.load(MODEL)
        assert _memory_gauge(daemon) == stored
        runtime._sessions.clear()  # reloaded afresh, as a promotion and rollback do
        runtime.load(MODEL)
        assert _memory_gauge(daemon) == stored
        # a version stored without a figure exports none rather than another measurement
        onnx = trained[0].onnx
        daemon.store.add_version(
            model=MODEL,
            artefact_sha256=daemon.artefacts.put(onnx),
            hyperparameters={},
            size_bytes=len(onnx),
            actor="t",
        )
        runtime.load(MODEL)
        assert _memory_gauge(daemon) == stored
    finally:
        daemon.close()


def test_inference_rows_count_every_answered_row_whichever_version_answered(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The counter counts rows a named version (or a live split's challenger arm) answered
    too, not only the champion's, as its help said; shadow scoring adds none."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion (logistic), v2 shadow (gbm)
    try:
        runtime = daemon.runtime
        served = runtime.load(MODEL)
        x = np.zeros((3, len(served.row.feature_names)), np.float32)
        runtime.score(served, x)  # the champion answers
        runtime.score(served, x[:2], version=2)  # the challenger, named in the request
        runtime.shadow_results.on_results([ShadowResult(MODEL, "r1", 2, np.zeros((3, 1)), 0.001)])
        rows = "tunewatch_inference_rows_total"
        assert daemon.metrics.registry.get_sample_value(rows, {"model": MODEL}) == 5
        (family,) = (m for m in daemon.metrics.registry.collect() if m.name + "_total" == rows)
        assert "whichever version answered" in family.documentation
        assert "by the champion" not in family.documentation
    finally:
        daemon.close()
