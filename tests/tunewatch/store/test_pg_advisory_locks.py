"""PostgreSQL's advisory locks belong to the database, not to a schema: the store's are
keyed by its schema too, so two stores in one database (two deployments, or tests
running side by side) never wait for each other's job queue or event appends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_pg_schema
from tunewatch._errors import DatabaseUnavailableError
from tunewatch.store import Store
from tunewatch.store._events import add_event_after_in
from tunewatch.store._job_queue import create_job

pytestmark = pytest.mark.postgres

# a wait for a lock another schema holds would fail the call after this long
_LOCK_TIMEOUT_S = 0.5


@contextmanager
def _two_stores(pg_url: str) -> Iterator[tuple[Store, sa.Engine, Store]]:
    """A store in ``pg_url``'s schema with an engine of its own on that schema (to hold a
    transaction open), and a store in another schema of the same database."""
    with fresh_pg_schema() as other_url:
        held_store = Store.open(pg_url, lock_timeout_s=_LOCK_TIMEOUT_S)
        other = Store.open(other_url, lock_timeout_s=_LOCK_TIMEOUT_S)
        engine = sa.create_engine(pg_url)
        try:
            for store in (held_store, other):
                store.ensure_model(name="m", task="binary", feature_names=["a"])
            yield held_store, engine, other
        finally:
            engine.dispose()
            other.close()
            held_store.close()


def test_a_quota_check_does_not_wait_for_another_schema_s_job_queue(pg_url: str) -> None:
    """One schema's queueing (a quota check, under the job queue's lock) held up every
    other schema's in the database: a loaded test run's alert delivery, waiting on another
    test's queue for longer than its lock timeout, answered 503."""
    with _two_stores(pg_url) as (_, engine, other), engine.begin() as queueing:
        create_job(queueing, model="m", kind="retune", trigger={}, spec={}, max_active=5)
        job, created = other.create_job(model="m", kind="retune", trigger={}, spec={}, max_active=5)
    assert created and job.status == "queued"


def test_an_event_append_does_not_wait_for_another_schema_s_append(pg_url: str) -> None:
    """The lock serialising a model's appends of an event type was keyed by the model's
    name and the type alone: the same pair in another schema waited on it."""
    with _two_stores(pg_url) as (_, engine, other), engine.begin() as appending:
        payload = {"why": "held"}
        assert add_event_after_in(appending, model="m", type="t", payload=payload, last=None)
        recorded = other.add_event_after(model="m", type="t", payload={}, last=None)
    assert recorded is not None and recorded.type == "t"


def test_appends_of_one_schema_still_wait_for_each_other(pg_url: str) -> None:
    """Keyed by schema, the lock still serialises the appends of one store: a second
    append of the pair waits for the first's transaction, and fails after its lock
    timeout while the first holds it."""
    with _two_stores(pg_url) as (held_store, engine, _), engine.begin() as appending:
        assert add_event_after_in(appending, model="m", type="t", payload={}, last=None)
        with pytest.raises(DatabaseUnavailableError, match="lock timeout"):
            held_store.add_event_after(model="m", type="t", payload={}, last=None)
