"""A store lease held for the length of a block, renewed by a heartbeat thread.

Work that two processes must not do at once (two imports into one model; two runs
archiving studies, one of a leader that lost the scheduler's lease and one of the new
leader) takes a lease of the store's on entering, or is refused. A thread renews it every
third of its time to live, so one left by a process that died lapses within that. A
lease lost is lost: renewing only extends it while this holder still holds it
(:meth:`Store.renew_lease <tunewatch.store.Store.renew_lease>`), and :meth:`renew` before a
step that writes raises once it lapsed (the process stopped, or the store unreachable,
past the time to live), whether or not another holder took it since.
"""

from __future__ import annotations

import logging
import threading
import uuid

from tunewatch._errors import ConflictError, StoreError
from tunewatch.store import HeldLease, Store

logger = logging.getLogger(__name__)


class RenewedLease:
    """The store's lease ``name``, taken on entering (:meth:`refused` raised otherwise)
    and renewed by a thread of its own until the block ends; ``what`` names the work in
    logs and messages."""

    def __init__(self, store: Store, name: str, *, ttl_s: float, what: str) -> None:
        self._store, self._name, self._ttl, self._what = store, name, ttl_s, what
        self._holder = f"{name.partition(':')[0]}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def refused(self) -> Exception:
        """The error of entering while another holds the lease."""
        return ConflictError(
            f"{self._what} is in progress elsewhere, or a process died holding its lease, "
            f"which then lapses within {self._ttl:g} s",
            code="lease_held",
        )

    def lapsed(self) -> Exception:
        """The error of a step after the lease lapsed."""
        return ConflictError(
            f"the lease of {self._what} lapsed (this process was stopped, or the store "
            f"unreachable, for more than {self._ttl:g} s): another may have run since",
            code="lease_lapsed",
        )

    def renew(self) -> None:
        """Extend the lease, held since entering; :meth:`lapsed` raised when it lapsed
        meanwhile: another holder may have run under it since, and what this one planned
        is stale."""
        if not self._store.renew_lease(self._name, self._holder, ttl_s=self._ttl):
            raise self.lapsed()

    @property
    def held(self) -> HeldLease:
        """The lease as a transaction fences itself with (it checks it again and extends
        it): renewing a step before leaves the time between the two, which a stop can
        outlast."""
        return HeldLease(name=self._name, holder=self._holder, ttl_s=self._ttl)

    def __enter__(self) -> RenewedLease:
        if not self._store.acquire_lease(self._name, self._holder, ttl_s=self._ttl):
            raise self.refused()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"tunewatch-lease-{self._name[:40]}", daemon=True
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
                "could not release the lease of %s; it lapses in %g s", self._what, self._ttl
            )

    def _beat(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self.renew()
            except ConflictError:
                logger.error("the lease of %s lapsed; it fails at its next step", self._what)
                return
            except StoreError as exc:  # the next beat tries again; a step's renew raises
                logger.warning("could not renew the lease of %s: %s", self._what, exc)
            except Exception:  # the thread's boundary: logged; the next beat tries again
                logger.exception("could not renew the lease of %s", self._what)
