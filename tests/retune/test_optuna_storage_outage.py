"""A study whose PostgreSQL storage goes out of reach (a restart, a failover, a
partition) raises :class:`StudyStorageUnavailableError`, naming the connection failure:
the storage's condition, which a job waits out or leaves to be queued again. It was a
plain ``StudyError`` quoting Optuna's "invalid data in the commit, e.g. exceeding max
length", and the job running the study was failed for good by a 3 s restart. A value
the database refuses is still a ``StudyError``, and no unavailability."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url

from retune import StudyError, study_progress
from retune._errors import StudyStorageUnavailableError
from retune._optuna import open_study
from tests.conftest import drop_pg_schema
from tests.tunewatch.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def storage(pg_available: None) -> Iterator[tuple[str, TcpProxy]]:
    """An Optuna storage URL on a fresh PostgreSQL schema, reached through a proxy."""
    schema = f"fix_optuna_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    proxy = TcpProxy(("127.0.0.1", 5432))
    url = make_url(f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}")
    try:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.close()
        # a session the cut left in a transaction on the study's tables is ended first:
        # the drop waited for it for ever
        drop_pg_schema(schema, end_holders=True)


def test_a_storage_gone_mid_study_is_unavailable_naming_the_connection_failure(
    storage: tuple[str, TcpProxy],
) -> None:
    url, proxy = storage
    handle = open_study(
        storage=url, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=2
    )
    try:
        handle.set_user_attr("before", 1)
        proxy.close()  # the outage: its connections cut, no new one accepted
        with pytest.raises(StudyStorageUnavailableError) as info:
            handle.set_user_attr("during", 1)
    finally:
        handle.close()
    assert isinstance(info.value, StudyError)  # what callers catching StudyError see
    assert info.value.study_name == "s"
    message = str(info.value)
    assert "writing a study attribute failed: the storage is unavailable" in message
    assert "Connection refused" in message
    assert "invalid data" not in message


def test_a_storage_unreachable_when_the_study_opens_or_is_read_is_unavailable(
    storage: tuple[str, TcpProxy],
) -> None:
    url, proxy = storage
    proxy.close()
    with pytest.raises(StudyStorageUnavailableError, match="opening storage failed"):
        open_study(
            storage=url, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=2
        )
    with pytest.raises(StudyStorageUnavailableError, match="reading its progress failed"):
        study_progress(url, "s")


def test_a_value_the_database_refuses_stays_a_study_error(
    storage: tuple[str, TcpProxy],
) -> None:
    url, _ = storage
    with pytest.raises(StudyError) as info:  # studies.study_name is varchar(512)
        open_study(
            storage=url,
            study_name="s" * 600,
            seed=0,
            plan=None,
            pruner="none",
            heartbeat_interval=2,
        )
    assert not isinstance(info.value, StudyStorageUnavailableError)
    assert "StorageInternalError" in str(info.value)
