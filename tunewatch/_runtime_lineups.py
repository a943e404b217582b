"""The line-ups a scoring runtime serves: loading and refreshing them, their sessions.

:class:`tunewatch._runtime.ScoringRuntime` owns one :class:`Lineups` and hands it every
load (at start, from the API, the refresh loop and the comparison loop); the scoring path
(choosing the answering version, running it, shadowing) stays in :mod:`tunewatch._runtime`
and reads :attr:`Lineups.models` directly, the same dict, without a call in between.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor import ServingMetrics
from shadow import (
    Deployment,
    FeatureRange,
    LoadedVersion,
    OnnxModel,
    Role,
    ShadowError,
)
from tunewatch._actions import count_events_from_zero
from tunewatch._approval_gate import ApprovalGate
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._outage_log import OutageLog
from tunewatch._split import SplitConfig
from tunewatch._unloadable import CHAMPION_RETRY_MAX_S, Unloadable
from tunewatch._version_series import VersionSeries
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._watched import watched_versions
from tunewatch.store import ModelRow, Store, VersionRow
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._registry_reads import ModelLineup

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model as the scoring path needs it: its row, its ranges, its deployment, its live
    split as served and :attr:`named`."""

    row: ModelRow
    ranges: tuple[FeatureRange | None, ...] | None
    deployment: Deployment
    split: SplitConfig | None = None
    #: For each version of the store's line-up the deployment is given, the rules that
    #: keep it from answering requests naming it (none: it answers; the champion's are
    #: none). Made before the deployment is given that line-up, so a version served is
    #: in it but for a request that read this model just before a newer one replaced it:
    #: such a version is refused (see :func:`tunewatch.api._oip.named_version`).
    named: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


class Lineups:
    """Each model's served line-up (:attr:`models`), loaded from the store and artefacts
    and kept as the store says; the open sessions (:attr:`sessions`, by artefact sha256),
    closed once no line-up holds their version.

    ``series``: the runtime's per-version series (memory gauged on load, dropped on
    eviction); ``clock``: the monotonic clock a shadow version that would not load waits
    by; ``on_champion_change(model)``: called (load lock held) once a load serves another
    champion of the model than it served (the daemon re-exports its evaluation figures).

    Loads of one model run one at a time (its own lock); loads of different models run
    at once but for the short step that serves what they read and opened (the load
    lock): reading an artefact and opening its session take seconds for a large one, and
    under one lock for all a promotion of one model held up another's retire as long.
    """

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        artefacts: ArtefactStore,
        metrics: ServingMetrics,
        series: VersionSeries,
        clock: Callable[[], float],
        on_champion_change: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.artefacts = artefacts
        self.metrics = metrics
        self.series = series
        self._on_champion_change = on_champion_change
        self.models: dict[str, ServedModel] = {}
        self.sessions: dict[str, OnnxModel] = {}  # by artefact sha256
        self._comparisons = ComparisonStore(store)  # which version a rollback watch keeps
        # a version whose promotion would wait for an approver answers no client: not
        # as a split's challenger, nor named (ServedModel.named)
        self._approval_gate = ApprovalGate(config=config, store=store)
        # versions whose artefact failed to load: refresh leaves a shadow version out of
        # the line-up it wants, and a model whose champion failed as it is served, until
        # the retry time (a reload for another reason tries it too)
        self._unloadable = Unloadable(clock=clock)
        self._load_lock = threading.Lock()  # held while served line-ups and sessions change
        self._model_locks: dict[str, threading.Lock] = {}
        # models whose refresh failed unexpectedly, each run of failures logged once
        self._refresh_faults: dict[str, OutageLog] = {}

    def load_all(self) -> None:
        """Load every model of the store; one whose line-up cannot be loaded is served
        with an empty one (see :meth:`ScoringRuntime.start
        <tunewatch._runtime.ScoringRuntime.start>`)."""
        for row in self.store.list_models():
            count_events_from_zero(self.metrics, row.name)  # raised through it, if any
            if self.try_load(row.name) is None:  # one model's fault: the others load
                # no version in shadow: a split routes nothing while none is served
                unserved = self._served(
                    row, None, self._split(row, (), self._version(row)), named={}
                )
                with self._load_lock:
                    self.models.setdefault(row.name, unserved)

    def load(self, name: str) -> ServedModel:
        """The work of :meth:`ScoringRuntime.load <tunewatch._runtime.ScoringRuntime.load>`."""
        with self._load_lock:
            model_lock = self._model_locks.setdefault(name, threading.Lock())
        with model_lock:
            try:
                row = self.store.get_model(name)
                versions = self.store.lineup_versions(name)  # none retired or rolled back
                shadows = {v.version: v for v in versions if v.stage == "shadow"}
                split = self._split(row, shadows, shadows.__getitem__)
                champion = next((v.version for v in versions if v.stage == "champion"), None)
                named = self._named(row, champion, shadows, shadows.__getitem__)
                opened = self._open(versions)
                with self._load_lock:
                    served = self._load(row, versions, split, named, opened)
                    self._evict()
            except Exception as exc:  # an unexpected one too (a MemoryError reading)
                if not isinstance(exc, StoreUnavailableError):
                    self.metrics.lineup_stale.labels(name).set(1)
                raise
        return served

    def try_load(self, name: str) -> ServedModel | None:
        """The work of :meth:`ScoringRuntime.try_load
        <tunewatch._runtime.ScoringRuntime.try_load>`."""
        try:
            return self.load(name)
        except (StoreError, ShadowError) as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            logger.error(
                "model=%s lineup cannot be loaded, serving the last one (none: not ready) "
                "until a refresh loads it: %s",
                name,
                exc,
            )
            return None

    def _served(
        self,
        row: ModelRow,
        deployment: Deployment | None,
        split: SplitConfig | None,
        *,
        named: Mapping[int, tuple[str, ...]],
    ) -> ServedModel:
        """``row`` as served: its ranges from the config, ``split`` (see :meth:`_split`),
        ``named`` (see :meth:`_named`), its ``deployment`` (a new one, with no line-up,
        when ``None``)."""
        return ServedModel(
            row=row,
            ranges=self._ranges(row),
            deployment=deployment if deployment is not None else Deployment(row.name),
            split=split,
            named=named,
        )

    def _split(
        self, row: ModelRow, shadows: Collection[int], version: Callable[[int], VersionRow]
    ) -> SplitConfig | None:
        """The model ``row``'s live split as served: the config's, none while a rollback
        watch compares the champion with the split's challenger, nor while promoting that
        challenger would wait for an approver (:class:`ApprovalGate`; ``shadows``,
        the model's versions in shadow, and ``version``, a reader of one, are its). Kept
        in shadow for the watch, that version shadows the champion: answering its split
        share instead, it gave the watch no pair (see
        :func:`tunewatch.comparison._watched.watched_versions`)."""
        cfg = self.config.model(row.name)
        split = cfg.comparison.split if cfg is not None else None
        if split is None or split.challenger in watched_versions(self._comparisons, row.name):
            return None
        return self._approval_gate.served(row, split, shadows=shadows, version=version)

    def _named(
        self,
        row: ModelRow,
        champion: int | None,
        shadows: Collection[int],
        version: Callable[[int], VersionRow],
    ) -> dict[int, tuple[str, ...]]:
        """:attr:`ServedModel.named` of the model ``row`` whose store line-up is
        ``champion`` and ``shadows``: the champion answers requests naming it, a version
        in shadow only while promoting it would need no approver (:class:`ApprovalGate`,
        which holds the live split by the same rules; ``version`` reads one)."""
        named = self._approval_gate.named(row, shadows=shadows, version=version)
        if champion is not None:
            named[champion] = ()
        return named

    def _version(self, row: ModelRow) -> Callable[[int], VersionRow]:
        """A reader of ``row``'s versions by number, from the store."""
        return lambda number: self.store.get_version(row.name, number)

    def _open(self, versions: list[VersionRow]) -> dict[str, OnnxModel | StoreError | ShadowError]:
        """The sessions of ``versions``' artefacts not open yet, opened without the load
        lock, by artefact sha256: each a session, or the error that opening it raised
        (raised by :meth:`_session` as it would have been, but a store outage's, raised
        here)."""
        opened: dict[str, OnnxModel | StoreError | ShadowError] = {}
        for v in versions:
            digest = v.artefact_sha256
            if digest in self.sessions or digest in opened:
                continue
            try:
                opened[digest] = self._open_session(digest)
            except (StoreError, ShadowError) as exc:
                if isinstance(exc, StoreUnavailableError):
                    raise
                opened[digest] = exc
        return opened

    def _load(
        self,
        row: ModelRow,
        versions: list[VersionRow],
        split: SplitConfig | None,
        named: Mapping[int, tuple[str, ...]],
        opened: dict[str, OnnxModel | StoreError | ShadowError],
    ) -> ServedModel:
        """Serve ``versions`` (the store's line-up of ``row``) with ``split`` and
        ``named``; the caller holds the load lock and opened what was not open
        (``opened``). The model served is replaced before its deployment is given the
        line-up: a version new to it is found in :attr:`ServedModel.named` first."""
        name = row.name
        champion = next(
            (self._champion(v, opened) for v in versions if v.stage == "champion"), None
        )
        challengers = tuple(
            loaded
            for v in versions
            if v.stage == "shadow" and (loaded := self._challenger(v, opened)) is not None
        )
        self._settle_unloadable(name, {v.version for v in versions if v.stage == "shadow"})
        served = self.models.get(name)
        before = served.deployment.lineup.champion if served is not None else None
        if served is None or served.row != row or served.split != split or served.named != named:
            deployment = served.deployment if served is not None else None
            served = self._served(row, deployment, split, named=named)
            self.models[name] = served
        served.deployment.set_lineup(champion, challengers)
        if champion is not None:
            self.metrics.champion_version.labels(name).set(champion.version)
        self._export_error_limit(name)
        logger.info(
            "loaded model=%s champion=%s challengers=%s",
            name,
            champion.version if champion else None,
            [c.version for c in challengers],
        )
        if (before.version if before else None) != (champion.version if champion else None):
            self._champion_changed(name)
        return served

    def _export_error_limit(self, name: str) -> None:
        """Export the model's ``max_error_rate`` for the alerts on failed runs, or none
        while the rule is off."""
        cfg = self.config.model(name)
        guardrails = (cfg.comparison if cfg is not None else ComparisonConfig()).guardrails
        if guardrails.max_error_rate is None:
            with contextlib.suppress(KeyError):  # never exported, or already removed
                self.metrics.max_error_rate.remove(name)
        else:
            self.metrics.max_error_rate.labels(name).set(guardrails.max_error_rate)

    def _champion_changed(self, name: str) -> None:
        """Tell ``on_champion_change`` that ``name`` is served by another champion; its
        failure is logged, not raised: the new line-up is served either way."""
        if self._on_champion_change is None:
            return
        try:
            self._on_champion_change(name)
        except Exception:
            logger.exception(
                "model=%s: serving another champion, but its stored evaluation figures "
                "could not be exported; the replaced champion's stay until its next "
                "evaluation",
                name,
            )

    def refresh(self) -> list[str]:
        """The work of :meth:`ScoringRuntime.refresh
        <tunewatch._runtime.ScoringRuntime.refresh>`: one statement reads every model's
        champion and shadows by number and artefact, and only a line-up that changed is
        loaded (its served versions read whole). It runs every few seconds in every
        process, so what it reads must not grow with the versions the models retired."""
        changed = []
        for stored in self.store.lineups():
            name = stored.model.name
            try:
                if self._refresh_model(stored):
                    changed.append(name)
            except StoreUnavailableError:
                raise  # the store's outage, not this model's: the refresh loop logs it
            except Exception as exc:  # one model's boundary: the models after it refresh too
                self._refresh_fault(name).failed(exc)  # once with its traceback
                with self._load_lock:
                    self.metrics.lineup_stale.labels(name).set(1)
            else:
                fault = self._refresh_faults.pop(name, None)
                if fault is not None:
                    fault.succeeded()
        return changed

    def _refresh_fault(self, name: str) -> OutageLog:
        """The log of model ``name``'s run of unexpected refresh failures: a traceback when
        it starts (and for each other exception type), repeats at debug, a line when the
        model refreshes again; not a traceback every ``refresh_s``."""
        fault = self._refresh_faults.get(name)
        if fault is None:
            fault = self._refresh_faults[name] = OutageLog(
                logger,
                what=f"model={name}: refreshing its lineup",
                retry="the last one is served (none: not ready) until a refresh loads it",
                now=lambda: datetime.now(UTC),
                level=logging.ERROR,
            )
        return fault

    def _refresh_model(self, stored: ModelLineup) -> bool:
        """:meth:`refresh` of one model, the store's line-up of it ``stored``: whether it
        was loaded (``False``: served as the store says, waiting for a version's retry
        time, or a fault of its own, logged, see :meth:`try_load`)."""
        row = stored.model
        count_events_from_zero(self.metrics, row.name)  # one registered meanwhile too
        shadows = {v.version for v in stored.challengers}
        wanted = (
            stored.champion.version if stored.champion is not None else None,
            tuple(
                v.version
                for v in stored.challengers
                if not self._unloadable.waiting(row.name, v.version, v.artefact_sha256)
            ),
        )
        champion = stored.champion
        if champion is not None and self._unloadable.waiting(
            row.name, champion.version, champion.artefact_sha256
        ):  # served as it is (stale) until the champion's retry time, shadows too
            with self._load_lock:
                self._settle_unloadable(row.name, shadows | {champion.version})
            return False
        served = self.models.get(row.name)
        if served is not None:
            lineup = served.deployment.lineup
            have = (
                lineup.champion.version if lineup.champion else None,
                tuple(c.version for c in lineup.challengers),
            )
            read = self._version(row)
            if (
                have == wanted
                and served.row == row
                and served.split == self._split(row, shadows, read)
                and served.named == self._named(row, wanted[0], shadows, read)
            ):
                with self._load_lock:  # served as the store says, but for versions
                    self._settle_unloadable(row.name, shadows)  # waiting to retry
                return False
        return self.try_load(row.name) is not None  # one model's fault: the others reload

    def _settle_unloadable(self, name: str, shadows: set[int]) -> None:
        """Drop the load failures of ``name``'s versions no longer in shadow (``shadows``:
        the store's) and mark its line-up stale while one is left; the caller holds the
        load lock and serves the store's champion."""
        self._unloadable.forget(name, keep=shadows)
        self.metrics.lineup_stale.labels(name).set(1 if self._unloadable.count(name) else 0)

    def _evict(self) -> None:
        """Drop sessions and per-version series (memory, latency, failed runs) of
        versions no line-up holds (retired, rolled back): without this every re-tune would
        leave a session and a dozen exported series for the daemon's life."""
        live: dict[tuple[str, int], LoadedVersion] = {}
        for served in self.models.values():
            lineup = served.deployment.lineup
            for loaded in (lineup.champion, *lineup.challengers):
                if loaded is not None:
                    live[(served.deployment.name, loaded.version)] = loaded
        digests = {loaded.model.sha256 for loaded in live.values()}
        for digest in [d for d in self.sessions if d not in digests]:
            del self.sessions[digest]
        self.series.keep(live)

    def _champion(
        self, v: VersionRow, opened: dict[str, OnnxModel | StoreError | ShadowError]
    ) -> LoadedVersion:
        """The champion version, loaded; when its artefact cannot be loaded the error is
        raised (the line-up is not loaded) and the refresh waits before it tries again,
        as for a shadow version but at most :data:`CHAMPION_RETRY_MAX_S`."""
        try:
            loaded = self._loaded(v, "champion", opened)
        except (StoreError, ShadowError) as exc:
            if not isinstance(exc, StoreUnavailableError):
                self._unloadable.failed(
                    v.model, v.version, v.artefact_sha256, max_s=CHAMPION_RETRY_MAX_S
                )
            raise
        self._unloadable.loaded(v.model, v.version)
        return loaded

    def _challenger(
        self, v: VersionRow, opened: dict[str, OnnxModel | StoreError | ShadowError]
    ) -> LoadedVersion | None:
        """A shadow version, or ``None`` (logged) when its artefact cannot be loaded: a
        challenger is best-effort and must not keep the champion from being served."""
        try:
            loaded = self._loaded(v, "challenger", opened)
        except (StoreError, ShadowError) as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            wait = self._unloadable.failed(v.model, v.version, v.artefact_sha256)
            logger.error(
                "model=%s version=%d cannot be loaded, it is not shadowed (tried again in "
                "%.0f s): %s",
                v.model,
                v.version,
                wait,
                exc,
            )
            return None
        self._unloadable.loaded(v.model, v.version)
        return loaded

    def _open_session(self, digest: str) -> OnnxModel:
        return OnnxModel.from_bytes(
            self.artefacts.get(digest),
            intra_op_threads=self.config.scoring.intra_op_threads,
            run_timeout_s=self.config.scoring.run_timeout_s,
        )

    def _session(
        self, v: VersionRow, opened: dict[str, OnnxModel | StoreError | ShadowError]
    ) -> OnnxModel:
        """``v``'s session: the open one, else the one the load opened (or its error,
        raised), else (closed by another model's load meanwhile) opened now; kept by
        artefact digest. The caller holds the load lock."""
        digest = v.artefact_sha256
        session = self.sessions.get(digest)
        if session is None:
            got = opened.get(digest)
            if got is None:
                got = opened[digest] = self._open_session(digest)
            if not isinstance(got, OnnxModel):
                raise got
            session = self.sessions[digest] = got
        return session

    def _loaded(
        self, v: VersionRow, role: Role, opened: dict[str, OnnxModel | StoreError | ShadowError]
    ) -> LoadedVersion:
        session = self._session(v, opened)
        self.series.loaded(v)
        return LoadedVersion(
            version=v.version, model=session, hyperparameter_set=v.hyperparameter_set_id, role=role
        )

    def _ranges(self, row: ModelRow) -> tuple[FeatureRange | None, ...] | None:
        cfg = self.config.model(row.name)
        if cfg is None or not cfg.features:
            return None
        by_name = {f.name: FeatureRange(low=f.low, high=f.high) for f in cfg.features}
        unknown = set(by_name) - set(row.feature_names)
        if unknown:
            logger.warning("model=%s config names unknown features %s", row.name, sorted(unknown))
        return tuple(by_name.get(n) for n in row.feature_names)
