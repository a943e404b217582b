"""A version whose promotion would wait for an approver answers no client until it is
promoted: neither a live split's share of units nor requests naming it.

Serving such a version goes past the gate a promotion passes
(:func:`tunewatch._approval_rules.promotion_rules`: a regulated model, hyperparameters
outside the safe ranges, a search space that cannot be read). :class:`ApprovalGate` is the
one place that decides it, for both ways a version other than the champion answers:

* A live split's challenger answers real requests for its share of units. A split
  configured for such a version served it to half a regulated model's customers while its
  promotion waited for an approver, and nothing recorded that it went live. While a rule
  holds the split is not served (:meth:`ApprovalGate.served`): the challenger stays in
  shadow (scored, answering nobody; see :func:`tunewatch._split.route`), a warning names
  the model, the version and the rules, and a ``split_not_served`` event records it. Once
  no rule holds (the model's safe ranges were widened) the split serves again at the next
  line-up build, and a ``split_served`` event records the end of the hold.
* A version in shadow is listed by ``GET /v2/models/{m}`` and could be named by
  ``/v2/models/{m}/versions/{v}/infer``: any scorer got a regulated model's shadow version's
  answers, one whose promotion an approver had rejected, and a held split was undone by
  naming its challenger. The rules of each version in shadow (:meth:`ApprovalGate.named`)
  go with the served line-up, and the route refuses a version with any (409
  ``approval_required``). The champion always answers requests naming it. Nothing is
  recorded per refused request (a client could flood the event log); the API counts them
  by code.

Checked when a line-up is built, never per request: the rules read the version's
hyperparameters and a search space file. The rules are kept per version until the
version leaves the shadow stage, or the model's regulated flag or its stored safe ranges
change (the config, the other input, is read once a process). The split's warning is
logged once a process per (model, version, rules), and its events are recorded once per
hold, across processes and restarts: a hold is not recorded again while the model's
newest ``split_not_served`` or ``split_served`` event is a ``split_not_served`` of the
same version and rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tunewatch._approval_rules import promotion_rules
from tunewatch._config import Config
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._split import SplitConfig
from tunewatch.store import Event, ModelRow, Store, StoredSafeRanges, VersionRow

logger = logging.getLogger(__name__)

#: The event of a split not served because promoting its challenger needs an approver.
NOT_SERVED = "split_not_served"
#: The event of a split served again after a ``split_not_served`` (no rule holds now).
SERVED = "split_served"

#: What the split's gate said of a model: its challenger and the rules (none: served).
_Verdict = tuple[int, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Checked:
    """The rules found for a version in shadow, and what of the model they were read
    from."""

    regulated: bool
    stored: StoredSafeRanges | None
    rules: tuple[str, ...]


class ApprovalGate:
    """Decides, for one process on ``store`` under ``config``, whether a model's live split
    is served (:meth:`served`) and which of its versions in shadow may answer requests
    naming them (:meth:`named`), from the same rules (:meth:`rules`)."""

    def __init__(self, *, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        # per model, per version in shadow; replaced whole, never changed in place: a
        # refresh and a load of one model read and write it at once
        self._checked: dict[str, dict[int, _Checked]] = {}
        self._logged: dict[str, _Verdict] = {}  # what this process logged, per model
        self._recorded: dict[str, _Verdict] = {}  # what the store's events say, per model
        # held around a verdict's log and record (rare: a change of verdict), so that a
        # refresh and a load of one model deciding at once log and record it once
        self._lock = threading.Lock()

    def served(
        self,
        row: ModelRow,
        split: SplitConfig,
        *,
        shadows: Collection[int],
        version: Callable[[int], VersionRow],
    ) -> SplitConfig | None:
        """``split`` (the model ``row``'s configured split) as served: ``None`` while
        promoting its challenger would wait for an approver. ``shadows``: the model's
        versions in shadow; a split whose challenger is not one answers nobody anyway
        (:func:`tunewatch._split.route`), and is checked once it is. ``version(n)``: the
        version row of number ``n``, read only when the rules must be read again."""
        if split.challenger not in shadows:
            return split
        rules = self.rules(row, split.challenger, version)
        verdict = (split.challenger, rules)
        if self._logged.get(row.name) != verdict or self._recorded.get(row.name) != verdict:
            with self._lock:
                self._settle(row.name, split, rules)
        return None if rules else split

    def named(
        self,
        row: ModelRow,
        *,
        shadows: Collection[int],
        version: Callable[[int], VersionRow],
    ) -> dict[int, tuple[str, ...]]:
        """The rules that keep each of ``shadows`` (the model ``row``'s versions in
        shadow) from answering requests naming it: its promotion's (none: it answers).
        The rules kept for versions no longer in shadow are dropped. ``version`` as for
        :meth:`served`."""
        named = {number: self.rules(row, number, version) for number in shadows}
        kept = self._checked.get(row.name, {})
        if set(kept) - set(shadows):  # retired or promoted: not kept for the daemon's life
            self._checked[row.name] = {n: c for n, c in kept.items() if n in shadows}
        return named

    def rules(
        self, row: ModelRow, number: int, version: Callable[[int], VersionRow]
    ) -> tuple[str, ...]:
        """The rules that make promoting version ``number`` of the model ``row`` wait for
        an approver (:func:`promotion_rules`), read again (``version(number)``: its row)
        only when the model's regulated flag or stored safe ranges changed since."""
        kept = self._checked.get(row.name, {})
        checked = kept.get(number)
        if (
            checked is None
            or checked.regulated != row.regulated
            or checked.stored != row.stored_safe_ranges
        ):
            rules = tuple(promotion_rules(row, version(number), self.config))
            checked = _Checked(row.regulated, row.stored_safe_ranges, rules)
            self._checked[row.name] = {**kept, number: checked}
        return checked.rules

    def _settle(self, model: str, split: SplitConfig, rules: tuple[str, ...]) -> None:
        """Log the model's new verdict (once a process) and record it (once a hold); the
        caller holds the lock. A failed record is logged and tried again at the next
        build: the split is held or served as the rules say either way."""
        verdict = (split.challenger, rules)
        before = self._logged.get(model)
        if before != verdict:
            self._logged[model] = verdict
            if rules:
                logger.warning(
                    "model=%s version=%d: live split not served: promoting it needs an "
                    "approver (rules: %s); promote it through an approval instead",
                    model,
                    split.challenger,
                    "; ".join(rules),
                )
            elif before is not None and before[1]:
                logger.info(
                    "model=%s version=%d: live split served again: promoting it needs no "
                    "approver now",
                    model,
                    split.challenger,
                )
        if self._recorded.get(model) == verdict:
            return
        try:
            self._record(model, split, rules)
        except StoreUnavailableError:
            raise  # the line-up is not built either: the refresh says so
        except StoreError:
            logger.exception(
                "model=%s version=%d: the live split's %s could not be recorded; tried "
                "again at the next line-up build",
                model,
                split.challenger,
                NOT_SERVED if rules else SERVED,
            )
            return
        self._recorded[model] = verdict

    def _record(self, model: str, split: SplitConfig, rules: tuple[str, ...]) -> None:
        """Record a hold (``rules``) unless the newest hold of the model, not ended since,
        is this one; record the end of a hold (no ``rules``) when one was the newest. The
        append is refused when another process appended the same type since the first
        read here: two replicas building the same line-up record it once."""
        kind = NOT_SERVED if rules else SERVED
        own = self.store.list_events(model=model, type=kind, limit=1)  # read first
        newest = self.store.list_events(model=model, types=(NOT_SERVED, SERVED), limit=1)
        held = newest[0] if newest and newest[0].type == NOT_SERVED else None
        payload: dict[str, object] = {
            "version": split.challenger,
            "percent": split.percent,
            "salt": split.salt,
        }
        if rules:
            if held is not None and _holds(held, split.challenger, rules):
                return  # recorded by another process, or by this one before a restart
            payload["rules"] = list(rules)
            payload["reason"] = (
                "promoting the split's challenger needs an approver: promote it through "
                "an approval instead"
            )
        elif held is None:
            return  # no hold to end: a split served as configured is not an event
        else:
            payload["held"] = held.id
            payload["reason"] = "promoting the split's challenger needs no approver now"
        self.store.add_event_after(
            model=model, type=kind, payload=payload, last=own[0].id if own else None
        )


def _holds(event: Event, challenger: int, rules: tuple[str, ...]) -> bool:
    return event.payload.get("version") == challenger and event.payload.get("rules") == list(rules)
