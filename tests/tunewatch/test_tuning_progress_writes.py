"""What a running job's progress costs the store's writers.

A tuning worker runs at ``tuning.worker_nice`` (19 by default): on a busy host it gets a
sliver of a core, and it was descheduled inside its progress write's transaction. On
SQLite that transaction (``BEGIN IMMEDIATE``) holds the database's one write lock, and
every nice-0 writer waited for it: the scoring log's group commit, so every inference
answer, for up to 2.5 s with three busy cores. Its progress reporter wrote every second
though the progress changes once a trial, and each write read the row, merged and
cleaned the JSON in Python and wrote it, the lock held throughout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from retune._optuna import open_study
from tests.tunewatch.test_tuning_progress_budget import STUDY, _study
from tunewatch._tuning_progress import ProgressReporter
from tunewatch.store import Store


def _running(store: Store, spec: dict[str, Any] | None = None) -> int:
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec=spec or {})
    store.claim_job(job.id, "test:1")
    return job.id


@contextmanager
def _sqlite_statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement SQLite runs on ``engine``'s connections meanwhile, as the driver
    hands it to SQLite (``BEGIN IMMEDIATE`` and ``COMMIT`` included): the trace callback
    is set on each connection as the pool hands it out."""
    seen: list[str] = []
    traced: list[Any] = []

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)
        traced.append(dbapi_connection)

    event.listen(engine, "checkout", on_checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", on_checkout)
        for dbapi_connection in traced:
            dbapi_connection.set_trace_callback(None)


def _kind(statement: str) -> str:
    """``BEGIN IMMEDIATE``, ``SELECT``, ``UPDATE``, ``COMMIT``, …"""
    words = statement.upper().split()
    return " ".join(words[:2]) if words[0] == "BEGIN" else words[0]


def _job_updates(statements: list[str]) -> list[str]:
    return [s for s in statements if _kind(s) == "UPDATE" and " jobs " in f" {s} "]


def test_an_unchanged_study_s_progress_is_written_once(store: Store, tmp_path: Path) -> None:
    """Written once a trial, not once a second: a report of the progress last written
    writes nothing (the job's heartbeat, its own thread, tells the store it is alive)."""
    storage = _study(tmp_path)
    job_id = _running(store)
    seen: list[dict[str, Any]] = []
    reporter = ProgressReporter(store, job_id, storage, STUDY, 50, seen.append)

    with _sqlite_statements(store.engine) as statements:
        reporter._report()
        reporter._report()

    assert len(_job_updates(statements)) == 1, statements
    assert store.get_job(job_id).progress["trials"] == 0
    assert len(seen) == 2  # the CLI's bar is still drawn every second


def test_a_changed_study_s_progress_is_written_again(store: Store, tmp_path: Path) -> None:
    storage = _study(tmp_path)
    job_id = _running(store)
    reporter = ProgressReporter(store, job_id, storage, STUDY, 50, None)
    reporter._report()
    handle = open_study(
        storage=storage, study_name=STUDY, seed=0, plan=None, pruner="none", heartbeat_interval=None
    )
    try:  # a run recording itself after a trial
        record = {"started_at": 1000.0, "seen_at": 1012.0, "wall_s_so_far": 12.0}
        handle.set_user_attr("time_spent:a", {**record, "cpu_s_so_far": 9.5})
    finally:
        handle.close()

    with _sqlite_statements(store.engine) as statements:
        reporter._report()

    assert len(_job_updates(statements)) == 1, statements
    assert store.get_job(job_id).progress["wall_s"] == 12.0


def test_a_progress_write_holds_sqlite_s_write_lock_for_one_update(store: Store) -> None:
    """Between ``BEGIN IMMEDIATE`` and ``COMMIT`` only the row's UPDATE: the row is read
    and the JSON merged and cleaned before the write lock is taken."""
    job_id = _running(store)
    store.update_job_progress(job_id, {"phase": "tuning", "rows": 1000})
    spec = store.get_job(job_id).spec

    with _sqlite_statements(store.engine) as statements:
        store.update_job_progress(job_id, {"trials": 3}, spec={"budget": {"max_trials": 5}})

    begin = next(i for i, s in enumerate(statements) if _kind(s) == "BEGIN IMMEDIATE")
    end = next(i for i, s in enumerate(statements) if i > begin and _kind(s) == "COMMIT")
    assert [_kind(s) for s in statements[begin + 1 : end]] == ["UPDATE"], statements
    job = store.get_job(job_id)
    assert job.progress == {"phase": "tuning", "rows": 1000, "trials": 3}
    assert job.spec == {**spec, "budget": {"max_trials": 5}}


def test_concurrent_progress_writers_lose_no_key(m_store: Store) -> None:
    """Each writer's keys survive the others' writes, on both backends: a write whose row
    another changed since it read it reads it again."""
    store = m_store
    job_id = _running(store, {"seed": 1})
    spec = store.get_job(job_id).spec  # with the study's name create_job adds
    writers, writes = 4, 15
    start = threading.Barrier(writers)
    errors: list[Exception] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(writes):
                store.update_job_progress(job_id, {f"w{n}": i}, spec={f"s{n}": i})
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    job = store.get_job(job_id)
    assert job.progress == {f"w{n}": writes - 1 for n in range(writers)}
    assert job.spec == {**spec, **{f"s{n}": writes - 1 for n in range(writers)}}


def test_a_finished_job_s_progress_is_left_as_it_is(m_store: Store) -> None:
    store = m_store
    job_id = _running(store)
    store.update_job_progress(job_id, {"trials": 1})
    store.finish_job(job_id, status="succeeded", result={})

    store.update_job_progress(job_id, {"trials": 2})

    assert store.get_job(job_id).progress == {"trials": 1, "phase": "done"}
