"""The lineup refresh loop through a store outage: one warning when it starts (and one
per new kind of failure), quiet while it lasts, one line when it ends; the lineup served
before the outage is served throughout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, Clock
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import DatabaseUnavailableError
from tunewatch._example import ExampleModel

DAEMON_LOGGER = "tunewatch._daemon"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def daemon(tmp_path: Path, trained: list[ExampleModel], clock: Clock) -> Iterator[Daemon]:
    """A daemon on SQLite serving the example champion, its refresh loop not started
    (each test drives the loop's iterations itself)."""
    d = Daemon(build_config({"data_dir": str(tmp_path)}, env={}), env={}, now=clock)
    try:
        champion = trained[0]
        d.registry.register(MODEL, champion.onnx, champion.metadata, actor="test", stage="champion")  # type: ignore[arg-type]
        assert d.runtime.refresh() == [MODEL]
        yield d
    finally:
        d.close()


def take_models_away(d: Daemon) -> None:
    """Every read of the models fails in the database (``no such table``) until
    :func:`bring_models_back`."""
    with d.store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE models RENAME TO models_away"))


def bring_models_back(d: Daemon) -> None:
    with d.store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE models_away RENAME TO models"))


def set_stored_feature_names(d: Daemon, raw: str) -> None:
    """Overwrite the model's stored feature names with raw JSON (``5`` cannot be read
    back as names: a ``TypeError``, not a store error)."""
    with d.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE models SET feature_names = :raw WHERE name = :name"),
            {"raw": raw, "name": MODEL},
        )


def daemon_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == DAEMON_LOGGER and r.levelno == level]


def served_champion(d: Daemon) -> int | None:
    champion = d.runtime.model(MODEL).deployment.lineup.champion
    return None if champion is None else champion.version


def test_refresh_outage_warns_once_then_logs_its_recovery(
    daemon: Daemon, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Five refreshes failing then one succeeding: a single warning with the traceback,
    no error, and one info line counting the failures and the outage's length."""
    caplog.set_level(logging.DEBUG, logger=DAEMON_LOGGER)
    take_models_away(daemon)
    for _ in range(5):
        daemon._refresh_once()
        assert served_champion(daemon) == 1  # the last good lineup is served throughout
        clock.now += timedelta(seconds=5)
    bring_models_back(daemon)
    daemon._refresh_once()

    warnings = daemon_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is DatabaseUnavailableError
    assert daemon_records(caplog, logging.ERROR) == []
    [recovered] = daemon_records(caplog, logging.INFO)
    assert recovered.getMessage() == "lineup refresh recovered after 5 failures / 25 s"
    assert len(daemon_records(caplog, logging.DEBUG)) == 4  # the repeats, one line each
    assert served_champion(daemon) == 1


def test_refresh_outage_warns_again_for_a_new_kind_of_failure_only(
    daemon: Daemon, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Within one outage a failure of another type is warned about once, with its
    traceback; a kind already warned about is not, and the next outage warns afresh."""
    caplog.set_level(logging.DEBUG, logger=DAEMON_LOGGER)
    take_models_away(daemon)
    daemon._refresh_once()
    daemon._refresh_once()
    bring_models_back(daemon)
    set_stored_feature_names(daemon, "5")
    daemon._refresh_once()
    daemon._refresh_once()
    take_models_away(daemon)
    daemon._refresh_once()
    bring_models_back(daemon)
    set_stored_feature_names(daemon, '["x0","x1","x2","x3","x4","x5","x6","x7"]')
    clock.now += timedelta(seconds=3)
    daemon._refresh_once()  # recovered
    take_models_away(daemon)
    daemon._refresh_once()  # a new outage

    warnings = daemon_records(caplog, logging.WARNING)
    kinds = [r.exc_info[0] if r.exc_info else None for r in warnings]
    assert kinds == [DatabaseUnavailableError, TypeError, DatabaseUnavailableError]
    assert daemon_records(caplog, logging.ERROR) == []
    [recovered] = daemon_records(caplog, logging.INFO)
    assert recovered.getMessage() == "lineup refresh recovered after 5 failures / 3 s"
    assert served_champion(daemon) == 1
