"""``RegistryFront``: the store's models, versions and artefacts.

The part of :class:`~._store.Store` that reads and changes the model registry: each
method opens one transaction and delegates to ``_registry_rows`` (models, versions,
stages, promotion), ``_registry_reads`` (a page of models with their line-ups),
``_champion_history`` (the champions over time), ``_safe_ranges`` (the promotion safe
ranges a daemon's config stored), ``_stage_changes`` (a stage move that reports whether
it was written) or ``_artefact_blobs`` (artefacts' bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from . import (
    _artefact_blobs,
    _champion_history,
    _registry_reads,
    _registry_rows,
    _safe_ranges,
    _stage_changes,
)
from ._champion_history import ChampionHistory
from ._front_base import StoreFront
from ._registry_reads import ModelLineup, ModelSummary, VersionLineup
from ._stage_changes import StageMove
from ._types import HeldLease, ModelRow, Stage, StoredSafeRanges, Task, VersionRow


class RegistryFront(StoreFront):
    """Models and versions (``_registry_rows``) and artefacts (``_artefact_blobs``)."""

    def ensure_model(
        self, *, name: str, task: Task, feature_names: Sequence[str], regulated: bool = False
    ) -> ModelRow:
        with self._tx("ensure_model") as conn:
            return _registry_rows.ensure_model(
                conn, name=name, task=task, feature_names=feature_names, regulated=regulated
            )

    def regulate_model(self, name: str, *, actor: str, reason: str) -> bool:
        """Mark the model regulated, audited in the same transaction; ``False`` when it
        was already. There is no way back: regulation only tightens."""
        with self._tx("regulate_model") as conn:
            return _registry_rows.regulate_model(conn, name, actor=actor, reason=reason)

    def set_safe_ranges(
        self, model: str, ranges: StoredSafeRanges, *, actor: str, reason: str
    ) -> bool:
        """Store ``ranges`` as ``model``'s promotion safe ranges (a daemon's config's, as
        it starts: the model need not be registered yet), audited in the same transaction
        (``set_safe_ranges``, old and new values); ``False`` when stored already."""
        with self._tx("set_safe_ranges") as conn:
            return _safe_ranges.set_safe_ranges(conn, model, ranges, actor=actor, reason=reason)

    def stored_safe_ranges(self, model: str) -> StoredSafeRanges | None:
        """``model``'s stored promotion safe ranges (also :attr:`ModelRow.stored_safe_ranges
        <._types.ModelRow.stored_safe_ranges>`), ``None`` when none are stored."""
        with self._read("stored_safe_ranges") as conn:
            return _safe_ranges.get_safe_ranges(conn, model)

    def get_model(self, name: str) -> ModelRow:
        with self._read("get_model") as conn:
            return _registry_rows.get_model(conn, name)

    def list_models(self) -> list[ModelRow]:
        """Every model, by name. To serve a request, read :meth:`model_page` instead."""
        with self._read("list_models") as conn:
            return _registry_rows.list_models(conn)

    def model_page(self, *, limit: int, after: str | None = None) -> list[ModelSummary]:
        """The first ``limit`` models named after ``after`` (from the first when ``None``),
        by name in code point order on both backends, each with its champion's and
        shadows' numbers and its count of versions: read in one statement, whatever the
        page's size, without reading any version whole."""
        with self._read("model_page") as conn:
            return _registry_reads.model_page(conn, limit=limit, after=after)

    def add_version(
        self,
        *,
        model: str,
        artefact_sha256: str,
        hyperparameters: Mapping[str, Any],
        size_bytes: int,
        actor: str,
        dataset_version: str | None = None,
        parent_version: int | None = None,
        study: str | None = None,
        details: Mapping[str, Any] | None = None,
        load_memory_bytes: int | None = None,
        stage: Literal["shadow", "champion", "retired"] = "shadow",
        once_per_study: bool = False,
    ) -> VersionRow:
        """Add the model's next version; with ``once_per_study``, raise ``ConflictError``
        (``study_registered``) if ``study`` has registered a version already. As the
        champion only where the model has none (``champion_exists``) and is not regulated
        (``approval_required``), both read under the model's lock; ``retired`` adds it out
        of service in the same transaction (a bundle's version its source retired)."""
        with self._tx("add_version") as conn:
            return _registry_rows.add_version(
                conn,
                model=model,
                artefact_sha256=artefact_sha256,
                hyperparameters=hyperparameters,
                size_bytes=size_bytes,
                actor=actor,
                dataset_version=dataset_version,
                parent_version=parent_version,
                study=study,
                details=details,
                load_memory_bytes=load_memory_bytes,
                stage=stage,
                once_per_study=once_per_study,
            )

    def register_version(
        self,
        *,
        model: str,
        task: Task,
        feature_names: Sequence[str],
        artefact_sha256: str,
        hyperparameters: Mapping[str, Any],
        size_bytes: int,
        actor: str,
        regulated: bool = False,
        regulate_reason: str = "a registration asked for regulated=true",
        check_model: Callable[[ModelRow], None] | None = None,
        dataset_version: str | None = None,
        parent_version: int | None = None,
        study: str | None = None,
        details: Mapping[str, Any] | None = None,
        load_memory_bytes: int | None = None,
        stage: Literal["shadow", "champion", "retired"] = "shadow",
        once_per_study: bool = False,
        for_job: int | None = None,
        lease: HeldLease | None = None,
        refuse_live_duplicate: bool = True,
    ) -> VersionRow:
        """Register a version in one transaction: the model added unless it exists (as
        :meth:`ensure_model`), ``check_model`` called with it as stored, the model marked
        regulated when ``regulated`` and it is not (as :meth:`regulate_model`, audited
        with ``regulate_reason``), and the version added (as :meth:`add_version`). A
        refusal anywhere (``check_model``'s error, the parent, ``champion_exists``,
        ``approval_required``, ``study_registered``, ``version_exists``: the model holds
        it live already, unless ``refuse_live_duplicate`` is false; ``job_cancelled``:
        ``for_job``, the
        re-tuning job whose study chose the version, was cancelled; ``lease_lapsed``:
        the caller no longer holds ``lease``, which the transaction otherwise extends)
        rolls all of it back. ``check_model`` is given the model's row read under its lock
        (:func:`._registration.register_version`)."""
        with self._tx("register_version") as conn:
            return _registry_rows.register_version(
                conn,
                model=model,
                task=task,
                feature_names=feature_names,
                regulated=regulated,
                regulate_reason=regulate_reason,
                check_model=check_model,
                artefact_sha256=artefact_sha256,
                hyperparameters=hyperparameters,
                size_bytes=size_bytes,
                actor=actor,
                dataset_version=dataset_version,
                parent_version=parent_version,
                study=study,
                details=details,
                load_memory_bytes=load_memory_bytes,
                stage=stage,
                once_per_study=once_per_study,
                for_job=for_job,
                lease=lease,
                refuse_live_duplicate=refuse_live_duplicate,
            )

    def get_version(self, model: str, version: int) -> VersionRow:
        with self._read("get_version") as conn:
            return _registry_rows.get_version(conn, model, version)

    def get_versions(self, model: str, versions: Sequence[int]) -> list[VersionRow]:
        """``versions`` of ``model`` as one read saw them (:class:`NotFoundError` if any
        is missing)."""
        with self._read("get_versions") as conn:
            return _registry_rows.get_versions(conn, model, versions)

    def list_versions(self, model: str, stage: Stage | None = None) -> list[VersionRow]:
        """Every version of ``model`` (in ``stage``), oldest first, each with its details:
        a model keeps every version its tuning jobs registered. To serve a request, read
        :meth:`version_page`, :meth:`version_lineup`, :meth:`lineup_versions` or
        :meth:`lineups` instead."""
        with self._read("list_versions") as conn:
            return _registry_rows.list_versions(conn, model, stage)

    def version_page(
        self, model: str, *, limit: int, before: int | None = None
    ) -> list[VersionRow]:
        """The newest ``limit`` versions of ``model`` numbered below ``before`` (from the
        newest when ``None``), newest first."""
        with self._read("version_page") as conn:
            return _registry_rows.version_page(conn, model, limit=limit, before=before)

    def version_lineup(self, model: str) -> VersionLineup:
        """``model``'s champion and shadow versions by number and its count of versions,
        read in one statement without reading any version whole."""
        with self._read("version_lineup") as conn:
            return _registry_rows.version_lineup(conn, model)

    def lineup_versions(self, model: str) -> list[VersionRow]:
        """``model``'s champion and shadow versions, whole, oldest first, read in one
        statement (none of the versions it retired or rolled back)."""
        with self._read("lineup_versions") as conn:
            return _registry_rows.lineup_versions(conn, model)

    def versions_served_since(self, model: str, since: datetime) -> list[VersionRow]:
        """``model``'s champion and shadow versions and those whose stage changed at or
        after ``since``, whole, oldest first, read in one statement: the versions that can
        have answered since then, none of those it took out of service before."""
        with self._read("versions_served_since") as conn:
            return _registry_rows.versions_served_since(conn, model, since)

    def lineups(self) -> list[ModelLineup]:
        """Every model, by name, with its champion's and shadows' numbers and artefacts,
        read in one statement without reading any version whole."""
        with self._read("lineups") as conn:
            return _registry_rows.lineups(conn)

    def champion(self, model: str) -> VersionRow | None:
        with self._read("champion") as conn:
            return _registry_rows.champion(conn, model)

    def champion_history(self, model: str) -> ChampionHistory:
        """``model``'s champions over time, from its promotions and rollbacks, in one
        read: which version answered at a given moment."""
        with self._read("champion_history") as conn:
            return _champion_history.champion_history(conn, model)

    def promote(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        expected_champion: int | None = None,
        expected_stage: Stage | None = None,
        keep_previous: bool = False,
    ) -> tuple[VersionRow, VersionRow | None]:
        """Make ``version`` the champion; returns (new champion, retired old champion).
        With ``expected_champion``, ``ConflictError`` (``champion_changed``) unless that
        version is still the champion; with ``expected_stage``, ``ConflictError``
        (``stage_changed``) unless ``version`` is still in that stage (both checked under
        the model's lock). With ``keep_previous``, the old champion goes to shadow instead
        (a paired rollback watch follows: ``kept_in_shadow`` in the event)."""
        with self._tx("promote") as conn:
            return _registry_rows.promote(
                conn,
                model,
                version,
                actor=actor,
                reason=reason,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
                keep_previous=keep_previous,
            )

    def set_stage(
        self,
        model: str,
        version: int,
        stage: Literal["shadow", "retired", "rolled_back"],
        *,
        actor: str,
        reason: str,
        close_approvals: bool = True,
    ) -> VersionRow:
        """Move ``version`` to ``stage`` (:meth:`move_stage`); returns it as it is now."""
        return self.move_stage(
            model, version, stage, actor=actor, reason=reason, close_approvals=close_approvals
        ).row

    def move_stage(
        self,
        model: str,
        version: int,
        stage: Literal["shadow", "retired", "rolled_back"],
        *,
        actor: str,
        reason: str,
        close_approvals: bool = True,
    ) -> StageMove:
        """Move ``version`` to ``stage``, audited with an event, under the model's lock;
        the version as it is now and whether the move was written (``changed``): one in
        that stage already is not moved again (a retried retire; of concurrent ones, all
        but the first), unless an earlier move did not put it there (a champion a
        promotion retired, retired by an operator: a pull, recorded). Retired or rolled
        back, its pending approvals are closed (unless ``close_approvals`` is false).
        ``ConflictError``: the champion (``champion_cannot_retire``), a rolled-back
        version (``rolled_back_is_final``)."""
        with self._tx("set_stage") as conn:
            return _stage_changes.move_stage(
                conn,
                model,
                version,
                stage,
                actor=actor,
                reason=reason,
                close_approvals=close_approvals,
            )

    # -- artefacts ----------------------------------------------------------------------

    def put_artefact(self, data: bytes, suffix: str = ".onnx") -> bool:
        """Keep ``data`` under its SHA-256 and ``suffix`` (``.onnx``, ``.npz``, ``.html``)
        for every host sharing the store; ``False`` when it was kept already."""
        with self._tx("put_artefact") as conn:
            return _artefact_blobs.put_artefact(conn, data, suffix)

    def missing_artefacts(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of ``keys`` (SHA-256, suffix) whose bytes the store does not keep."""
        with self._read("missing_artefacts") as conn:
            return _artefact_blobs.missing_artefacts(conn, keys)

    def get_artefact(self, sha256: str, suffix: str = ".onnx") -> bytes | None:
        """The bytes kept under ``sha256`` and ``suffix``, or ``None``. Not verified: the
        caller checks them against ``sha256`` (``ArtefactStore.get`` does)."""
        with self._read("get_artefact") as conn:
            return _artefact_blobs.get_artefact(conn, sha256, suffix)
