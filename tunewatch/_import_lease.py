"""Imports into one model take turns, on a lease a heartbeat keeps.

An import holds the store's lease on its target model (named after a digest of the
model's name, which may be longer than a lease's) while it checks and registers.
Another import meanwhile is refused (:class:`~tunewatch.ConflictError`,
``import_in_progress``): it would find the versions not there yet and register them
twice. The lease's time to live was sized to outlast the longest step (two candidate
checks and a minute: 3 min by default), so an import killed with ``kill -9`` kept every
later import of the model out for 3 minutes (21 with ``candidate_timeout_s: 600``),
told that another import "is in progress". Now a thread renews it every third of
:data:`LEASE_TTL_S`, so one left by an import that died lapses within that, and the
refusal says so.

The lease is taken once, on entering; renewing only extends it while this import still
holds it (:meth:`Store.renew_lease <tunewatch.store.Store.renew_lease>`). Renewing took it
as taking does, a lapsed or released one too: an import stopped past its time to live
(``SIGSTOP``, a paused VM, the store unreachable), while another of the same bundle ran
to its end, resumed, took the lease again and registered the versions the other had
registered, both exiting 0. A lease lost is lost: the import goes no further. Each
registration's own transaction checks the lease too (:attr:`ImportLease.held`): a stop
between the last renewal and that transaction's commit could outlast the lease.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid

from tunewatch._errors import ConflictError, StoreError
from tunewatch.store import HeldLease, Store

logger = logging.getLogger(__name__)

#: Seconds an import's lease lasts unrenewed: a lease left by an import that died keeps
#: the model's other imports out this long at most.
LEASE_TTL_S = 30.0


def lapsed(model: str, ttl_s: float) -> ConflictError:
    """The error of an import into ``model`` whose lease (of ``ttl_s``) lapsed."""
    return ConflictError(
        f"this import's lease on model {model!r} lapsed (the import was stopped, or the "
        f"store unreachable, for more than {ttl_s:g} s), and another import may have run "
        "meanwhile: nothing more is registered; run the import again (it skips the "
        "versions already there)",
        code="import_in_progress",
    )


class ImportLease:
    """The lease of imports into ``model``, taken on entering (or refused) and renewed by
    a thread of its own until the block ends. :meth:`renew` before a step that writes:
    it raises when the lease lapsed meanwhile (the import stopped, or the store
    unreachable, for longer than ``ttl_s``), whether or not another import took it."""

    def __init__(self, store: Store, model: str, *, ttl_s: float = LEASE_TTL_S) -> None:
        self._store, self._model, self._ttl = store, model, ttl_s
        self._name = f"import:{hashlib.sha256(model.encode()).hexdigest()[:32]}"
        self._holder = f"import:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def renew(self) -> None:
        """Extend the lease, held since entering; ``ConflictError`` (``import_in_progress``)
        when it lapsed meanwhile: another import may have run under it since, and what
        this one planned is stale."""
        if not self._store.renew_lease(self._name, self._holder, ttl_s=self._ttl):
            raise lapsed(self._model, self._ttl)

    @property
    def held(self) -> HeldLease:
        """The lease as a registration fences its transaction with: renewing a step
        before a registration leaves the time between the two, which a stop can outlast;
        the registration's transaction checks it again and extends it."""
        return HeldLease(name=self._name, holder=self._holder, ttl_s=self._ttl)

    def __enter__(self) -> ImportLease:
        if not self._store.acquire_lease(self._name, self._holder, ttl_s=self._ttl):
            raise ConflictError(
                f"another import into model {self._model!r} is in progress, or one died "
                f"holding its lease, which then lapses within {self._ttl:g} s; retry after "
                "that (an import skips the versions already there)",
                code="import_in_progress",
            )
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"tunewatch-import-lease-{self._model[:40]}", daemon=True
        )
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            self._store.release_lease(self._name, self._holder)
        except StoreError:
            logger.exception(
                "could not release the import lease of model=%s; it lapses in %g s",
                self._model,
                self._ttl,
            )

    def _beat(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self.renew()
            except ConflictError:
                logger.error(
                    "model=%s: this import's lease lapsed; it fails at its next step",
                    self._model,
                )
                return
            except StoreError as exc:  # the next beat tries again; a step's renew raises
                logger.warning("could not renew the import lease of model=%s: %s", self._model, exc)
            except Exception:  # the thread's boundary: logged; the next beat tries again
                logger.exception("could not renew the import lease of model=%s", self._model)
