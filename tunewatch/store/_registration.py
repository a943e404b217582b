"""Registration: a model added unless it exists, marked regulated, and a version added
under the lock on the model's row, which assigns its number. A version is registered as
the champion only when the model has none and, read under that lock, is not regulated
(its promotion would wait for an approver). Every function runs inside the caller's
transaction.

Regulated means the model's flag, or the regulation a daemon's config stored for it with
its safe ranges (:attr:`~._types.StoredSafeRanges.regulated`), which a model not
registered yet has no row to hold: its registration applies it, whatever the
registering process's config says."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select, update

from .._errors import ConflictError, InvalidValueError, NotFoundError
from ._audit import append_audit_in
from ._canonical import canonical_json, hyperparameter_set_id, json_roundtrip, set_identity
from ._engine import dialect_insert
from ._evaluations import check_lease
from ._job_cancel import lock_for_registration
from ._registry_reads import (
    _champion,
    _lock_model,
    _version,
    _version_select,
    get_model,
    get_version,
)
from ._registry_text import MAX_NAME, check_feature_names, check_version_text, valid_model_name
from ._schema import hyperparameter_sets, model_versions, models
from ._types import TASKS, HeldLease, ModelRow, VersionRow, check_choice, utcnow

#: The audit reason of a registration regulating a model as a daemon's config stored it.
STORED_REASON = (
    "the config of a daemon regulates it (`models[].regulated: true`), stored when it started"
)


def _stored_regulated(model: ModelRow) -> bool:
    """Whether a daemon's config stored the model as regulated (with its safe ranges)."""
    stored = model.stored_safe_ranges
    return stored is not None and stored.regulated


def ensure_model(
    conn: Connection, *, name: str, task: str, feature_names: Sequence[str], regulated: bool
) -> ModelRow:
    """The model, added with these attributes unless it exists (then left as it is)."""
    check_choice("task", task, TASKS)
    try:
        return get_model(conn, name)  # one named before names could not be paths, too
    except NotFoundError:
        pass
    if not valid_model_name(name):
        raise InvalidValueError(
            f"model `name` must be 1 to {MAX_NAME} printable characters, not a path (no `/`, "
            f"`\\`, `.` or `..`) and no space first or last, got {name[:80]!r}"
        )
    features = [str(f) for f in feature_names]
    check_version_text(dataset_version=None, study=None, feature_names=features)
    check_feature_names(features)
    stmt = dialect_insert(conn, models).values(
        name=name, task=task, feature_names=features, regulated=regulated, created_at=utcnow()
    )
    # a model is never changed here: a registration racing the model's first one finds
    # it and is checked against it (its task, features and regulated flag stand)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[models.c.name]))
    return get_model(conn, name)


def regulate_model(conn: Connection, name: str, *, actor: str, reason: str) -> bool:
    """Set the model's ``regulated`` flag from false to true and audit it
    (``regulate_model``), both in the caller's transaction; ``False`` (and no entry) when
    it was regulated already. Regulation only tightens: nothing clears the flag."""
    changed = conn.execute(
        update(models)
        .where(models.c.name == name, models.c.regulated.is_(False))
        .values(regulated=True)
    ).rowcount
    if not changed:
        get_model(conn, name)  # NotFoundError for a model that does not exist
        return False
    append_audit_in(
        conn,
        actor=actor,
        action="regulate_model",
        target=name,
        details={"regulated": True, "reason": reason},
    )
    return True


def add_version(
    conn: Connection,
    *,
    model: str,
    artefact_sha256: str,
    hyperparameters: Mapping[str, Any],
    size_bytes: int,
    actor: str,
    dataset_version: str | None,
    parent_version: int | None,
    study: str | None,
    details: Mapping[str, Any] | None,
    load_memory_bytes: int | None,
    stage: str,
    once_per_study: bool = False,
    refuse_live_duplicate: bool = False,
) -> VersionRow:
    """Add the model's next version under the lock on its row (see
    :meth:`~._front_registry.RegistryFront.add_version`); with ``refuse_live_duplicate``
    (a registration's, :func:`register_version`), a live version it is already refuses it
    (:func:`_refuse_live_duplicate`)."""
    if stage not in ("shadow", "champion", "retired"):
        raise ValueError(
            f"a new version's `stage` must be one of shadow, champion, retired; got {stage!r}"
        )
    if len(artefact_sha256) != 64:
        raise ValueError(f"`artefact_sha256` must be 64 hex characters, got {artefact_sha256!r}")
    check_version_text(
        dataset_version=dataset_version,
        study=study,
        hyperparameters=hyperparameters,
        details=details,
    )
    locked = _lock_model(conn, model)
    if once_per_study and study is not None:
        registered = conn.execute(
            select(model_versions.c.version).where(
                model_versions.c.model == model, model_versions.c.study == study
            )
        ).scalar()
        if registered is not None:
            raise ConflictError(
                f"study {study!r} already registered version {registered} of {model!r}",
                code="study_registered",
            )
    if refuse_live_duplicate and stage != "retired":
        # a version registered retired (a bundle's its source retired) is no challenger;
        # after the study's check: a job's workers sharing its study each finish with the
        # same winner, and the second must read `study_registered` (registered elsewhere)
        _refuse_live_duplicate(
            conn,
            model,
            artefact_sha256=artefact_sha256,
            hyperparameters=hyperparameters,
            dataset_version=dataset_version,
            parent_version=parent_version,
            study=study,
            reference_sha256=(details or {}).get("reference_sha256"),
        )
    version = conn.execute(
        select(func.coalesce(func.max(model_versions.c.version), 0) + 1).where(
            model_versions.c.model == model
        )
    ).scalar_one()
    if parent_version is not None:
        _check_parent(conn, model, parent_version, version)
    params = json_roundtrip(dict(hyperparameters))
    hp_id = hyperparameter_set_id(params)
    now = utcnow()
    conn.execute(
        dialect_insert(conn, hyperparameter_sets)
        .values(id=hp_id, params=json_roundtrip(set_identity(params)), created_at=now)
        .on_conflict_do_nothing(index_elements=[hyperparameter_sets.c.id])
    )
    if stage == "champion":
        current = _champion(conn, model)
        if current is not None:
            raise ConflictError(
                f"model {model!r} already has a champion (version {current}); register the "
                "new version as a shadow and promote it, so that approvals and safe ranges "
                "apply",
                code="champion_exists",
            )
        # read under the lock: a caller's earlier check may be stale, and a daemon may
        # have stored the model's regulation since it was added
        if locked.regulated or _stored_regulated(locked):
            raise ConflictError(
                f"model {model!r} is regulated: a version cannot be registered as its "
                "champion, because its promotion would wait for an approver; register it as "
                "a shadow and promote it",
                code="approval_required",
            )
    conn.execute(
        model_versions.insert().values(
            model=model,
            version=version,
            artefact_sha256=artefact_sha256,
            hyperparameter_set_id=hp_id,
            hyperparameters=params,  # the version's own record; its set's, the pipeline's
            dataset_version=dataset_version,
            parent_version=parent_version,
            study=study,
            stage=stage,
            details=json_roundtrip(dict(details or {})),
            size_bytes=size_bytes,
            load_memory_bytes=load_memory_bytes,
            created_at=now,
            stage_changed_at=now,
        )
    )
    append_audit_in(
        conn,
        actor=actor,
        action="register_version",
        target=f"{model}/v{version}",
        details={
            "artefact_sha256": artefact_sha256,
            "hyperparameter_set_id": hp_id,
            "stage": stage,
        },
    )
    return get_version(conn, model, version)


def register_version(
    conn: Connection,
    *,
    model: str,
    task: str,
    feature_names: Sequence[str],
    regulated: bool,
    regulate_reason: str,
    check_model: Callable[[ModelRow], None] | None,
    artefact_sha256: str,
    hyperparameters: Mapping[str, Any],
    size_bytes: int,
    actor: str,
    dataset_version: str | None,
    parent_version: int | None,
    study: str | None,
    details: Mapping[str, Any] | None,
    load_memory_bytes: int | None,
    stage: str,
    once_per_study: bool = False,
    for_job: int | None = None,
    lease: HeldLease | None = None,
    refuse_live_duplicate: bool = True,
) -> VersionRow:
    """A registration's writes, all in the caller's transaction: the model added unless
    it exists (:func:`ensure_model`), ``check_model`` called with it as stored, read under
    its lock (its error
    refuses the registration), the model marked regulated when ``regulated`` and it is
    not, a new one too (:func:`regulate_model`, audited, by ``actor`` for
    ``regulate_reason``; for :data:`STORED_REASON` where only a daemon's stored config
    regulates it), and the version added (:func:`add_version`), unless the model holds it
    live already (``version_exists``, :func:`_refuse_live_duplicate`: a retry; not with
    ``refuse_live_duplicate=False``, a bundle import's, which knows its own). Refused
    anywhere (the parent, the champion rule, the study, the check, a live duplicate), the
    transaction rolls back: no model, no regulation, no audit entry and no version are
    stored.

    With ``for_job``, the re-tuning job whose study chose the version: its row is locked
    first, and a cancelled job refuses the registration (``ConflictError``
    ``job_cancelled``, :func:`._job_cancel.lock_for_registration`).

    With ``lease``, the lease the registering process holds (an import's on the model):
    it is extended first, or the registration refused (``ConflictError``
    ``lease_lapsed``) when the process no longer holds it: another holder may have
    registered the version meanwhile (:func:`._evaluations.check_lease`)."""
    if lease is not None:
        check_lease(conn, lease)
    if for_job is not None:  # first: a cancellation locks the job's row, then the audit's
        lock_for_registration(conn, for_job)
    # added unregulated and regulated at once, in this transaction, so that the audit
    # says when, why and by whom it became regulated (the registration's entry does not)
    ensure_model(conn, name=model, task=task, feature_names=feature_names, regulated=False)
    # read again under the model's lock, held to the end: a flag another transaction is
    # changing is read once it ends (on PostgreSQL a plain read saw it before, and a
    # `regulated: false` registration passed a model regulated meanwhile)
    found = _lock_model(conn, model)
    if check_model is not None:
        check_model(found)
    if not found.regulated:
        if regulated:
            regulate_model(conn, model, actor=actor, reason=regulate_reason)
        elif _stored_regulated(found):
            # a config that does not list the model (the CLI's with only the store, a
            # replica's) cannot register it unregulated: one entry, as the daemon's would be
            regulate_model(conn, model, actor=actor, reason=STORED_REASON)
    return add_version(
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
        refuse_live_duplicate=refuse_live_duplicate,
    )


#: What a version is, for :func:`_refuse_live_duplicate`, as a message names it.
IDENTITY = "artefact, hyperparameters, dataset_version, parent_version, study and reference"


def _refuse_live_duplicate(
    conn: Connection,
    model: str,
    *,
    artefact_sha256: str,
    hyperparameters: Mapping[str, Any],
    dataset_version: str | None,
    parent_version: int | None,
    study: str | None,
    reference_sha256: Any,
) -> None:
    """Refuse (``ConflictError`` ``version_exists``) a registration of a version the
    model holds live already, in shadow or champion: the same artefact, hyperparameters
    record (as stored: key order aside, ``C: 1`` is not ``C: 1.0`` nor ``true``), dataset
    version, parent, study and reference snapshot (its ``reference_sha256``, or none).
    A registration runs a sandboxed check of its candidate, slow enough for a CI
    pipeline to time out on and send it again: each retry added one more identical
    challenger, scored on every request and one more test in the Holm correction. Read
    under the model's lock, so that registrations sent at once add one version. Other
    ``details`` (a CI run's id) do not make another version; a retired or rolled-back
    version does not block (its artefact may be registered again, to serve again)."""
    rows = conn.execute(
        _version_select()
        .where(
            model_versions.c.model == model,
            model_versions.c.artefact_sha256 == artefact_sha256,
            model_versions.c.stage.in_(("shadow", "champion")),
        )
        .order_by(model_versions.c.version)
    ).all()
    record = canonical_json(json_roundtrip(dict(hyperparameters)))
    for row in rows:
        live = _version(row)
        if (
            live.dataset_version == dataset_version
            and live.parent_version == parent_version
            and live.study == study
            and live.details.get("reference_sha256") == reference_sha256
            and canonical_json(live.hyperparameters) == record
        ):
            out = (
                "retire it first"
                if live.stage == "shadow"
                else "promote another version and retire it first"
            )
            raise ConflictError(
                f"model {model!r} version {live.version} ({live.stage}) is this version "
                f"already: the same {IDENTITY} (sha256 {artefact_sha256[:12]}, "
                f"dataset_version {dataset_version!r}); a retried registration adds no second "
                f"challenger. To register it again, {out}, or change what differs",
                code="version_exists",
            )


def _check_parent(conn: Connection, model: str, parent: int, version: int) -> None:
    """Refuse (``InvalidValueError``) a ``parent`` of the new ``version`` that is not an
    earlier version of ``model``: a version it does not have, a later one or the new one
    itself, which lineage would show as a false parent or read in a loop. Read under the
    model's lock, as the new version's number is."""
    found = conn.execute(
        select(model_versions.c.version).where(
            model_versions.c.model == model, model_versions.c.version == parent
        )
    ).scalar()
    if found is None or parent >= version:
        known = f"1 to {version - 1}" if version > 1 else "it has none yet"
        raise InvalidValueError(
            f"`parent_version` must be an earlier version of model {model!r} ({known}), "
            f"got {parent}"
        )
