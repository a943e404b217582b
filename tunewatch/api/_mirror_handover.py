"""A mirror call's records committed, then handed over: at most ``recording.max_batch``
at a time (:func:`recorded`), each chunk's new records counted ``accepted`` and shadowed
as soon as its commits resolve (:class:`Handover`), as a scored request is.

They were handed to the challengers only once every chunk had succeeded: a call failing
at a later chunk (503: a lock held past ``store.lock_timeout_s``, or
``recording.max_pending_bytes`` refusing part of it) had the chunks before it recorded,
its retry found them ``duplicates``, which are never shadowed, and so they never were
(4,000 records stored, 3,872 shadowed and counted).

A call failing so is answered 503 ``store_unavailable`` (:class:`PartlyRecorded`) saying
how many of its records were recorded before the failure and asking for the whole batch
again, with ``Retry-After``: it was answered the failure's own "…; not recorded", as a
scored request is, although 2,048 of its 10,000 records were recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.responses import Response

from shadow import Lineup, LoadedVersion
from tunewatch._errors import StoreUnavailableError
from tunewatch._recorder import Recorder
from tunewatch.api._context import AppContext
from tunewatch.api._errors import describe, error_response
from tunewatch.api._mirror_body import Mirrored, MirrorRecord

#: Seconds a mirror call answered :class:`PartlyRecorded` is asked to wait: the store
#: catching up, or the daemon stopping (another replica takes the resend).
RETRY_AFTER_S = 5

# What a store's refusal says of the one request it answered: not so of a batch.
_SINGLE_REQUEST_ENDINGS = ("; not recorded", "; retry later")


class PartlyRecorded(StoreUnavailableError):
    """A mirror call failed (503) after ``recorded`` of its ``total`` records were
    committed, ``replayed`` more found recorded already: its answer
    (:meth:`response`) says so, and asks for the whole batch again."""

    def __init__(
        self,
        failure: StoreUnavailableError,
        *,
        recorded: int,
        replayed: int,
        total: int,
        max_batch: int,
    ) -> None:
        why = describe(failure)[2]  # a database's own text is for the log, not the caller
        for ending in _SINGLE_REQUEST_ENDINGS:
            why = why.removesuffix(ending)
        rest = total - recorded - replayed
        records = f"{total} record{'' if total == 1 else 's'}"
        if recorded:
            done = f"of this batch's {records}, {recorded} were recorded before the failure"
        else:
            done = f"none of this batch's {records} was recorded by this call"
        if replayed:
            done += f" ({replayed} {'more ' if recorded else ''}were recorded already)"
        if recorded or replayed:
            done += (
                f" and the other {rest} were not (its records are committed "
                f"recording.max_batch = {max_batch} at a time)"
            )
        super().__init__(
            f"{why}; {done}; resend the whole batch in {RETRY_AFTER_S} s: the records "
            "recorded come back as `duplicates`, not stored twice",
            code=failure.code,
        )
        self.recorded = recorded
        self.replayed = replayed
        self.total = total

    def response(self) -> Response:
        """503 ``store_unavailable`` with the message and ``Retry-After``."""
        answer = error_response(503, self.code, self.message)
        answer.headers["Retry-After"] = str(RETRY_AFTER_S)
        return answer


async def recorded(
    recorder: Recorder, batch: list[Mirrored], committed: Callable[[Sequence[Mirrored]], None]
) -> list[MirrorRecord]:
    """Record ``batch``, at most ``recording.max_batch`` records at a time; the records
    whose id was already recorded. All handed over at once, a batch of 10,000 records was
    one commit, and every request scored meanwhile waited for it (inference's p50 3.5 s
    beside eight callers mirroring such batches); a chunk's commit is as long as a busy
    group's. Each chunk's new records are handed to ``committed`` once every commit of
    the chunk has resolved, those of a chunk that failed in part too: the call then fails
    (503, :class:`PartlyRecorded`) with the chunks before it recorded, and the client's
    retry finds them ``duplicates``."""
    replayed: list[MirrorRecord] = []
    n_committed = 0
    for start in range(0, len(batch), recorder.max_batch):
        chunk = batch[start : start + recorder.max_batch]
        results = await asyncio.gather(
            *(recorder.record(m.record.request, [m.record.output]) for m in chunk),
            return_exceptions=True,
        )
        new = [m for m, result in zip(chunk, results, strict=True) if result is True]
        n_committed += len(new)
        committed(new)
        replayed += [m.record for m, result in zip(chunk, results, strict=True) if result is False]
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if isinstance(failed, StoreUnavailableError):
            raise PartlyRecorded(
                failed,
                recorded=n_committed,
                replayed=len(replayed),
                total=len(batch),
                max_batch=recorder.max_batch,
            ) from failed
        if failed is not None:
            raise failed
    return replayed


class Handover:
    """What a mirror call does with each record once it is committed (:meth:`committed`):
    counted ``accepted`` and handed to the challengers other than the version that
    answered it, unless it lies outside the model's feature ranges (counted in
    ``tunewatch_shadow_dropped_total{reason="out_of_range"}`` instead)."""

    def __init__(self, ctx: AppContext, model: str, lineup: Lineup) -> None:
        self._ctx = ctx
        self._model = model
        self._lineup = lineup
        self._others: dict[int, tuple[LoadedVersion, ...]] = {}  # by the answering version

    def committed(self, records: Sequence[Mirrored]) -> None:
        if not records:
            return
        runtime, model = self._ctx.runtime, self._model
        runtime.metrics.mirror_records.labels(model, "accepted").inc(len(records))
        if not self._ctx.shadowing:
            return
        skipped = 0
        for record, x, in_range in records:
            challengers = self._challengers(record.output.version)
            if not challengers:
                continue
            if not in_range:
                skipped += 1
                continue
            runtime.shadow(model, record.request.request_id, x, challengers)
        if skipped:
            runtime.metrics.shadow_dropped.labels(model, "out_of_range").inc(skipped)

    def _challengers(self, version: int) -> tuple[LoadedVersion, ...]:
        """The challengers but ``version`` (the record already holds its answer)."""
        others = self._others.get(version)
        if others is None:
            others = self._others[version] = tuple(
                c for c in self._lineup.challengers if c.version != version
            )
        return others
