"""Models and model versions: registration, stage changes and the champion rule.

Every function runs inside the caller's transaction. Version numbers are assigned
under a lock on the model's row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), and the partial unique index on
``model_versions(model) WHERE stage = 'champion'`` backs the one-champion rule. A version
is registered as the champion only when the model has none and, read under that lock, is
not regulated (its promotion would wait for an approver); for the same reason a regulated
model's version is promoted only by deciding its approval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Column, Connection, Row, Select, String, func, select, update

from .._errors import ConflictError, InvalidValueError, NotFoundError
from ._audit import append_audit_in
from ._canonical import hyperparameter_set_id, json_roundtrip
from ._engine import dialect_insert
from ._events import add_event_in, storable_json
from ._schema import hyperparameter_sets, model_versions, models
from ._types import STAGES, TASKS, ModelRow, Stage, Task, VersionRow, check_choice, utcnow

#: Model names are ``VARCHAR(200)`` (PostgreSQL enforces it; SQLite would not).
MAX_NAME = 200


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


def valid_model_name(name: str) -> bool:
    """Reports and files are named after models: a name must not be a path, nor start or
    end with a space (``"fraud "`` beside ``"fraud"``, or a name of spaces only)."""
    return (
        1 <= len(name) <= MAX_NAME
        and name.isprintable()
        and name.strip() == name
        and not ({"/", "\\"} & set(name))
        and name not in (".", "..")
    )


def check_version_text(
    *,
    dataset_version: str | None,
    study: str | None,
    hyperparameters: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    feature_names: Sequence[str] = (),
) -> None:
    """Refuse (``InvalidValueError``) a ``dataset_version`` or ``study`` that a version row
    cannot hold on both backends: longer than its column (PostgreSQL enforces the
    ``VARCHAR`` length, SQLite would not), holding a NUL (PostgreSQL refuses one), or
    holding an unpaired surrogate (neither driver encodes one as UTF-8); and an unpaired
    surrogate or a NUL anywhere in ``hyperparameters``, ``details`` (keys and values, at
    any depth) or ``feature_names``: their JSON columns store one escaped, and no reader
    of the model (the API's serialiser, a bundle, a report; PostgreSQL's ``->>`` for a
    NUL) can write it out again. The registry
    checks with it before it stores anything."""
    for column, value in (
        (model_versions.c.dataset_version, dataset_version),
        (model_versions.c.study, study),
    ):
        limit = _length(column)
        if value is not None and (len(value) > limit or "\x00" in value or not _utf8(value)):
            raise InvalidValueError(
                f"`{column.name}` must be at most {limit} characters, without NUL or unpaired "
                f"surrogates, got {len(value)} characters: {value[:80]!r}"
            )
    for name, tree in (
        ("feature_names", list(feature_names)),
        ("hyperparameters", hyperparameters),
        ("details", details),
    ):
        found = _unencodable(name, tree)
        if found is not None:
            where, text = found
            raise InvalidValueError(
                f"{where} must be text UTF-8 can encode, got {text[:80]!r}: an unpaired "
                "surrogate (a byte the locale could not decode reaches Python as one)"
            )
        if tree is not None:
            storable_json(tree, field=name)  # no NUL: as events' and alerts' JSON


def _unencodable(name: str, tree: Any) -> tuple[str, str] | None:
    """The first string in ``tree`` (a JSON value; keys too, at any depth) that UTF-8
    cannot encode, with where it is as a message names it (a path such as
    ``hyperparameters.grid[1]`` in backquotes, or a key of one); ``None`` when there is
    none. Iterative: any depth is walked."""
    stack: list[tuple[str, Any]] = [(name, tree)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _utf8(item):
                return f"`{path}`", item
        elif isinstance(item, Mapping):
            for key in item:
                if isinstance(key, str) and not _utf8(key):
                    return f"a key of `{path}`", key
            stack.extend((f"{path}.{key}", child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _length(column: Column[Any]) -> int:
    assert isinstance(column.type, String) and column.type.length is not None
    return column.type.length


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _possible_name(name: str) -> bool:
    """Whether a model may be named ``name``: no model is named otherwise, and PostgreSQL
    would refuse a NUL in the query itself (a 400 where SQLite found nothing). Names that
    are paths are refused for new models only: older ones are still found."""
    return 1 <= len(name) <= MAX_NAME and name.isprintable()


def get_model(conn: Connection, name: str) -> ModelRow:
    row = (
        conn.execute(select(models).where(models.c.name == name)).one_or_none()
        if _possible_name(name)
        else None
    )
    if row is None:
        raise NotFoundError(f"model {name!r} is not registered", code="model_not_found")
    return _model(row)


def list_models(conn: Connection) -> list[ModelRow]:
    return [_model(r) for r in conn.execute(select(models).order_by(models.c.name))]


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
) -> VersionRow:
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
        .values(id=hp_id, params=params, created_at=now)
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
        if locked.regulated:  # read under the lock: a caller's earlier check may be stale
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
) -> VersionRow:
    """A registration's writes, all in the caller's transaction: the model added unless
    it exists (:func:`ensure_model`), ``check_model`` called with it as stored (its error
    refuses the registration), the model marked regulated when ``regulated`` and it is
    not, a new one too (:func:`regulate_model`, audited, by ``actor`` for
    ``regulate_reason``), and the version added (:func:`add_version`). Refused anywhere
    (the parent, the champion rule, the study, the check), the transaction rolls back: no
    model, no regulation, no audit entry and no version are stored."""
    # added unregulated and regulated at once, in this transaction, so that the audit
    # says when, why and by whom it became regulated (the registration's entry does not)
    found = ensure_model(conn, name=model, task=task, feature_names=feature_names, regulated=False)
    if check_model is not None:
        check_model(found)
    if regulated and not found.regulated:
        regulate_model(conn, model, actor=actor, reason=regulate_reason)
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


def get_version(conn: Connection, model: str, version: int) -> VersionRow:
    row = (
        conn.execute(
            _version_select().where(
                model_versions.c.model == model, model_versions.c.version == version
            )
        ).one_or_none()
        if _possible_name(model)
        else None
    )
    if row is None:
        raise NotFoundError(f"model {model!r} has no version {version}")
    return _version(row)


def get_versions(conn: Connection, model: str, versions: Sequence[int]) -> list[VersionRow]:
    """The versions ``versions`` of ``model`` in version order, read by one statement (so
    at one moment: a promotion is before or after all of them); refused if any is missing."""
    wanted = sorted(set(versions))
    rows = (
        conn.execute(
            _version_select()
            .where(model_versions.c.model == model, model_versions.c.version.in_(wanted))
            .order_by(model_versions.c.version)
        ).all()
        if wanted and _possible_name(model)
        else []
    )
    found = [_version(r) for r in rows]
    missing = sorted(set(wanted) - {v.version for v in found})
    if missing:
        named = ", ".join(map(str, missing))
        raise NotFoundError(f"model {model!r} has no version {named}")
    return found


def list_versions(conn: Connection, model: str, stage: str | None) -> list[VersionRow]:
    stmt = _version_select().where(model_versions.c.model == model)
    if stage is not None:
        check_choice("stage", stage, STAGES)
        stmt = stmt.where(model_versions.c.stage == stage)
    return [_version(r) for r in conn.execute(stmt.order_by(model_versions.c.version))]


def champion(conn: Connection, model: str) -> VersionRow | None:
    row = conn.execute(
        _version_select().where(
            model_versions.c.model == model, model_versions.c.stage == "champion"
        )
    ).one_or_none()
    return None if row is None else _version(row)


def promote(
    conn: Connection,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
    expected_stage: str | None = None,
    approved: bool = False,
) -> tuple[VersionRow, VersionRow | None]:
    """Make ``version`` the champion. A regulated model's only when ``approved`` (an
    approver decided its request), else ``ConflictError`` (``approval_required``): the
    flag is read under the lock, since a caller that found the model unregulated, and so
    asked no approver, may have read it before it was regulated. With
    ``expected_champion`` and ``expected_stage``, only if that version is still the
    champion (``champion_changed``) and ``version`` still in that stage
    (``stage_changed``): :func:`check_champion`, :func:`check_stage`."""
    locked = _lock_model(conn, model)
    if locked.regulated and not approved:
        raise ConflictError(
            f"model {model!r} is regulated: its promotion waits for an approver (request "
            "approval instead)",
            code="approval_required",
        )
    check_champion(conn, model, expected_champion)
    target = get_version(conn, model, version)
    check_stage(target, expected_stage)
    if target.stage == "champion":
        raise ConflictError(f"model {model!r} version {version} is already the champion")
    if target.stage == "rolled_back":
        raise ConflictError(
            f"model {model!r} version {version} was rolled back and cannot be promoted"
        )
    now = utcnow()
    previous = _demote_champion(conn, model, now)
    _set_stage_row(conn, model, version, "champion", now)
    append_audit_in(
        conn,
        actor=actor,
        action="promote",
        target=f"{model}/v{version}",
        details={"version": version, "previous": previous, "reason": reason},
    )
    add_event_in(
        conn,
        model=model,
        type="promoted",
        payload={"version": version, "previous": previous, "reason": reason},
    )
    old = None if previous is None else get_version(conn, model, previous)
    return get_version(conn, model, version), old


def set_stage(
    conn: Connection,
    model: str,
    version: int,
    stage: str,
    *,
    actor: str,
    reason: str,
    close_approvals: bool = True,
) -> VersionRow:
    """Move ``version`` to ``stage`` (not the champion's), audited (``set_stage``) with a
    ``stage_changed`` event. Retired or rolled back, its pending approvals are closed in
    the same transaction (rejected, by ``actor``, each audited as ``approval_rejected``),
    unless ``close_approvals`` is false: a version returned to the stage it had before it
    was lent to shadow (the rollback watch's end) was not pulled, and its requests stand.
    Such a move's audit entry and event say ``approvals_kept``, so that approving one of
    them later does not read it as a pull (``stage_changed``)."""
    if stage not in ("shadow", "retired", "rolled_back"):
        raise ValueError(
            f"`stage` must be one of shadow, retired, rolled_back (use promote() for "
            f"champion); got {stage!r}"
        )
    _lock_model(conn, model)
    current = get_version(conn, model, version)
    if current.stage == "champion":  # checked under the lock: a promotion may have won
        raise ConflictError(
            f"version {version} of model {model!r} is the champion; promote another version first",
            code="champion_cannot_retire",
        )
    if current.stage == "rolled_back":  # final: a retired version could be promoted again
        raise ConflictError(
            f"version {version} of model {model!r} was rolled back; that stage is final",
            code="rolled_back_is_final",
        )
    _set_stage_row(conn, model, version, stage, utcnow())
    details = {
        "version": version,
        "stage": stage,
        "previous_stage": current.stage,
        "reason": reason,
    }
    keeps = not close_approvals and stage != "shadow"
    if keeps:
        details["approvals_kept"] = True
    append_audit_in(
        conn, actor=actor, action="set_stage", target=f"{model}/v{version}", details=details
    )
    add_event_in(conn, model=model, type="stage_changed", payload=details)
    if stage != "shadow" and not keeps:
        # a retired or rolled-back version's pending approval would promote it when approved
        from ._governance import close_pending_approvals  # it imports this module

        close_pending_approvals(conn, model, version, stage=stage, actor=actor, reason=reason)
    return get_version(conn, model, version)


def _lock_model(conn: Connection, model: str) -> ModelRow:
    """Lock the model's row for the transaction and return it as it is now."""
    found = (
        conn.execute(select(models).where(models.c.name == model).with_for_update()).one_or_none()
        if _possible_name(model)
        else None
    )
    if found is None:
        raise NotFoundError(f"model {model!r} is not registered", code="model_not_found")
    return _model(found)


def _demote_champion(conn: Connection, model: str, now: Any) -> int | None:
    previous = _champion(conn, model)
    if previous is not None:
        _set_stage_row(conn, model, previous, "retired", now)
    return previous


#: ``expected_champion`` of a caller that found no champion (versions start at 1).
NO_CHAMPION = 0


def check_champion(conn: Connection, model: str, expected: int | None) -> None:
    """Under the model's lock: refuse (``champion_changed``) when ``expected`` is given and
    is not the champion any more: a decision taken on evidence about one champion must
    not act on another that arrived meanwhile. :data:`NO_CHAMPION` expects none: a first
    champion registered meanwhile was replaced by a version checked against nothing."""
    if expected is None:
        return
    current = _champion(conn, model)
    wanted = None if expected == NO_CHAMPION else expected
    if current != wanted:
        was = "no champion" if wanted is None else f"v{wanted}"
        now = "no champion" if current is None else f"v{current}"
        raise ConflictError(
            f"model {model!r}: the champion changed from {was} to {now} since the "
            "decision was taken",
            code="champion_changed",
        )


def check_stage(target: VersionRow, expected: str | None) -> None:
    """Under the model's lock, with ``target`` read under it: refuse (``stage_changed``)
    when ``expected`` is given and ``target`` is in another stage. A decision to promote
    a version seen in shadow must not promote it once an operator has retired it
    meanwhile ("never serve it"): nor open an approval request that would."""
    if expected is None or target.stage == expected:
        return
    raise ConflictError(
        f"model {target.model!r} version {target.version} is {target.stage}, not "
        f"{expected} as expected: its stage changed since the promotion was decided, "
        "and it was not promoted",
        code="stage_changed",
    )


def _champion(conn: Connection, model: str) -> int | None:
    return conn.execute(
        select(model_versions.c.version).where(
            model_versions.c.model == model, model_versions.c.stage == "champion"
        )
    ).scalar_one_or_none()


def _set_stage_row(conn: Connection, model: str, version: int, stage: str, now: Any) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.model == model, model_versions.c.version == version)
        .values(stage=stage, stage_changed_at=now)
    )


def _version_select() -> Select[Any]:
    return select(model_versions, hyperparameter_sets.c.params).join(
        hyperparameter_sets, hyperparameter_sets.c.id == model_versions.c.hyperparameter_set_id
    )


def _model(row: Row[Any]) -> ModelRow:
    return ModelRow(
        name=row.name,
        task=cast(Task, row.task),
        feature_names=tuple(row.feature_names),
        regulated=bool(row.regulated),
        created_at=row.created_at,
    )


def _version(row: Row[Any]) -> VersionRow:
    return VersionRow(
        id=row.id,
        model=row.model,
        version=row.version,
        artefact_sha256=row.artefact_sha256,
        hyperparameter_set_id=row.hyperparameter_set_id,
        hyperparameters=dict(row.params),
        dataset_version=row.dataset_version,
        parent_version=row.parent_version,
        study=row.study,
        stage=cast(Stage, row.stage),
        details=dict(row.details),
        size_bytes=row.size_bytes,
        load_memory_bytes=row.load_memory_bytes,
        created_at=row.created_at,
        stage_changed_at=row.stage_changed_at,
    )
