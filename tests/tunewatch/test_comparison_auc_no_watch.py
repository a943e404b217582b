"""A model compared on ROC AUC gets no rollback watch (its objective has no per-request
loss to pair): the runner says so, once, rather than leaving a promoted champion
unwatched with ``rollback.enabled: true`` and nothing logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonConfig, ComparisonRunner


@pytest.fixture
def auc_daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d, _ = make_daemon(tmp_path, trained)
    d.close()
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
        },
        env={},
    )
    d = Daemon(config, env={})
    yield d
    d.close()


def _runner(d: Daemon, **settings: object) -> ComparisonRunner:
    return ComparisonRunner(
        d.store,
        d.config,
        dispatcher=d.dispatcher,
        metrics=d.metrics,
        on_lineup_change=d.runtime.load,
        settings={MODEL: ComparisonConfig.model_validate(settings)},
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not watched for a rollback" in r.getMessage()
    ]


def test_a_roc_auc_model_is_told_its_promotions_are_not_watched_once(
    auc_daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(auc_daemon)
    runner.run(MODEL)
    runner.run(MODEL)
    assert _warnings(caplog) == [
        f"model={MODEL}: objective roc_auc has no per-request loss, so a promotion is not "
        "watched for a rollback (rollback.enabled has no effect): roll back by hand "
        "(tunewatch rollback)"
    ]


def test_no_warning_when_the_rollback_watch_is_switched_off(
    auc_daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    _runner(auc_daemon, rollback={"enabled": False}).run(MODEL)
    assert _warnings(caplog) == []
