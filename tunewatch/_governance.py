"""Promotion, approval and rollback: the stage changes that put a version in service.

A promotion waits for an approver who is not the requester when one of the rules in
:mod:`tunewatch._approval_rules` says so (a regulated model, hyperparameters outside their
safe ranges, a search space that cannot be read); everything else is promoted at once. Both
paths are atomic in the store (stage, audit entry and event in one transaction). The store
reads the regulated flag again when it promotes: a model regulated after the rules were read
gets an approval request, not a champion.

Whoever decides, a promoted version serves the champion's clients:
:func:`~tunewatch._promotion_signature.check_promotion_signature` refuses a version that
would read their requests otherwise, when it is promoted, before an approval is requested,
and when an approval is decided. Rollback is not checked: it restores a champion that
served. A champion whose artefact cannot be read or loaded here is logged and not checked
against: it must not block its own replacement.

Every stage change that puts a version in service — a promotion, an approval, a rollback
(:func:`rollback`) — first reads the version's artefact back (its hash verified) and loads
it, and is refused before anything commits (``ConflictError``, ``artefact_unavailable``)
when that fails: committed, it named a champion no process could serve (the daemon kept
serving the one the store had replaced, and served nothing after a restart). The session
made for the check is dropped: one kept for the load that follows stayed open, a whole
model's memory, when the change was then refused (an approval, ``same_person``).

A person's refused attempt is audited though nothing was done
(:mod:`tunewatch._governance_refusals`).

Each stage change logs one INFO line once it committed, whoever asked for it (the API, the
CLI, the comparison loop, the rollback watch), naming what it changed greppably:
``model=credit version=2 promoted (previous=1 retired) by 'alice': 'reason'``,
``approval=3 model=loans version=2 requested by 'alice' (rules: …)``, ``… approved by
'bob' and promoted …``, ``… rejected by 'bob'``, ``model=credit version=1 restored by
rollback of version=2 by 'alice'``; names and reasons, a person's text, quoted (``%r``).
A retried promotion that changes nothing logs nothing. A refusal's line
(:func:`audit_denied`) is INFO for a 409 (a conflict is an answer, not an incident) and a
WARNING for a 403 (a caller trying what their role may not do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from monitor.objectives import ObjectiveError, make_objective
from shadow import Signature
from tunewatch._approval_rules import promotion_rules
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._governance_refusals import GovernedAction as GovernedAction
from tunewatch._governance_refusals import approval_target as approval_target
from tunewatch._governance_refusals import audit_denied as audit_denied
from tunewatch._governance_refusals import refusal_audited
from tunewatch._promotion_signature import check_promotion_signature, check_servable
from tunewatch.comparison._config import comparison_of
from tunewatch.store import MAX_ID, NO_CHAMPION, ApprovalRow, ModelRow, Stage, Store, VersionRow
from tunewatch.store._governance import deadline_of, replaced_champion

logger = logging.getLogger(__name__)


def _replaced(previous: VersionRow | None) -> str:
    """``previous=1 retired`` (or ``kept in shadow``), ``previous=none``: a promotion's
    replaced champion, for its log line."""
    if previous is None:
        return "previous=none"
    kept = "kept in shadow" if previous.stage == "shadow" else previous.stage
    return f"previous={previous.version} {kept}"


@dataclass(frozen=True, slots=True)
class PromotionOutcome:
    """``promoted`` (``champion`` serves, ``previous`` retired) or ``pending_approval``.
    ``unchanged``: the version already was the champion (a retried promotion), and
    nothing was written: no audit entry, no event, ``previous`` is ``None``."""

    status: Literal["promoted", "pending_approval"]
    champion: VersionRow | None = None
    previous: VersionRow | None = None
    approval: ApprovalRow | None = None
    unchanged: bool = False


def _checked_champion(
    store: Store,
    artefacts: ArtefactStore,
    target: VersionRow,
    expected: int | None,
    candidate: Signature | None = None,
) -> int | None:
    """Check ``target`` (whose signature is ``candidate``, when known) against the
    champion and return that champion's version, which the promotion then expects
    (``expected`` itself when another champion serves: the store refuses it,
    ``champion_changed``), or ``NO_CHAMPION`` when there is none: a first champion
    registered meanwhile is refused too, and checked against."""
    champion = store.champion(target.model)
    found = NO_CHAMPION if champion is None else champion.version
    if expected is not None and found != expected:
        return expected
    if found != target.version:  # else the store answers it is champion already
        check_promotion_signature(artefacts, target, champion, candidate=candidate)
    return found


def watch_keeps_previous(config: Config, row: ModelRow) -> bool:
    """Whether a paired rollback watch follows a promotion of ``row``'s model (the
    comparison and its watch enabled, paired, the objective with a per-request loss): the
    promotion then keeps the champion it replaces in shadow, in its own transaction, so
    that it scores the new champion's requests from the first one (the watch starts at the
    comparison loop's next run, and counts them all). Otherwise it is retired as ever."""
    settings = comparison_of(config.model(row.name))
    if not (settings.enabled and settings.rollback.enabled and settings.rollback.paired):
        return False
    objective = config.model_or_default(row.name, row.task).objective
    try:
        made = make_objective(objective.name, task=row.task, **objective.params)
    except ObjectiveError:  # the comparison loop cannot watch it either
        return False
    return made.has_per_request_loss


def _keeps_previous(config: Config, row: ModelRow, store: Store, artefacts: ArtefactStore) -> bool:
    """:func:`watch_keeps_previous`, for a champion whose artefact reads back and loads: one
    that cannot serve is retired as ever (kept in shadow, it would answer nothing for the
    watch to compare, and a rollback to it is refused anyway)."""
    if not watch_keeps_previous(config, row):
        return False
    champion = store.champion(row.name)
    if champion is None:
        return False
    try:
        check_servable(artefacts, champion)
    except ConflictError:
        return False
    return True


def _in_service(target: VersionRow) -> bool:
    """Whether the store promotes ``target`` nothing whatever its artefact: the champion
    already (``already_champion``), or rolled back (final, ``not_promotable``). Its
    artefact is then not read."""
    return target.stage in ("champion", "rolled_back")


def promote(
    store: Store,
    config: Config,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
    expected_stage: Stage | None = None,
    artefacts: ArtefactStore | None = None,
    audit_refusal: bool = False,
) -> PromotionOutcome:
    """Promote now, or open an approval request when a rule says a second person must.
    With ``expected_champion`` (the champion the evidence was about, or the caller saw
    serve; :data:`NO_CHAMPION` when it saw none), neither happens if another champion
    arrived meanwhile (``ConflictError``, ``champion_changed``): of two promotions naming
    the same champion, one promotes and the other changes nothing; with
    ``expected_stage`` (the stage the caller found the version in), neither happens if
    the version was moved meanwhile (``ConflictError``, ``stage_changed``: an operator
    retired it), the store checking both under the model's lock. Neither
    happens either for a version whose artefact cannot be read back intact or loaded
    (``ConflictError``, ``artefact_unavailable``: :func:`check_servable`), nor for one
    whose signature does not serve the champion's clients (``ConflictError``,
    ``signature_mismatch``: :func:`check_promotion_signature`, with ``artefacts`` those
    under the config's ``data_dir`` unless given); it is checked against the champion the
    store replaces, again if another arrived meanwhile.

    A version that already is the champion, when no ``expected_stage`` is given, is
    answered ``promoted`` and ``unchanged`` (whatever ``expected_champion`` says, and
    whatever rule would have made its promotion wait), nothing written: the retry of a
    promotion whose answer was lost finds its work done. A rolled-back version is refused
    (``ConflictError``, ``not_promotable``).

    With ``audit_refusal`` (a person's promotion: the CLI's, the API's), a refusal is
    audited as ``denied_promote`` (:func:`audit_denied`) and raised."""
    with refusal_audited(
        store,
        "promote",
        actor=actor,
        target=lambda: f"{model}/v{version}",
        details={"reason": reason},
        audited=audit_refusal,
    ):
        return _promote(
            store,
            config,
            model,
            version,
            actor=actor,
            reason=reason,
            expected_champion=expected_champion,
            expected_stage=expected_stage,
            artefacts=artefacts,
        )


def _promote(
    store: Store,
    config: Config,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None,
    expected_stage: Stage | None,
    artefacts: ArtefactStore | None,
) -> PromotionOutcome:
    artefacts = ArtefactStore(config.artefact_dir, store=store) if artefacts is None else artefacts
    row = store.get_model(model)
    target = store.get_version(model, version)
    rules = promotion_rules(row, target, config)
    candidate = None
    if not _in_service(target):  # else the store refuses it
        # an approval request loads nothing in the serving process: the approval does
        candidate = check_servable(artefacts, target)
    while True:
        checked = _checked_champion(store, artefacts, target, expected_champion, candidate)
        try:
            return _promote_checked(
                store,
                config,
                row,
                target,
                rules,
                artefacts=artefacts,
                actor=actor,
                reason=reason,
                expected_champion=checked,
                expected_stage=expected_stage,
            )
        except ConflictError as exc:
            if exc.code == "already_champion":  # the store read it under the model's lock
                return PromotionOutcome(
                    status="promoted", champion=store.get_version(model, version), unchanged=True
                )
            if exc.code != "champion_changed":
                raise
            if expected_champion is not None:
                raise ConflictError(
                    f"{exc.message}; nothing changed (a promotion naming a champion replaces "
                    "only that one: name the current one to replace it)",
                    code="champion_changed",
                ) from exc
            # a champion the check did not read arrived: check the version against it


def _promote_checked(
    store: Store,
    config: Config,
    row: ModelRow,
    target: VersionRow,
    rules: list[str],
    *,
    artefacts: ArtefactStore,
    actor: str,
    reason: str,
    expected_champion: int | None,
    expected_stage: Stage | None,
) -> PromotionOutcome:
    model, version = row.name, target.version
    if not rules:
        try:
            new, previous = store.promote(
                model,
                version,
                actor=actor,
                reason=reason,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
                keep_previous=_keeps_previous(config, row, store, artefacts),
            )
        except ConflictError as exc:
            if exc.code != "approval_required":
                raise
            # regulated since it was read: the store reads the flag again under its lock
            rules = promotion_rules(replace(row, regulated=True), target, config)
        else:
            logger.info(
                "model=%s version=%d promoted (%s) by %r: %r",
                model,
                version,
                _replaced(previous),
                actor,
                reason,
            )
            return PromotionOutcome(status="promoted", champion=new, previous=previous)
    approval = store.request_approval(
        model,
        version,
        requested_by=actor,
        reason=reason,
        rules=rules,
        expected_champion=expected_champion,
        expected_stage=expected_stage,
        expire_after_days=config.approvals.expire_after_days,
    )
    logger.info(
        "approval=%d model=%s version=%d %s by %r (rules: %s): %r",
        approval.id,
        model,
        version,
        "also requested" if actor in approval.co_requesters else "requested",
        actor,
        "; ".join(approval.rules),
        reason,
    )
    return PromotionOutcome(status="pending_approval", approval=approval)


def decide_approval(
    store: Store,
    config: Config,
    approval_id: int,
    *,
    approver: str,
    approve: bool,
    reason: str,
    artefacts: ArtefactStore | None = None,
    audit_refusal: bool = False,
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    """Approve (the store promotes in the same transaction) or reject an approval
    request. An approval that promotes — its request's champion (or none) still serves:
    approved after another arrived, the store closes it unpromoted — first reads and loads
    its version (:func:`check_servable`) and checks it
    (:func:`check_promotion_signature`) against that champion. A request for a version
    whose artefact is unavailable (``artefact_unavailable``), or opened before promotions
    checked signatures (``signature_mismatch``), is so refused and stays pending, to be
    rejected or approved once its artefact is restored.

    With ``audit_refusal`` (a person's decision: the CLI's, the API's), a refusal
    (``same_person``, ``already_decided`` …) is audited as ``denied_approve`` or
    ``denied_reject`` (:func:`audit_denied`) against the approval's version, and raised;
    so is an approval the store closed unpromoted (:func:`closed_code`: expired,
    ``approval_expired``, or ``champion_changed``), returned (the closure is committed, and
    its own entry says why), which the API answers 409. An expired request is closed
    without reading its version's artefact: it is not promoted whatever that holds."""
    action: GovernedAction = "approve" if approve else "reject"
    details = {"approval": approval_id, "reason": reason}
    with refusal_audited(
        store,
        action,
        actor=approver,
        target=lambda: approval_target(store, approval_id),
        details=details,
        audited=audit_refusal,
    ):
        decided, promoted = _decide_approval(
            store,
            config,
            approval_id,
            approver=approver,
            approve=approve,
            reason=reason,
            artefacts=artefacts,
        )
    if approve and promoted is None and audit_refusal:
        # The approver's approval was refused as much as a 409 that changed nothing: its
        # `approval_rejected` entry alone read as their rejection of the request.
        audit_denied(
            store,
            action,
            actor=approver,
            target=f"{decided.model}/v{decided.version}",
            status=409,
            code=closed_code(decided, config),
            message=closed_unpromoted(decided),
            details=details,
        )
    return decided, promoted


def closed_unpromoted(decided: ApprovalRow) -> str:
    """Why approving ``decided`` closed it unpromoted: its decision reason (it expired, or
    the champion changed since the request), the message of the API's 409."""
    return decided.decision_reason or "the champion changed since the request"


def closed_code(decided: ApprovalRow, config: Config) -> str:
    """The code of an approval closed unpromoted: ``approval_expired`` when it was decided
    at or after its deadline (``deadline_of``: stamped on it, or
    ``approvals.expire_after_days`` after it was made; the store checks expiry first and
    stamps the decision with the time it checked), else ``champion_changed``."""
    deadline = deadline_of(decided, config.approvals.expire_after_days)
    at = decided.decided_at
    return "approval_expired" if deadline and at and at >= deadline else "champion_changed"


def _decide_approval(
    store: Store,
    config: Config,
    approval_id: int,
    *,
    approver: str,
    approve: bool,
    reason: str,
    artefacts: ArtefactStore | None,
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    now = datetime.now(UTC)  # the store's expiry check's, and the decision's, time
    limit = config.approvals.expire_after_days
    if approve:
        artefacts = (
            ArtefactStore(config.artefact_dir, store=store) if artefacts is None else artefacts
        )
        approval = store.get_approval(approval_id)
        champion = store.champion(approval.model)
        found = None if champion is None else champion.version
        target = store.get_version(approval.model, approval.version)
        deadline = deadline_of(approval, limit)
        if (
            approval.status == "pending"
            and (deadline is None or now < deadline)  # an expired one is closed unread
            and found == approval.champion_version
            and not _in_service(target)
        ):
            candidate = check_servable(artefacts, target)
            check_promotion_signature(artefacts, target, champion, candidate=candidate)
        keep = _keeps_previous(config, store.get_model(approval.model), store, artefacts)
    else:
        keep = False
    decided, promoted = store.decide_approval(
        approval_id,
        approver=approver,
        approve=approve,
        reason=reason,
        keep_previous=keep,
        expire_after_days=limit,
        now=now,
    )
    ids = (decided.id, decided.model, decided.version)
    if promoted is not None:
        how = f"approved by {approver!r} and promoted ({_replaced(promoted[1])})"
    elif approve:  # expired, or the champion changed since: closed, stored as rejected
        how, reason = f"closed unpromoted by {approver!r}", decided.decision_reason or reason
    else:
        how = f"rejected by {approver!r}"
    logger.info("approval=%d model=%s version=%d %s: %r", *ids, how, reason)
    return decided, promoted


def rollback(
    store: Store,
    artefacts: ArtefactStore,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
    audit_refusal: bool = False,
) -> tuple[VersionRow, VersionRow]:
    """:meth:`Store.rollback <tunewatch.store.Store.rollback>` (``(restored,
    rolled_back)``), once the version it restores reads back intact and loads
    (:func:`check_servable`; ``ConflictError``,
    ``artefact_unavailable``, and nothing changed, otherwise): committed, the rollback made
    a champion no process could serve, and the version it replaced is rolled back for good.

    It rolls back ``expected_champion`` (the champion the caller saw misbehave) or, without
    it, the champion read here, and no other: a champion that serves instead when the store
    writes — another rollback (the rollback watch's, a retry) restored it meanwhile — is
    refused (``ConflictError``, ``champion_changed``, naming it) and nothing changes.
    Rolling back the newcomer instead made a good version ``rolled_back``, which is final.
    Without ``expected_champion``, a champion a rollback restored is refused so too
    (:func:`_refuse_restored`), when there is a version to restore (else the store's
    ``no_previous_champion``): a rollback sent again after its answer was lost, or late
    after the watch's, reads it whenever it arrives. Naming it rolls it back.

    With ``audit_refusal`` (a person's rollback: the CLI's, the API's; not the rollback
    watch's), a refusal is audited as ``denied_rollback`` (:func:`audit_denied`) against
    the model, and raised."""
    with refusal_audited(
        store,
        "rollback",
        actor=actor,
        target=lambda: model,
        details={"reason": reason},
        audited=audit_refusal,
    ):
        return _rollback(
            store,
            artefacts,
            model,
            actor=actor,
            reason=reason,
            expected_champion=expected_champion,
        )


def _rollback(
    store: Store,
    artefacts: ArtefactStore,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None,
) -> tuple[VersionRow, VersionRow]:
    store.get_model(model)  # an unknown model (a name no model can have): 404
    current = store.champion(model)
    found = None if current is None else current.version
    if found is not None and expected_champion in (None, found):  # else refused
        restored = _rollback_target(store, model, found)
        if restored is not None and restored.stage != "rolled_back":  # else refused
            if expected_champion is None:  # one with nothing to restore is refused as ever
                _refuse_restored(store, model, found)
            check_servable(artefacts, restored)
    if expected_champion is not None:
        expected = expected_champion
    else:  # what was read: no champion is "none", which a first champion arriving changes
        expected = NO_CHAMPION if found is None else found
    try:
        restored, rolled = store.rollback(
            model, actor=actor, reason=reason, expected_champion=expected
        )
    except ConflictError as exc:
        if exc.code != "champion_changed":
            raise
        raise ConflictError(
            f"{exc.message}; nothing was rolled back (a rollback rolls back only the "
            "champion it names, or that it read: name the current one to roll it back)",
            code="champion_changed",
        ) from exc
    logger.info(
        "model=%s version=%d restored by rollback of version=%d by %r: %r",
        model,
        restored.version,
        rolled.version,
        actor,
        reason,
    )
    return restored, rolled


#: The events of a change of champion: a promotion's, a rollback's.
_CHAMPION_CHANGES = ("promoted", "rolled_back")


def _refuse_restored(store: Store, model: str, champion: int) -> None:
    """Refuse (``ConflictError``, ``champion_changed``) to roll back ``champion``, read by
    a rollback naming none, when a rollback restored it (the model's latest change of
    champion is the ``rolled_back`` event that restored it), naming who, when and why:
    that rollback may be this one's own first attempt, its answer lost, or the rollback
    watch's, done before this one arrived. Rolled back again, the good version was lost
    for good (``rolled_back`` is final) and the one before it served. A champion changed
    after this read is refused by the store (the expected champion is the one read)."""
    latest = store.list_events(model=model, types=_CHAMPION_CHANGES, limit=1)
    if not latest or latest[0].type != "rolled_back":
        return
    restoring = latest[0].payload
    if restoring.get("version") != champion:
        return
    entries = store.audit_log(1, target=f"{model}/v{champion}", action="rollback")
    by = repr(entries[0].actor) if entries else "an actor the audit log does not name"
    raise ConflictError(
        f"model {model!r} version {champion} is champion because a rollback restored it: "
        f"v{restoring.get('rolled_back')} rolled back by {by} at "
        f"{latest[0].created_at.isoformat()} ({restoring.get('reason')!r}); nothing was "
        "rolled back (a rollback naming no champion does not roll back one a rollback "
        f"restored: name it to roll it back too, `champion: {champion}`, or the CLI's "
        f"--champion {champion})",
        code="champion_changed",
    )


def _rollback_target(store: Store, model: str, champion: int) -> VersionRow | None:
    """The version a rollback of ``champion`` restores, read as the store reads it
    (:func:`~tunewatch.store._governance.replaced_champion`); ``None`` when there is none
    (the store refuses the rollback, ``no_previous_champion``)."""
    promotions = store.list_events(model=model, type="promoted", limit=MAX_ID)
    previous = replaced_champion((e.payload for e in promotions), champion)
    if previous is None:
        return None
    try:
        return store.get_version(model, previous)
    except NotFoundError:
        return None  # the store refuses it
