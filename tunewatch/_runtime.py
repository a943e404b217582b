"""The serving state of one daemon: loaded sessions per model, the shadow queue, recording.

The runtime knows no HTTP. It loads every model's champion and shadow versions from the
store and artefacts, scores validated rows with the champion, hands the same rows to the
challengers through the bounded shadow queue, and turns both into records.

This module is the runtime's front and its scoring path (:meth:`ScoringRuntime.choose`,
:meth:`~ScoringRuntime.run`, :meth:`~ScoringRuntime.validate`,
:meth:`~ScoringRuntime.shadow`); loading and refreshing the line-ups, their sessions and
their eviction live in :mod:`tunewatch._runtime_lineups`, whose :class:`ServedModel` is
re-exported here.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from monitor import ServingMetrics
from shadow import (
    LoadedVersion,
    ShadowError,
    ShadowJob,
    ShadowQueue,
    Signature,
    VersionNotLoadedError,
    cast_rows,
    check_output,
    validate_batch,
)
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import NotFoundError, StoreUnavailableError
from tunewatch._recorder import Recorder
from tunewatch._runtime_lineups import Lineups, ServedModel
from tunewatch._shadow_results import ShadowResults
from tunewatch._split import route
from tunewatch._version_series import VersionSeries
from tunewatch.store import Store, VersionRow

__all__ = ["Choice", "Scored", "ScoringRuntime", "ServedModel", "version_or_404"]


class Scored(NamedTuple):
    """The champion's answer to one request (a named tuple: built once per request, where
    a frozen dataclass's ``__init__`` cost 2 µs)."""

    version: LoadedVersion
    outputs: dict[str, np.ndarray]
    primary: np.ndarray
    latency_s: float
    challengers: tuple[LoadedVersion, ...]
    # the unit key the live split assigned the request by; ``None`` when no split routed
    # it (none served, no unit key, a named version): such a request is in neither arm
    unit_key: str | None = None


class Choice(NamedTuple):
    """The version that answers a request, chosen by :meth:`ScoringRuntime.choose`: the
    request's rows (cast to its input dtype), the challengers that shadow it and the
    unit key a live split routed it by (see :class:`Scored`)."""

    version: LoadedVersion
    x: np.ndarray
    challengers: tuple[LoadedVersion, ...]
    unit_key: str | None


class ScoringRuntime:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        artefacts: ArtefactStore,
        metrics: ServingMetrics,
        recorder: Recorder,
        clock: Callable[[], float] = time.monotonic,
        on_champion_change: Callable[[str], None] | None = None,
    ) -> None:
        # ``clock``: the monotonic clock a shadow version that would not load waits by;
        # ``on_champion_change(model)``: called (load lock held) once a load serves another
        # champion of the model than it served (the daemon re-exports its evaluation figures)
        self.config = config
        self.store = store
        self.artefacts = artefacts
        self.metrics = metrics
        self.recorder = recorder
        self.series = VersionSeries(metrics, hyperparameter_set=self._hyperparameter_set)
        # loads, refreshes, sessions and their eviction (tunewatch._runtime_lineups)
        self._lineups = Lineups(
            config=config,
            store=store,
            artefacts=artefacts,
            metrics=metrics,
            series=self.series,
            clock=clock,
            on_champion_change=on_champion_change,
        )
        # the line-ups' own dicts, not copies: a request reads what is served directly
        self._models = self._lineups.models
        self._sessions = self._lineups.sessions  # by artefact sha256 (what tests look into)
        self.shadow_results = ShadowResults(recorder=recorder, series=self.series, metrics=metrics)
        self.queue = ShadowQueue(
            maxsize=config.scoring.shadow_queue_size,
            on_result=self.shadow_results.on_results,
            workers=config.scoring.shadow_workers,
            cpu_share=config.scoring.shadow_cpu_share,
            on_drop=self.shadow_results.on_drop,
            max_bytes=config.scoring.shadow_queue_max_bytes,
            is_live=self.shadow_results.is_live,  # a retired challenger's backlog: skipped
        )
        metrics.track_queue_depth(lambda: float(self.queue.depth))
        metrics.shadow_queue_bytes.set_function(lambda: float(self.queue.queued_bytes))
        metrics.track_shadow_cpu(lambda: self.queue.cpu_seconds)
        # Shadow jobs of the running event-loop iteration, per loop, not yet handed over.
        self._shadow_pending: dict[asyncio.AbstractEventLoop, list[ShadowJob]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start recording and shadowing and load every model. A model whose line-up
        cannot be loaded (its champion's artefact missing or unloadable) is logged and
        served with an empty line-up: it is not ready (scoring it answers
        ``model_not_ready``) and the refresh loop tries it again; the others are served."""
        self.recorder.start()
        self.queue.start()
        self._lineups.load_all()

    def close(self) -> None:
        self.queue.close()
        self.recorder.close()

    def check_recordable(self) -> None:
        """Raise :class:`~tunewatch.StoreUnavailableError` while requests cannot be
        recorded: the recorder's writer thread is no longer alive (:meth:`Recorder.stopped`:
        nothing handed over would be written or answered), the store's database does not
        answer, or the recorder's commits fail for it (:meth:`Recorder.failing`: a full
        disk answers reads and refuses writes)."""
        stopped = self.recorder.stopped()
        if stopped is not None:
            raise stopped
        try:
            self.store.ping()
        except StoreUnavailableError:
            self.recorder.unreachable()
            raise
        failed = self.recorder.failing(answered=True)
        if failed is not None:
            # a copy: raised again and again (a probe every few seconds, from several
            # threads), the writer's error grew a traceback of every raise
            raise copy.copy(failed).with_traceback(None)

    @property
    def ready(self) -> bool:
        return all(m.deployment.lineup.champion is not None for m in self._models.values())

    # -- loading (tunewatch._runtime_lineups) --------------------------------------------
    def load(self, name: str) -> ServedModel:
        """(Re)load a model's champion and shadow versions; swaps the lineup atomically.

        Loads are serialised (API threads, the refresh loop and the comparison loop all
        load), and the sessions of versions no model serves any more are closed. A load
        that fails marks the model's line-up stale (``tunewatch_lineup_stale``) under the
        lock, so a newer load's mark is never overwritten by an older failure's."""
        return self._lineups.load(name)

    def try_load(self, name: str) -> ServedModel | None:
        """:meth:`load`, a fault of the model's own (an artefact of its champion missing,
        damaged, unreadable or unloadable) logged and ``None`` returned: the line-up it
        served stays (none, if it had none: not ready) and the refresh loop tries again.
        A change already committed (a registration, a retirement) stands either way."""
        return self._lineups.try_load(name)

    def refresh(self) -> list[str]:
        """Reload the models whose lineup changed in the store (another process promoted,
        registered or rolled back); returns their names."""
        return self._lineups.refresh()

    def model(self, name: str) -> ServedModel:
        served = self._models.get(name)
        if served is None:
            raise NotFoundError(f"unknown model {name!r}", code="model_not_found")
        return served

    def models(self) -> list[ServedModel]:
        return list(self._models.values())

    # -- scoring ---------------------------------------------------------------------------
    def validate(
        self, served: ServedModel, x: np.ndarray, signature: Signature | None = None
    ) -> np.ndarray:
        """Check decoded rows against ``signature`` (default: the model's)."""
        return validate_batch(
            x,
            self.signature(served) if signature is None else signature,
            max_rows=self.config.server.max_batch_rows,
            ranges=served.ranges,
        )

    def signature(self, served: ServedModel, version: int | None = None) -> Signature:
        """The signature a request is read against: a named version's own, else the
        model's — its champion's (all versions share the features, not necessarily the
        input dtype or output names; a live split's arm gets the rows cast to its dtype)."""
        return self._reader(served, version).model.signature

    def primary_width(self, served: ServedModel, version: int | None = None) -> int | None:
        """Columns of the primary output of the version :meth:`signature` reads against,
        declared or, where the graph leaves them dynamic, as the version scores them
        (:meth:`shadow.OnnxModel.primary_width`)."""
        return self._reader(served, version).model.primary_width()

    def _reader(self, served: ServedModel, version: int | None) -> LoadedVersion:
        if version is not None:
            return self._in_service(served, version)
        lineup = served.deployment.lineup
        champion = lineup.champion or (lineup.challengers[0] if lineup.challengers else None)
        if champion is None:
            raise NotFoundError(
                f"model {served.row.name!r} has no loaded version", code="model_not_ready"
            )
        return champion

    @staticmethod
    def _in_service(served: ServedModel, version: int) -> LoadedVersion:
        try:
            return served.deployment.get(version)
        except VersionNotLoadedError as exc:
            raise NotFoundError(
                f"model {served.row.name!r} has no version {version} in service "
                "(only the champion and shadow versions score)",
                code="version_not_found",
            ) from exc

    def score(
        self,
        served: ServedModel,
        x: np.ndarray,
        *,
        version: int | None = None,
        unit_key: str | None = None,
    ) -> Scored:
        """Score validated rows with the champion (or a named version): :meth:`choose`,
        then :meth:`run`."""
        return self.run(served, self.choose(served, x, version=version, unit_key=unit_key))

    def choose(
        self,
        served: ServedModel,
        x: np.ndarray,
        *,
        version: int | None = None,
        unit_key: str | None = None,
    ) -> Choice:
        """The version that answers validated rows: the champion, a named version, or
        the live split's challenger for its arm.

        With a live split configured, the split challenger answers for its share of unit
        keys (sticky by hash) and the other challengers shadow; the champion then does not
        score the request at all, so both arms are recorded as what answered. Only a
        request the split routed keeps its unit key (:attr:`Scored.unit_key`): one
        answered while no split was served was counted in the champion arm of the first
        split that came later, a false sample-ratio mismatch.
        """
        lineup = served.deployment.lineup  # read once: one champion per request
        split_unit = None
        if version is None:
            chosen = lineup.champion
            if chosen is None:
                raise NotFoundError(
                    f"model {served.row.name!r} has no champion", code="model_not_ready"
                )
            challengers = lineup.challengers
            split = served.split
            if split is not None and any(c.version == split.challenger for c in challengers):
                # The split arms stay unpaired: the split challenger never shadows.
                answering = route(
                    [chosen.version, *(c.version for c in challengers)], split, unit_key
                )
                if answering != chosen.version:
                    chosen = next(c for c in challengers if c.version == answering)
                    # rows were read against the champion's signature: cast them to the
                    # arm's input dtype, as a shadow's are, refusing what the cast would
                    # change (400 out_of_range, as the arm's own route answers)
                    spec = chosen.model.signature.input
                    x = cast_rows(x, spec.dtype, spec.name)
                challengers = tuple(c for c in challengers if c.version != split.challenger)
                split_unit = unit_key
        else:  # rows read against this version's own signature
            chosen = self._in_service(served, version)
            challengers = ()
            if lineup.champion is not None and chosen.version == lineup.champion.version:
                # the champion named (a client pinning the version it means) is shadowed
                # as when it is not: such requests gave the challengers no paired rows.
                # The split's arm stays unpaired, and does not answer: it was named.
                split = served.split
                challengers = tuple(
                    c for c in lineup.challengers if split is None or c.version != split.challenger
                )
        return Choice(chosen, x, challengers, split_unit)

    def run(self, served: ServedModel, choice: Choice) -> Scored:
        """Score the rows of ``choice`` with its version, observing its latency. Safe
        from any thread (a run's deadline is watched per thread): the inference route
        runs a version other than the champion in a worker thread."""
        chosen, x, challengers, split_unit = choice
        started = time.perf_counter()
        outputs = chosen.model.run(x)
        latency = time.perf_counter() - started
        self.series.latency(
            served.row.name, chosen.version, chosen.hyperparameter_set, chosen.role
        ).observe(latency)
        self.series.rows(served.row.name).inc(x.shape[0])
        primary = chosen.model.signature.primary_output
        check_output(outputs[primary], primary)  # recorded as float32: refused, not inf
        values = chosen.model.primary(outputs)
        if values.ndim != 2 or values.shape[0] != x.shape[0]:
            # recorded and compared row by row: a class-major [2, N] answer, or a rank-3
            # one the recorder cannot hold (a 500), is the model's fault, as a NaN is
            raise ShadowError(
                f"the model's output {primary!r} must be a matrix of one row per input row "
                f"({x.shape[0]}), got shape {outputs[primary].shape}",
                code="output_shape_mismatch",
            )
        return Scored(
            version=chosen,
            outputs=outputs,
            primary=values,
            latency_s=latency,
            challengers=challengers,
            unit_key=split_unit,
        )

    def shadow(
        self, model: str, request_id: str, x: np.ndarray, challengers: tuple[LoadedVersion, ...]
    ) -> None:
        """Hand acknowledged rows to the challengers; never blocks, drops when full.

        Inside an event loop the jobs of one loop iteration are handed over together at
        its end: one wake-up of the shadow workers per iteration, not per request.
        """
        if not challengers:
            return
        job = ShadowJob(model=model, request_id=request_id, x=x, challengers=challengers)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.queue.submit_many([job])
            return
        pending = self._shadow_pending.get(loop)
        if pending is None:
            pending = self._shadow_pending[loop] = []
            loop.call_soon(self._hand_over_shadow, loop)
        pending.append(job)

    def _hand_over_shadow(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue.submit_many(self._shadow_pending.pop(loop))

    def _hyperparameter_set(self, model: str, version: int) -> str | None:
        """The hyperparameter set of a version in ``model``'s lineup; None when it has
        left it (its queued jobs are then neither scored nor recorded, no series made for
        it again: see :mod:`tunewatch._shadow_results`)."""
        served = self._models.get(model)
        if served is None:
            return None
        try:
            return served.deployment.get(version).hyperparameter_set
        except LookupError:
            return None


def version_or_404(store: Store, model: str, version: int) -> VersionRow:
    try:
        return store.get_version(model, version)
    except NotFoundError as exc:
        raise NotFoundError(
            f"model {model!r} has no version {version}", code="version_not_found"
        ) from exc
