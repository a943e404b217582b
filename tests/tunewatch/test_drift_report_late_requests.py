"""A drift verdict's report tests the requests the verdict read, not those recorded since
that are stamped inside its window (a replica whose clock runs behind, a group commit
that ended after the run); where it cannot, it says so."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Clock, champion_answered, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import judged_as, judged_frames
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import EvaluationRow

WINDOW = 600
LATE = 250
#: the element of a report's HTML that says its rows are not (or may not be) the verdict's
NOTICE = 'id="tunewatch-rows-notice"'


def _daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str | None = None) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            **({"store": {"url": store_url}} if store_url else {}),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"window_rows": WINDOW}}],
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


def _verdict(d: Daemon, clock: Clock) -> EvaluationRow:
    d.evaluator.clock = clock
    return {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]


def _report(d: Daemon, drift: EvaluationRow) -> tuple[EvaluationRow, str]:
    html = d.evaluator.drift_report(MODEL, drift.id)
    [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
    assert report.payload["evaluation"] == drift.id
    return report, html


def _judged_rows(d: Daemon, drift: EvaluationRow) -> int:
    """How many of the window's rows the report of ``drift`` tests."""
    model = d.store.get_model(MODEL)
    assert drift.version is not None
    champion = d.store.get_version(MODEL, drift.version)
    evaluation = d.config.model_or_default(MODEL, model.task).evaluation
    columns, _ = judged_as(drift.payload, evaluation.drift)
    baseline = d.evaluator.report_baseline(champion, model)
    _, current = judged_frames(d.store, model, evaluation, drift, baseline, columns)
    return len(current)


def _write_at(d: Daemon, ids: list[str], at: datetime, *, seed: int) -> None:
    """Requests ``ids`` of unchanged example data, all stamped ``at``, and the champion's
    answers."""
    x, _ = example_data(len(ids), seed=seed, shift=0.0)
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    probs = session.primary(session.run(x))
    records = [
        champion_answered(rid, at, x[i : i + 1], probs[i : i + 1], version=champion.version)
        for i, rid in enumerate(ids)
    ]
    d.store.write_records([r for r, _ in records], [o for _, o in records])


def test_requests_committed_after_the_run_and_stamped_before_it_are_not_in_its_report(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The run at 10 minutes past the newest request judged 600 unchanged rows; a group
    commit that ended after it brought 250 shifted requests stamped in those 10 minutes.
    The report re-read the span up to the run's time, tested 850 rows and called every
    column drifted for a verdict that found x1 alone."""
    d = _daemon(trained, tmp_path)
    try:
        clock = Clock()
        feed(d, clock, 0, WINDOW, shift=0.0, seed=100)
        newest = clock.now
        clock.now += timedelta(minutes=10)
        drift = _verdict(d, clock)
        assert drift.payload["n_current"] == WINDOW and not drift.payload["alarm"]
        feed(d, Clock(newest), 10_000, LATE, shift=1.0, seed=7)  # the late commit

        assert _judged_rows(d, drift) == WINDOW
        report, html = _report(d, drift)
        assert report.payload["drifted_columns"] == sorted(drift.payload["drifted_columns"])
        assert report.payload["n_current"] == WINDOW
        assert report.payload["same_rows"] is True
        assert report.payload["notice"] is None and NOTICE not in html
    finally:
        d.close()


def test_requests_tied_with_the_oldest_judged_one_and_left_out_are_not_in_its_report(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """The newest 600 rows end among 50 requests stamped at one instant, the 25 of them
    later in request id order judged (as the store's read breaks ties); the report read
    the whole instant, 625 rows."""
    d = _daemon(trained, tmp_path, store_url)
    try:
        clock = Clock()
        _write_at(d, [f"t{i:02d}" for i in range(50)], clock.now, seed=3)
        feed(d, clock, 0, WINDOW - 25, shift=0.0, seed=100, labels=False)
        drift = _verdict(d, clock)
        assert drift.payload["n_current"] == WINDOW
        assert _judged_rows(d, drift) == WINDOW
    finally:
        d.close()


def test_a_report_that_cannot_test_its_verdict_s_rows_says_so(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A replica whose clock runs five minutes behind commits 250 shifted requests after
    the run, stamped among the 600 it judged: the report cannot tell them from the
    verdict's, and says that it tested 850 rows, not the verdict's 600."""
    d = _daemon(trained, tmp_path)
    try:
        clock = Clock()
        feed(d, clock, 0, WINDOW, shift=0.0, seed=100)
        drift = _verdict(d, clock)
        feed(d, Clock(clock.now - timedelta(minutes=5)), 10_000, LATE, shift=1.0, seed=7)

        report, html = _report(d, drift)
        assert report.payload["n_current"] == WINDOW + LATE
        assert report.payload["verdict_n_current"] == WINDOW
        assert report.payload["same_rows"] is False
        notice = report.payload["notice"]
        assert f"{WINDOW + LATE} rows" in notice and f"tested {WINDOW}" in notice
        assert NOTICE in html and f"{WINDOW + LATE} rows" in html
    finally:
        d.close()


def test_the_report_of_a_verdict_stored_before_it_recorded_its_rows_says_they_may_differ(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A verdict stored before verdicts recorded which requests they judged is re-read as
    before, its window's span to the run; counting other rows than it did, its report says
    they may differ from the verdict's."""
    d = _daemon(trained, tmp_path)
    try:
        clock = Clock()
        feed(d, clock, 0, WINDOW, shift=0.0, seed=100)
        newest = clock.now
        clock.now += timedelta(minutes=10)
        judged = _verdict(d, clock)
        assert "judged_rows" in judged.payload
        old = d.store.add_evaluation(
            model=MODEL,
            version=judged.version,
            kind="drift",
            status=judged.status,
            window_start=judged.window_start,
            window_end=judged.window_end,
            payload={k: v for k, v in judged.payload.items() if k != "judged_rows"},
        )
        feed(d, Clock(newest), 10_000, LATE, shift=1.0, seed=7)

        report, html = _report(d, old)
        assert report.payload["n_current"] == WINDOW + LATE
        assert report.payload["same_rows"] is None
        assert "may differ" in report.payload["notice"]
        assert NOTICE in html
    finally:
        d.close()


def test_a_verdict_records_the_requests_it_judged(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Its digest, and the first and last request of its window in the store's order."""
    d = _daemon(trained, tmp_path)
    try:
        clock = Clock()
        feed(d, clock, 0, WINDOW + 10, shift=0.0, seed=100, labels=False)
        drift = _verdict(d, clock)
        judged = drift.payload["judged_rows"]
        assert judged["first"][1] == "r10" and judged["last"][1] == f"r{WINDOW + 9}"
        assert len(judged["sha256"]) == 64
        assert datetime.fromisoformat(judged["last"][0]) == clock.now
    finally:
        d.close()
