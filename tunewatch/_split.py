"""Live splits: which version answers a request, and the sample-ratio check of the split.

A live split sends ``percent`` % of units (users, accounts … whatever the caller's unit key
names) to one challenger, stickily: :func:`shadow.stats.assign` hashes the salt and the key,
so a unit sees the same version on every request and every replica. Requests without a
unit key are answered by the champion (there is no unit to keep sticky), and only a
request the split routed records its unit key: one answered while no split was served
(before the model's first split, while a split was off) is in neither arm.

What the inference path must record for the sample-ratio check: a request the split
challenger answers is written with the challenger's output (any role, normally
``"challenger"``) and **no** output in role ``"champion"``; a request the champion answers
keeps its ``"champion"`` output (challengers may still shadow it). The check counts
units, not requests: the distinct unit keys of the requests each arm answered (see
:func:`tunewatch.store._split_counts.count_split_arms`), since assignment is by unit. A
change of the split's challenger, salt or share starts a new count (see
:func:`check_split`), and a new split test (see :mod:`tunewatch.comparison._split_test`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from shadow.stats import SRMResult, assign, srm_check
from tunewatch._config_base import Frozen

if TYPE_CHECKING:  # _config nests SplitConfig: import nothing that imports _config
    from tunewatch._actions import ActionOutcome, Dispatcher
    from tunewatch.store._comparisons import ComparisonStore, SplitCheckRow
    from tunewatch.store._split_checks import SplitWindow

logger = logging.getLogger(__name__)

#: The offset ending a time written as text (``+05:30``, ``-0800``).
_OFFSET = re.compile(
    r"[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
    r"[+-](?P<hours>[0-9]{2}):?(?P<minutes>[0-9]{2})$",
    re.ASCII,
)


class SplitConfig(Frozen):
    """A live split: ``percent`` % of units answered by version ``challenger``."""

    challenger: int = Field(ge=1)
    percent: float = Field(gt=0, lt=100)
    salt: str = Field(min_length=1, description="one per experiment; a new salt reshuffles")
    # Requests received from here on belong to the split (default: since the challenger
    # version was registered).
    start: datetime | None = None

    @field_validator("salt")
    @classmethod
    def _short_salt(cls, value: str) -> str:
        size = len(value.encode("utf-8"))
        if size > 64:
            raise ValueError(f"`salt` must be at most 64 bytes, got {size}")
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _offset_in_range(cls, value: object) -> object:
        # `+05:99` as text: pydantic refused it as "unexpected extra characters at the
        # end of the input"; this names the rule. (Unquoted in YAML it is the loader's to
        # refuse: PyYAML reads it as the sum, 6 h 39 min, before this sees it.)
        found = _OFFSET.search(value) if isinstance(value, str) else None
        if found is not None and (int(found["hours"]) > 23 or int(found["minutes"]) > 59):
            raise ValueError(
                "`start` must be an RFC 3339 time with its offset (2026-06-01T10:00:00Z, "
                "2026-06-01T12:00:00+02:00; an offset's hours 00-23, its minutes 00-59)"
            )  # pydantic's error, and the config's, show the value
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        if value.utcoffset() is None:
            raise ValueError(f"`start` must carry a time zone, got {value.isoformat()}")
        try:  # the store compares it in UTC: one past either end failed every read
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"`start` must be a time in UTC's range (years 1 to 9999), got {value.isoformat()}"
            ) from None
        return value


def route(lineup_versions: Sequence[int], split: SplitConfig | None, unit_key: str | None) -> int:
    """The version that answers: ``lineup_versions`` is the champion first, then the shadow
    challengers. The split challenger answers for its share of unit keys while it is in
    the lineup; the champion answers everything else."""
    if not lineup_versions:
        raise ValueError("`lineup_versions` must name the champion first, got an empty lineup")
    champion = lineup_versions[0]
    if split is None or unit_key is None or split.challenger not in lineup_versions[1:]:
        return champion
    arm = assign(unit_key, salt=split.salt, percent=split.percent)
    return split.challenger if arm == "challenger" else champion


def check_split(
    comparisons: ComparisonStore,
    dispatcher: Dispatcher,
    model: str,
    *,
    champion_version: int,
    split: SplitConfig,
    since: datetime | None,
    now: datetime | None = None,
    alpha: float = 0.001,
    min_requests: int = 100,
) -> SplitCheckRow | None:
    """Count the units each arm answered since ``since`` (where the split starts, not
    moved by a promotion: every unit a champion answered is the champion arm's), run the
    sample-ratio check (always valid, so looking at every tick does not inflate false
    mismatches; see :func:`shadow.stats.srm_check`) and store it, with the smallest p-value
    and any mismatch of the same count before it; a new mismatch raises ``srm_detected``
    through the dispatcher (once per mismatch episode, not every tick); a retune it
    caused that is still owed (the quota suppressed it) is tried again at the episode's
    later checks.

    The same count is that of a check of the same split (challenger, salt, share) counted
    from the same time: a count restarted at a later ``since`` starts afresh, whatever
    units it holds. A split whose challenger, salt or share differs from the newest
    check's is a new split: its units count from ``now`` (default: the current time),
    when the first check sees it (stored then, untested — p-value 1, no mismatch — while
    too few units came), or from ``since`` if later, and only from requests stamped after
    every one recorded by then (a host whose clock runs ahead stamps the old settings'
    requests later). Counted from ``since`` alone, units assigned under both settings
    were mixed (a returning unit that changed arms counted in both): a false mismatch
    after a ramp of the share. The split's first check is stored too, untested while too
    few units came, so that a change before then is seen as one.

    Returns the check of the count as it stands (untested, p-value 1, while fewer than
    ``min_requests`` units were split)."""
    settings_since: datetime | None
    last = comparisons.store.latest_split_window(model)
    if last is None:  # the split's first check: its settings apply from its start, and
        # it is stored even untested, so that a change of them before enough units came is
        # seen (the count mixed a ramp's two shares: a false mismatch)
        settings_since, new_settings = None, True
    elif _settings(last.check) != (split.challenger, split.salt, split.percent):
        at = now or datetime.now(UTC)  # a new split, seen now
        settings_since, new_settings = comparisons.store.new_split_settings_since(model, at), True
    else:
        settings_since, new_settings = last.settings_since, False
    window = _later(since, settings_since)
    n_champion, n_challenger = comparisons.count_split_arms(
        model=model, challenger_version=split.challenger, since=window
    )
    n = n_champion + n_challenger
    previous = None
    if last is not None and not new_settings and _same_count(last, window, n):
        previous = last.check
    if n < min_requests and not new_settings:
        return previous
    result: SRMResult | None = None
    if n < min_requests:  # new settings, too few units yet: stored untested, to date them
        chi2, p_value, mismatch = 0.0, 1.0, False
    else:
        result = srm_check(n_champion, n_challenger, split.percent / 100.0, alpha=alpha)
        chi2, p_value, mismatch = result.chi2, result.p_value, result.mismatch
    if previous is not None:
        # The same count grown: its always-valid evidence is the smallest p-value seen, and
        # a mismatch, once found, is final like a test's decision. Re-reading the current
        # value unblocked promotions on a broken split (a 48.5/51.5 split read "no
        # mismatch" again after detection in 35 % of 300 simulated runs). A count that
        # starts elsewhere (a later ``start``, a new challenger, salt or share) is new.
        p_value = min(p_value, previous.p_value)
        mismatch = mismatch or previous.mismatch
    row = comparisons.add_split_check(
        model=model,
        champion_version=champion_version,
        challenger_version=split.challenger,
        salt=split.salt,
        percent=split.percent,
        n_champion=n_champion,
        n_challenger=n_challenger,
        chi2=chi2,
        p_value=p_value,
        mismatch=mismatch,
        since=window,
        settings_since=settings_since,
    )
    if mismatch and previous is not None and previous.mismatch:
        _retry_owed_retune(dispatcher, model, split)
    elif mismatch and result is not None:
        outcome: ActionOutcome = dispatcher.handle(
            model,
            "srm_detected",
            {
                "champion_version": champion_version,
                "challenger_version": split.challenger,
                "salt": split.salt,
                "expected_share": result.expected_share,
                "observed_share": result.observed_share,
                "n_champion": n_champion,
                "n_challenger": n_challenger,
                "chi2": result.chi2,
                "p_value": result.p_value,
                "fixed_p_value": result.fixed_p_value,
                "alpha": alpha,
                # the check that raised it, whose key a retry of its retune gives too
                "check_id": row.id,
            },
            dedupe_key=_srm_key(model, split.salt, row.id),
        )
        logger.warning(
            "model=%s split v%d: sample ratio mismatch (%d/%d, expected share %.3f, p=%.3g) -> %s",
            model,
            split.challenger,
            n_champion,
            n_challenger,
            result.expected_share,
            result.p_value,
            outcome.describe(),
        )
    return row


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _settings(check: SplitCheckRow) -> tuple[int, str, float]:
    return check.challenger_version, check.salt, check.percent


def _same_count(last: SplitWindow, window: datetime | None, n: int) -> bool:
    """Whether ``last`` (of the same split settings) checked the count of units received
    from ``window``, of which there are ``n`` now. A check stored before checks recorded
    their count (revision 0016) is taken for the same count when ``n`` is at least its."""
    if last.since is None and window is not None:
        return n >= last.check.n_champion + last.check.n_challenger
    return last.since == window


def _srm_key(model: str, salt: str, check_id: int) -> str:
    """The dedupe key of the retune job a mismatch found by check ``check_id`` causes."""
    return f"srm:{model}:{salt}:{check_id}"


def _retry_owed_retune(dispatcher: Dispatcher, model: str, split: SplitConfig) -> None:
    """The mismatch episode goes on: a ``do: retune`` its ``srm_detected`` raised that is
    still owed (the quota suppressed it, or the dispatch failed before queuing its job)
    is tried again (:meth:`Dispatcher.retry`: nothing is recorded while the quota holds
    it, and its outcome once it settles). A retune a cool-down suppressed is not owed:
    the model was just retuned.

    The retry's job is keyed as the first dispatch's was, by the check that raised the
    event (its ``check_id``), so it queues no second job for the episode when
    :meth:`Dispatcher.owed` takes a queued one for owed (its action event lost, and the
    event's host clock more than a minute ahead of the database's: the job looked
    queued before the event). An event an older version recorded names no check: its
    retry is keyed by the event, as before."""
    fired = dispatcher.owed(model, "srm_detected")
    if fired is None:
        return
    if (fired.payload.get("salt"), fired.payload.get("challenger_version")) != (
        split.salt,
        split.challenger,
    ):  # an earlier split's: that experiment is over
        return
    check_id = fired.payload.get("check_id")
    key = _srm_key(model, split.salt, check_id) if isinstance(check_id, int) else None
    dispatcher.retry(model, fired, dedupe_key=key)
