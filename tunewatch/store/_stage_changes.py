"""Stage changes: a version promoted to champion (the one it replaces retired) or moved
to shadow, retired or rolled back, each under the lock on the model's row, audited and
with an event; and the checks that a decision still holds under that lock (the champion
and the stage it was taken on, and that the version can be promoted at all). The partial
unique index on ``model_versions(model) WHERE stage = 'champion'`` backs the one-champion
rule; a regulated model's version is promoted only by deciding its approval. Every
function runs inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from .._errors import ConflictError
from ._approval_rows import close_pending_approvals, close_promoted_approvals
from ._audit import append_audit_in
from ._events import add_event_in
from ._registry_reads import _champion, _lock_model, get_version
from ._run_tallies import get_tally
from ._schema import audit_entries, model_versions
from ._types import VersionRow, utcnow


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
    keep_previous: bool = False,
) -> tuple[VersionRow, VersionRow | None]:
    """Make ``version`` the champion, closing its pending approval requests (superseded:
    :func:`~._approval_rows.close_promoted_approvals`). A regulated model's only when
    ``approved`` (an approver decided its request), else ``ConflictError``
    (``approval_required``): the flag is read under the lock, since a caller that found
    the model unregulated, and so asked no approver, may have read it before it was
    regulated. With ``expected_champion`` and ``expected_stage``, only if that version is
    still the champion (``champion_changed``) and ``version`` still in that stage
    (``stage_changed``): :func:`check_champion`, :func:`check_stage`. Refused too, nothing
    written, when ``version`` cannot be promoted (:func:`check_promotable`): when it is the
    champion already, whatever champion the caller expected, unless it named the stage it
    saw the version in (a retried promotion's is done; a decision about a shadow is not).

    With ``keep_previous`` (a paired rollback watch follows the promotion), the champion
    replaced goes to shadow instead of retired, in the same transaction, and the audit
    entry and event say ``kept_in_shadow``: it scores the new champion's requests from
    the first one, before any run of the watch."""
    locked = _lock_model(conn, model)
    target = get_version(conn, model, version)
    if expected_stage is None:
        check_promotable(target)
    if locked.regulated and not approved:
        raise ConflictError(
            f"model {model!r} is regulated: its promotion waits for an approver (request "
            "approval instead)",
            code="approval_required",
        )
    check_champion(conn, model, expected_champion)
    check_stage(target, expected_stage)
    check_promotable(target)
    now = utcnow()
    previous = _demote_champion(conn, model, now, "shadow" if keep_previous else "retired")
    kept = {"kept_in_shadow": True} if keep_previous and previous is not None else {}
    _set_stage_row(conn, model, version, "champion", now)
    append_audit_in(
        conn,
        actor=actor,
        action="promote",
        target=f"{model}/v{version}",
        details={"version": version, "previous": previous, "reason": reason, **kept},
    )
    # its runs as champion so far: the rollback watch counts its failed runs from here
    ran = get_tally(conn, model, version, "champion")
    add_event_in(
        conn,
        model=model,
        type="promoted",
        payload={
            "version": version,
            "previous": previous,
            "reason": reason,
            "champion_runs": {
                "runs": ran.runs if ran else 0,
                "failures": ran.failures if ran else 0,
            },
            **kept,
        },
    )
    # a request for it approved later would be refused (the champion it was asked
    # against changed) and stored as rejected then: close it with the reason now
    close_promoted_approvals(conn, model, version, actor=actor, reason=reason)
    old = None if previous is None else get_version(conn, model, previous)
    return get_version(conn, model, version), old


@dataclass(frozen=True, slots=True)
class StageMove:
    """What :func:`move_stage` did: ``row``, the version as it is now, and ``changed``,
    whether the move was written (a ``set_stage`` audit entry and a ``stage_changed``
    event), as decided on the stage read under the model's lock: of concurrent moves
    of a version to one stage, one is (a caller comparing the version's
    ``stage_changed_at`` with its own earlier read found every one changed)."""

    row: VersionRow
    changed: bool


def move_stage(
    conn: Connection,
    model: str,
    version: int,
    stage: str,
    *,
    actor: str,
    reason: str,
    close_approvals: bool = True,
) -> StageMove:
    """Move ``version`` to ``stage`` (not the champion's), audited (``set_stage``) with a
    ``stage_changed`` event (``changed``). One in ``stage`` already is returned as it is
    (not ``changed``), nothing written but the closing of its pending approvals below,
    unless an earlier ``set_stage`` did not put it there (:func:`_recorded_again`: an
    operator retiring a champion a promotion demoted to retired pulls it).
    Retired or rolled back, its pending approvals are closed in the same transaction
    (rejected, by ``actor``, each audited as ``approval_rejected``), unless
    ``close_approvals`` is false: a version returned to the stage it had before it was
    lent to shadow (the rollback watch's end) was not pulled, and its requests stand.
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
    if current.stage == stage and not _recorded_again(
        conn, current, close_approvals=close_approvals
    ):
        # nothing moves: no entry, no event, and its time stays when it got there (a
        # retried retire wrote a second `set_stage` retired -> retired, as a change). A
        # request opened while it was retired is still closed: retiring it again says
        # "never serve it", and approved later, the request would promote it.
        if stage != "shadow" and close_approvals:
            close_pending_approvals(conn, model, version, stage=stage, actor=actor, reason=reason)
        return StageMove(row=current, changed=False)
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
        close_pending_approvals(conn, model, version, stage=stage, actor=actor, reason=reason)
    return StageMove(row=get_version(conn, model, version), changed=True)


def _recorded_again(conn: Connection, target: VersionRow, *, close_approvals: bool) -> bool:
    """Whether a move of ``target`` to the stage it is in is recorded though the stage
    stays: when an earlier ``set_stage`` did not put it there (its newest audited move is
    not one to that stage, or one that kept its approvals). A champion a promotion
    demoted to retired (no ``set_stage``), or that the rollback watch returned there
    (``approvals_kept``), is pulled only by an operator's retire: the entry a rollback
    (:func:`~._champion_rollback.find_pull`) and an approval
    (:func:`~._governance._moved_since`) read as "never serve it"; one a promotion kept
    in shadow stays there after its rollback watch once an operator moved it there (the
    watch reads the ``stage_changed`` event). The watch's own return
    (``close_approvals`` false) records nothing again."""
    if not close_approvals:
        return False
    newest = conn.execute(
        select(audit_entries.c.action, audit_entries.c.details)
        .where(
            audit_entries.c.target == f"{target.model}/v{target.version}",  # indexed
            audit_entries.c.action.in_(("set_stage", "promote", "rollback")),
        )
        .order_by(audit_entries.c.id.desc())
        .limit(1)
    ).first()
    if newest is None or newest.action != "set_stage":
        return True
    details = newest.details if isinstance(newest.details, dict) else {}
    return details.get("stage") != target.stage or bool(details.get("approvals_kept"))


def _demote_champion(conn: Connection, model: str, now: Any, stage: str) -> int | None:
    previous = _champion(conn, model)
    if previous is not None:
        _set_stage_row(conn, model, previous, stage, now)
    return previous


#: ``expected_champion`` of a caller that found no champion (versions start at 1).
NO_CHAMPION = 0


def check_champion(conn: Connection, model: str, expected: int | None) -> None:
    """Under the model's lock: refuse (``champion_changed``) when ``expected`` is given and
    is not the champion any more: a decision taken on evidence about one champion must
    not act on another that arrived meanwhile. :data:`NO_CHAMPION` expects none: a first
    champion registered meanwhile was replaced by a version checked against nothing. A
    version the model does not have is ``version_not_found``: no champion changed (it was
    "changed from v99")."""
    if expected is None:
        return
    current = _champion(conn, model)
    wanted = None if expected == NO_CHAMPION else expected
    if current != wanted:
        if wanted is not None:
            get_version(conn, model, wanted)
        was = "no champion" if wanted is None else f"v{wanted}"
        now = "no champion" if current is None else f"v{current}"
        raise ConflictError(
            f"model {model!r}: the champion changed from {was} to {now} since the "
            "decision was taken",
            code="champion_changed",
        )


def check_promotable(target: VersionRow) -> None:
    """Under the model's lock, with ``target`` read under it: refuse to promote (or ask an
    approver to promote) the champion (``already_champion``: a retried promotion whose
    first answer was lost finds its work done) and a rolled-back version
    (``not_promotable``: rolled back is final). A retired version may be promoted again."""
    if target.stage == "champion":
        raise ConflictError(
            f"model {target.model!r} version {target.version} is already the champion",
            code="already_champion",
        )
    if target.stage == "rolled_back":
        raise ConflictError(
            f"model {target.model!r} version {target.version} was rolled back and cannot be "
            "promoted (rolled back is final)",
            code="not_promotable",
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


def _set_stage_row(conn: Connection, model: str, version: int, stage: str, now: Any) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.model == model, model_versions.c.version == version)
        .values(stage=stage, stage_changed_at=now)
    )
