"""A token stored under a daemon's actor name before such names were refused still
works, and everything done with it reads in the audit log as the daemon's own: the
daemon names it at start."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch.store import Store
from tunewatch.store._schema import api_tokens


def test_an_active_token_named_as_a_daemon_actor_is_named_when_the_daemon_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    with Store.open(config.store_url) as store:
        store.migrate()
        with store.engine.begin() as conn:
            for at, name in enumerate(("tunewatch", "Scheduler", "job:3", "ops")):
                conn.execute(
                    sa.insert(api_tokens).values(
                        name=name,
                        role="operator",
                        token_hash=str(at) * 64,
                        created_at=datetime.now(UTC),
                    )
                )
        store.revoke_token("job:3", actor="ops")

    with caplog.at_level(logging.WARNING, logger="tunewatch._daemon"):
        Daemon(config, env={}).close()

    [record] = [r for r in caplog.records if "daemon's own" in r.getMessage()]
    message = record.getMessage()
    assert "'tunewatch', 'Scheduler'" in message
    assert "'job:3'" not in message and "'ops'" not in message  # revoked; an ordinary name
    assert "tunewatch tokens revoke" in message


def test_no_warning_when_no_active_token_is_named_as_a_daemon_actor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    with Store.open(config.store_url) as store:
        store.migrate()
        store.add_token(name="tunewatch-ci", role="operator", token_hash="1" * 64, actor="ops")

    with caplog.at_level(logging.WARNING, logger="tunewatch._daemon"):
        Daemon(config, env={}).close()

    assert not [r for r in caplog.records if "daemon's own" in r.getMessage()]
