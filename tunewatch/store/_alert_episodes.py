"""Alert episodes: one row per Alertmanager alert episode (``fingerprint`` + ``startsAt``),
claimed by one delivery at a time so that an episode is decided once (webhook dedupe)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from ._clock import db_now
from ._engine import dialect_insert
from ._events import storable_json
from ._schema import alert_episodes
from ._types import utcnow

# How long a delivery holds an alert episode it claimed. Deciding takes milliseconds; a
# claim this old belongs to a delivery that died (killed, or the store failed before it
# could release the claim) and is taken over. Deliveries meanwhile are answered 503 (see
# alert_episode_claimed), so Alertmanager retries until one takes it.
CLAIM_TIMEOUT = timedelta(minutes=1)
# A claim is stored in ``decision`` as this prefix, the claim time (the database's clock,
# ISO 8601 in UTC) and a random token, until the delivery writes the final decision (a
# dispatcher outcome, which starts with the action's name) or releases the episode (back
# to NULL).
_CLAIMED = "claimed at "
# How long after its resolve a firing delivery of an episode must have begun (by the
# database's clock) to be taken for the alert firing again rather than for a stale one;
# one that began before the resolve is stale however late it reaches the episode (a
# large group takes minutes to decide). Stale: Alertmanager's own retry of the firing
# notification comes before the resolve it sends next, but an HA peer sends its firing
# one up to peer_timeout (15 s by default) times its position later, a minute for the
# fifth peer of a cluster; and a claim left on the episode when it resolved is older than
# CLAIM_TIMEOUT (taken over) once it reopens. Firing again: Alertmanager resolves an alert
# whose sender stopped refreshing it past its endsAt (a Prometheus restart, an outage, a
# client pushing less often than resolve_timeout) and, when the sender is back with the
# same startsAt, fires it again with the same fingerprint: in the group's next
# notification, group_interval (5 min by default) or more after the resolve. One that
# comes sooner is stale here, and the alert's next delivery after it is acted on.
REFIRE_AFTER = timedelta(minutes=2)


#: What a firing delivery has to do with an episode (see :func:`alert_episode_state`).
EpisodeState = Literal["settled", "held", "open", "owed"]
#: What a resolve did (see :func:`resolve_alert_episode`).
ResolveOutcome = Literal["resolved", "already_resolved", "unseen"]


def _claimed_at(decision: str) -> datetime | None:
    if not decision.startswith(_CLAIMED):
        return None
    return datetime.fromisoformat(decision[len(_CLAIMED) :].split(" ", 1)[0])


def _replaced(claim: str) -> str | None:
    """The decision a claim replaced: the owed marker :func:`claim_owed_alert_episode` took
    over, None for a claim of an undecided episode."""
    parts = claim[len(_CLAIMED) :].split(" ", 2)
    return parts[2] if len(parts) == 3 else None


def _new_claim(now: datetime, replacing: str | None = None) -> str:
    claim = f"{_CLAIMED}{now.isoformat()} {secrets.token_hex(8)}"
    return claim if replacing is None else f"{claim} {replacing}"


def _episode(fingerprint: str, starts_at: str) -> Any:
    return (alert_episodes.c.fingerprint == fingerprint) & (alert_episodes.c.starts_at == starts_at)


def alert_episode_state(
    conn: Connection,
    *,
    fingerprint: str,
    starts_at: str,
    owed: str,
    started: datetime | None = None,
    stale_after: timedelta = CLAIM_TIMEOUT,
) -> EpisodeState:
    """What a firing delivery that ``started`` (the database's time as it began; without
    one, now) has to do with this episode, read without writing: ``settled`` when nothing
    (it is decided, or resolved and not ``REFIRE_AFTER`` before the delivery began),
    ``held`` while another delivery's claim is younger than ``stale_after`` (wait for it),
    ``owed`` when it fires owed the marker ``owed`` (its retune is tried again:
    :func:`claim_owed_alert_episode`), ``open`` when it needs a claim (new, undecided, its
    claim timed out, or it fires again). Only a hint: :func:`claim_alert_episode` and
    :func:`claim_owed_alert_episode` decide an episode under their compare-and-set.
    A settled episode stays settled for the delivery (a decision is final, and a later
    resolve is later still than its start), so a redelivery of a decided group, thousands
    of alerts, is one read each and no write."""
    row = _seen_episode(conn, _episode(fingerprint, starts_at))
    if row is None:
        return "open"
    if row.status != "firing":
        began = row.now if started is None else started
        refires = row.resolved_at is not None and began - row.resolved_at > REFIRE_AFTER
        return "open" if refires else "settled"
    if row.decision is None:
        return "open"
    if row.decision == owed:
        return "owed"
    since = _claimed_at(row.decision)
    if since is None:
        return "settled"
    return "held" if row.now - since < stale_after else "open"


def claim_alert_episode(
    conn: Connection,
    *,
    fingerprint: str,
    starts_at: str,
    model: str | None,
    alertname: str,
    labels: Mapping[str, Any],
    stale_after: timedelta = CLAIM_TIMEOUT,
    started: datetime | None = None,
) -> str | None:
    """Store this (fingerprint, startsAt) firing episode and claim it for one delivery.

    Returns the claim (for :func:`settle_alert_episode`) when the episode still needs a
    decision: it is new, a delivery before released it (its action was suppressed), or
    the delivery that claimed it did so over ``stale_after`` ago and never settled it.
    None when it is decided, owed, resolved, or held by another delivery. An episode
    resolved over ``REFIRE_AFTER`` before the delivery ``started`` (the database's time
    as it began; without one, now) fires again (see :func:`_reopened`). The claim is a
    compare-and-set on ``decision``, so of concurrent deliveries exactly one gets it (on
    PostgreSQL the losers' UPDATE waits for the winner's commit and then matches nothing;
    SQLite serialises writing transactions). Claims are stamped and aged by the database's
    clock, read with the row: the replicas' own clocks may disagree by more than
    ``stale_after``."""
    seen = {
        "model": model,
        "alertname": alertname,
        "labels": storable_json(dict(labels), field="labels"),
    }
    where = _episode(fingerprint, starts_at)
    row = _seen_episode(conn, where)
    if row is None:
        stmt = (
            dialect_insert(conn, alert_episodes)
            .values(
                fingerprint=fingerprint,
                starts_at=starts_at,
                status="firing",
                received_at=utcnow(),
                **seen,
            )
            .on_conflict_do_nothing(
                index_elements=[alert_episodes.c.fingerprint, alert_episodes.c.starts_at]
            )
        )
        conn.execute(stmt)
        row = _seen_episode(conn, where)  # stored now, or by a concurrent delivery
    now: datetime = row.now
    began = now if started is None else started
    if row.status != "firing" and not _reopened(conn, where, row.resolved_at, began, seen):
        return None
    held: str | None = row.decision
    if held is not None:
        since = _claimed_at(held)
        if since is None or now - since < stale_after:
            return None  # decided, or another delivery is deciding
        owed = _replaced(held)
        if owed is not None:
            # the delivery retrying an owed retune died: owed again, for the caller's own
            # retry (claim_owed_alert_episode), which records no second alert event
            conn.execute(
                update(alert_episodes)
                .where(where, alert_episodes.c.decision == held)
                .values(decision=owed)
            )
            return None
    claim = _new_claim(now)
    unchanged = (
        alert_episodes.c.decision.is_(None) if held is None else (alert_episodes.c.decision == held)
    )
    taken = conn.execute(update(alert_episodes).where(where, unchanged).values(decision=claim))
    return claim if taken.rowcount else None


def _seen_episode(conn: Connection, where: Any) -> Any:
    """The episode's status, decision and resolve with the database's time, None when it
    was never stored. Read before anything is written: a redelivery of a decided episode
    (a group of thousands, redelivered whole) writes nothing."""
    columns = (
        alert_episodes.c.status,
        alert_episodes.c.decision,
        alert_episodes.c.resolved_at,
        db_now(conn).label("now"),
    )
    return conn.execute(select(*columns).where(where)).one_or_none()


def _reopened(
    conn: Connection,
    where: Any,
    resolved_at: datetime | None,
    started: datetime,
    seen: Mapping[str, Any],
) -> bool:
    """Reopen a resolved episode whose firing delivery ``started`` over ``REFIRE_AFTER``
    after its resolve, keeping its decision: an owed retune is owed again, a never decided
    episode is decided anew, a decided one stays decided. One stored by its resolve gets
    the model, name and labels the firing delivery ``seen`` has. Timed from the delivery's
    start, not from when it reaches the episode: a delivery of a large group decides for
    minutes, and one that began before the resolve (Alertmanager gave up on it and sent
    the resolve next) carries a stale ``firing`` however late it gets here; it reopened
    the episode and queued a retune for the resolved alert. A compare-and-set on
    ``resolved_at``: of concurrent deliveries one reopens it, and the others find it
    firing (claimed, or owed)."""
    if resolved_at is None or started - resolved_at <= REFIRE_AFTER:
        return False
    reopened = conn.execute(
        update(alert_episodes)
        .where(
            where,
            alert_episodes.c.status == "resolved",
            alert_episodes.c.resolved_at == resolved_at,
        )
        .values(status="firing", resolved_at=None, **seen)
    )
    return bool(reopened.rowcount)


def claim_owed_alert_episode(
    conn: Connection, *, fingerprint: str, starts_at: str, owed: str
) -> str | None:
    """Claim a firing episode whose decision is the marker ``owed`` (its retune was
    suppressed and a later delivery tries it again) for one delivery: the claim, or None
    when the episode is not owed, resolved, or another delivery holds it. The claim keeps
    the marker, so one taken over after ``CLAIM_TIMEOUT`` is owed again (see
    :func:`claim_alert_episode`). Held like any claim, concurrent deliveries wait for the
    one retrying: a no-op compare-and-set of the marker let two retry at once, and the
    second found the first's job and recorded it a second time, as a duplicate."""
    where = (
        _episode(fingerprint, starts_at),
        alert_episodes.c.status == "firing",
        alert_episodes.c.decision == owed,
    )
    # read first: an episode that is not owed (decided, resolved, held) is left unwritten
    now = conn.execute(select(db_now(conn)).where(*where)).scalar_one_or_none()
    if now is None:
        return None
    claim = _new_claim(now, owed)
    taken = conn.execute(update(alert_episodes).where(*where).values(decision=claim))
    return claim if taken.rowcount else None


def alert_episode_claimed(conn: Connection, *, fingerprint: str, starts_at: str) -> bool:
    """Whether a delivery holds this firing episode's claim (live or not yet timed out)."""
    decision = conn.execute(
        select(alert_episodes.c.decision).where(
            _episode(fingerprint, starts_at), alert_episodes.c.status == "firing"
        )
    ).scalar_one_or_none()
    return decision is not None and _claimed_at(decision) is not None


def settle_alert_episode(
    conn: Connection,
    *,
    fingerprint: str,
    starts_at: str,
    claim: str,
    decision: str | None,
    firing: bool = False,
) -> bool:
    """Write the final ``decision`` of an episode held by ``claim``, or with None release
    it for a later delivery. False when the claim was taken over meanwhile (it timed
    out): the episode is left to the delivery that holds it now; with ``firing``, also
    when the episode resolved."""
    stmt = update(alert_episodes).where(
        _episode(fingerprint, starts_at), alert_episodes.c.decision == claim
    )
    if firing:
        stmt = stmt.where(alert_episodes.c.status == "firing")
    settled = conn.execute(stmt.values(decision=None if decision is None else decision[:400]))
    return bool(settled.rowcount)


def resolve_alert_episode(conn: Connection, *, fingerprint: str, starts_at: str) -> ResolveOutcome:
    """Mark a firing episode resolved, keeping its decision: ``resolved``. An episode
    resolved before (a resolve delivered again: Alertmanager's retry, an HA peer's, the
    group's next notification) is left as it is: ``already_resolved``. One never stored
    is stored resolved (without a model, name or labels): ``unseen``, the first resolve of
    an episode no delivery saw firing (its repeats are ``already_resolved``); a firing
    delivery within ``REFIRE_AFTER`` after the resolve (a retry, an HA peer's) is stale,
    and :func:`claim_alert_episode` must not take it. Stamped by the database's clock,
    which ages it: a host's own clock may run minutes off."""
    now = conn.execute(select(db_now(conn))).scalar_one()
    where = _episode(fingerprint, starts_at)
    firing = update(alert_episodes).where(where, alert_episodes.c.status == "firing")
    if conn.execute(firing.values(status="resolved", resolved_at=now)).rowcount:
        return "resolved"
    stored = conn.execute(
        dialect_insert(conn, alert_episodes)
        .values(
            fingerprint=fingerprint,
            starts_at=starts_at,
            model=None,
            alertname="",
            status="resolved",
            labels={},
            received_at=now,
            resolved_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[alert_episodes.c.fingerprint, alert_episodes.c.starts_at]
        )
        .returning(alert_episodes.c.status)  # a row when stored now (psycopg counts -1)
    )
    if stored.first() is not None:
        return "unseen"
    # stored before: resolved already, or by a firing delivery since the UPDATE above
    # (PostgreSQL's insert waited for its commit), which is resolved after all
    if conn.execute(firing.values(status="resolved", resolved_at=now)).rowcount:
        return "resolved"
    return "already_resolved"
