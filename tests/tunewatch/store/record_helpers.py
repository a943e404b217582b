"""Records and lock holders the recorder's and the store's timeout tests share."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import make_url

from tunewatch.store import OutputRecord, RequestRecord
from tunewatch.store._engine import sqlite_file


def request_record(rid: str) -> RequestRecord:
    """A one-row request of model ``m`` (two features), received now."""
    return RequestRecord(
        model="m",
        request_id=rid,
        received_at=datetime.now(UTC),
        source="infer",
        n_rows=1,
        n_cols=2,
        inputs=np.array([[1.0, 2.0]], dtype=np.float32).tobytes(),
    )


def output_record(rid: str, version: int = 1) -> OutputRecord:
    """Version ``version``'s answer to request ``rid``: the champion's for version 1."""
    return OutputRecord(
        model="m",
        request_id=rid,
        version=version,
        role="champion" if version == 1 else "challenger",
        latency_s=0.001,
        n_rows=1,
        n_cols=1,
        values=np.array([[0.5]], dtype=np.float32).tobytes(),
    )


@contextmanager
def table_locked(store_url: str) -> Iterator[Callable[[], None]]:
    """Another session holds the lock a write to ``requests`` needs until the block ends
    (or it calls the release it is given): on PostgreSQL ``LOCK TABLE requests IN ACCESS
    EXCLUSIVE MODE``, on SQLite the write lock (``BEGIN IMMEDIATE``)."""
    locker: Any
    path = sqlite_file(store_url)
    if path is not None:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
    else:
        url = make_url(store_url)
        schema = str(url.query["options"]).removeprefix("-csearch_path=")
        locker = psycopg.connect(
            f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
        )
        locker.execute(f'LOCK TABLE "{schema}".requests IN ACCESS EXCLUSIVE MODE')
    try:
        yield locker.rollback
    finally:
        locker.rollback()
        locker.close()
