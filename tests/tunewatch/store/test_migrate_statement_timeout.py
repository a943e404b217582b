"""A migration on PostgreSQL waits for its locks with no limit even where the role (or the
URL) sets a ``statement_timeout``, a common least-privilege default: the migration cleared
``lock_timeout`` and ``idle_in_transaction_session_timeout`` but not that, so a dashboard
read holding ``model_versions`` for two seconds made ``tunewatch migrate`` fail as
"database unavailable"."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import make_url

from tunewatch.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.new_store]

#: The statement timeout the store's URL sets, and how long another session holds the
#: table the upgrade alters: five times that.
STATEMENT_TIMEOUT_MS = 200
HELD_S = 1.0
#: A revision whose upgrade alters a table (adds ``model_versions.hyperparameters``:
#: ACCESS EXCLUSIVE), and the one before it.
ALTERING, BEFORE = "0027", "0026"


def test_an_upgrade_waits_for_a_table_past_the_statement_timeout(pg_url: str) -> None:
    with Store(pg_url) as store:
        store.migrate(to=BEFORE)

    url = make_url(pg_url)
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    reader = psycopg.connect(
        f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    )
    release = threading.Timer(HELD_S, reader.rollback)
    try:
        # a read in an open transaction: ACCESS SHARE, which the upgrade's ALTER TABLE
        # (ACCESS EXCLUSIVE) waits for
        reader.execute(f'SELECT count(*) FROM "{schema}".model_versions').fetchone()
        timed = f"{pg_url}%20-cstatement_timeout%3D{STATEMENT_TIMEOUT_MS}"
        with Store(timed) as store:
            with store.engine.connect() as conn:  # the URL's setting is the session's
                shown = conn.exec_driver_sql("SHOW statement_timeout").scalar()
            assert shown == f"{STATEMENT_TIMEOUT_MS}ms"
            release.start()
            migration = store.migrate(to=ALTERING)
    finally:
        release.cancel()
        if release.ident is not None:
            release.join()
        reader.rollback()
        reader.close()
    assert migration is not None
    assert (migration.from_revisions, migration.to) == ((BEFORE,), ALTERING)
