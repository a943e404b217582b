"""The comparison loop's log lines name what they are about as ``model=… version=…``
(STYLE.md rule 12). The decision of a paired or DeLong test was logged only by
``shadow.stats`` ("paired confidence_sequence test decided challenger_better at n=300
requests …"), which names no model or version: with several models nobody could tell
which comparison decided. The statistics library now says it at DEBUG, and the runner
says it at INFO with the model, the challenger, the champion and the test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    UNPAIRED,
    _feed_worse,
    _promote_a_worse_version,
    copy_daemon,
    feed_better,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _comparison_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("tunewatch.comparison")]


def _old_ids(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The comparison log lines whose own text (not the stored reasons they quote, which
    say "v2 beat v1") writes a version the old way, ``v%d``."""
    return [str(r.msg) for r in _comparison_lines(caplog) if "v%d" in str(r.msg)]


def _decided(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in _comparison_lines(caplog)
        if r.levelno == logging.INFO and "decided" in r.getMessage()
    ]


def test_a_paired_decision_is_logged_with_the_model_and_the_versions(
    daemon: Daemon, trained: list[ExampleModel], caplog: pytest.LogCaptureFixture
) -> None:
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    with caplog.at_level(logging.DEBUG):
        for start in range(0, 2000, BATCH):
            feed_better(daemon, t, start, start + BATCH)
            [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
            if paired.action != "none":
                break
    assert paired.action == "promoted"
    [said] = _decided(caplog)
    assert said.startswith(f"model={MODEL} version=2 champion=1 test={paired.test_id} (paired)")
    assert f"decided challenger_better at n={paired.look.n}" in said  # type: ignore[union-attr]
    # the statistics library, which knows no model, says it only at DEBUG
    library = [r for r in caplog.records if r.name.startswith("shadow.stats")]
    assert library and all(r.levelno == logging.DEBUG for r in library)
    assert not [r.getMessage() for r in _comparison_lines(caplog) if "v2 beat" in r.getMessage()]
    assert _old_ids(caplog) == []


def test_a_delong_decision_is_logged_with_the_model_and_the_versions(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = copy_daemon(
        template,
        tmp_path / "auc",
        models=[{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
    )
    try:
        t = traffic(trained, 2500, seed=11)
        loop = runner(d, delong_look_every=500, delong_looks=5)
        with caplog.at_level(logging.DEBUG):
            for start in range(0, 2500, 500):
                feed_better(d, t, start, start + 500)
                [delong] = [r for r in loop.run(MODEL) if r.kind == "delong"]
                if delong.decision != "continue":
                    break
        assert delong.decision == "challenger_better"
        [said] = _decided(caplog)
        assert said.startswith(f"model={MODEL} version=2 champion=1 test={delong.test_id} (delong)")
        library = [r for r in caplog.records if r.name.startswith("shadow.stats")]
        assert library and all(r.levelno == logging.DEBUG for r in library)
        assert _old_ids(caplog) == []
    finally:
        d.close()


def test_a_rollback_is_logged_with_the_model_and_the_versions(
    daemon: Daemon, trained: list[ExampleModel], caplog: pytest.LogCaptureFixture
) -> None:
    t = _promote_a_worse_version(daemon, trained)
    loop = runner(daemon, rollback=UNPAIRED)
    actions: list[str] = []
    with caplog.at_level(logging.INFO):
        for start in range(400, 1400, BATCH):
            _feed_worse(daemon, t, start, start + BATCH)
            actions += [r.action for r in loop.run(MODEL) if r.kind == "rollback_watch"]
            if "rolled_back" in actions:
                break
    assert actions[-1] == "rolled_back"
    [said] = [
        r.getMessage()
        for r in _comparison_lines(caplog)
        if r.levelno == logging.WARNING and "rolled back" in r.getMessage()
    ]
    assert said.startswith(f"model={MODEL} version=2 rolled back, restored=1:"), said
    assert _old_ids(caplog) == []
