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

from tunewatch._errors import ConflictError
from tunewatch._renewed_lease import RenewedLease
from tunewatch.store import Store

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


class ImportLease(RenewedLease):
    """The lease of imports into ``model``, taken on entering (or refused) and renewed by
    a thread of its own until the block ends (:class:`~tunewatch._renewed_lease.
    RenewedLease`). :meth:`renew` before a step that writes: it raises when the lease
    lapsed meanwhile (the import stopped, or the store unreachable, for longer than
    ``ttl_s``), whether or not another import took it."""

    def __init__(self, store: Store, model: str, *, ttl_s: float = LEASE_TTL_S) -> None:
        name = f"import:{hashlib.sha256(model.encode()).hexdigest()[:32]}"
        super().__init__(store, name, ttl_s=ttl_s, what=f"imports into model={model}")
        self._model = model

    def refused(self) -> Exception:
        return ConflictError(
            f"another import into model {self._model!r} is in progress, or one died "
            f"holding its lease, which then lapses within {self._ttl:g} s; retry after "
            "that (an import skips the versions already there)",
            code="import_in_progress",
        )

    def lapsed(self) -> Exception:
        return lapsed(self._model, self._ttl)

    def __enter__(self) -> ImportLease:
        super().__enter__()
        return self
