"""A drift report is built once however many viewers ask for it at the same time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, Clock, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import ModelRow, VersionRow

WINDOW = 200  # a small window: evidently's build stays quick
VIEWERS = 4


@pytest.fixture
def judged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """A champion with a reference and one stored drift verdict, its report unbuilt."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"window_rows": WINDOW}}],
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
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=0.0, seed=4)
        yield d
    finally:
        d.close()


def test_concurrent_viewers_of_an_unbuilt_report_share_one_build(judged: Daemon) -> None:
    """Six viewers of an unbuilt report each checked that it was missing, each built it
    (20 s of evidently apiece) and each stored a copy: six ``drift_report`` rows and six
    4 MB files for one verdict, evidently's HTML differing every time. They wait for one
    build and are served the stored report."""
    d = judged
    drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
    assert drift.status == "ok"
    builds: list[tuple[str, int]] = []
    report_baseline = d.evaluator.report_baseline

    def counted(champion: VersionRow, model: ModelRow) -> Any:
        builds.append((champion.model, champion.version))
        return report_baseline(champion, model)

    d.evaluator.report_baseline = counted  # type: ignore[method-assign]
    start = threading.Barrier(VIEWERS)

    def view() -> str:
        start.wait()  # every viewer asks before any build can have finished
        return d.evaluator.drift_report(MODEL, drift.id)

    with ThreadPoolExecutor(VIEWERS) as pool:
        pages = [f.result() for f in [pool.submit(view) for _ in range(VIEWERS)]]

    reports = d.store.list_evaluations(MODEL, kind="drift_report", limit=100)
    assert [r.payload["evaluation"] for r in reports] == [drift.id]
    assert sorted(p.name for p in d.artefacts.root.rglob("*.html")) == [
        f"{reports[0].payload['sha256']}.html"
    ]
    assert len(builds) == 1
    assert "<html" in pages[0].lower()
    assert pages == [pages[0]] * VIEWERS
    # and a later viewer is served the stored one
    assert d.evaluator.drift_report(MODEL, drift.id) == pages[0]
    assert len(builds) == 1
