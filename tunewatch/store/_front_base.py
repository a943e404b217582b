"""``StoreFront``: what the facades of :class:`~._store.Store` need of it.

``Store`` is assembled from one facade per concern (``_front_registry``,
``_front_scoring_log``, ``_front_audit``, ``_front_evaluation``, ``_front_governance``,
``_front_jobs``, ``_front_tags``), each a mixin of one-line delegations. They share this
base, which declares the transactions and engine they call; ``Store`` (``_store``) provides them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Literal

from sqlalchemy import Connection, Engine


class StoreFront(ABC):
    """The part of :class:`~._store.Store` its facades delegate through."""

    #: The scoring log's group commit's own engine (see ``Store.log_engine``).
    _log_engine: Engine

    @property
    @abstractmethod
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        """The database behind the store."""

    @abstractmethod
    def _tx(self, operation: str) -> AbstractContextManager[Connection]:
        """One write transaction (see :func:`._engine.transaction`), named ``operation``."""

    @abstractmethod
    def _read(self, operation: str) -> AbstractContextManager[Connection]:
        """One read-only transaction, named ``operation``."""
