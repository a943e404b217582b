"""A model's champions over time: which version answered its traffic at a given moment,
for a record scored elsewhere that names no version (mirror mode).

The champion changes only by a promotion or a rollback (a version registered as the
champion is the model's first: registration refuses one while another is champion, and
no stage change takes the champion out of service). Each writes an event in the same
transaction (``promoted``, ``rolled_back``, payload ``version``: the new champion), and
events are never purged, so the model's events of those types are its whole history,
read here in one statement on the ``(model, type, id)`` index. The champion before the
first change is the first promotion's ``previous``, or, with no change at all, the
current champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from ._registry_reads import _champion
from ._schema import events

#: The events a champion change writes, each with the new champion in ``version``.
CHANGES = ("promoted", "rolled_back")


@dataclass(frozen=True, slots=True)
class ChampionHistory:
    """``before``: the champion before the first change (``None``: the model never had
    one); ``changes``: each change as (when, the new champion), in the order made."""

    before: int | None
    changes: tuple[tuple[datetime, int], ...] = ()

    def at(self, moment: datetime) -> int | None:
        """The champion at ``moment``: the newest change made at or before it. Before
        the first change, the first champion, even before it was registered: a serving
        stack onboarding its logs scored them with the version it then registered, the
        only one the model knew."""
        version = self.before
        for when, champion in self.changes:
            if when > moment:
                break
            version = champion
        return version

    @property
    def current(self) -> int | None:
        """The champion now, as the history ends."""
        return self.changes[-1][1] if self.changes else self.before

    @property
    def previous(self) -> int | None:
        """The champion the newest change replaced (``None``: no change yet)."""
        if not self.changes:
            return None
        return self.changes[-2][1] if len(self.changes) > 1 else self.before


def champion_history(conn: Connection, model: str) -> ChampionHistory:
    """``model``'s champions over time (see the module's docstring)."""
    rows = conn.execute(
        select(events.c.payload, events.c.created_at)
        .where(events.c.model == model, events.c.type.in_(CHANGES))
        .order_by(events.c.id)
    ).all()
    changes: list[tuple[datetime, int]] = []
    before: int | None = None
    for payload, created_at in rows:
        found = payload if isinstance(payload, dict) else {}
        version = found.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            continue  # no event of these types is written without it
        if not changes:  # a first promotion of no champion: the model's first
            previous = found.get("previous")
            before = previous if isinstance(previous, int) else version
        changes.append((created_at, version))
    if not changes:
        before = _champion(conn, model)
    return ChampionHistory(before=before, changes=tuple(changes))
