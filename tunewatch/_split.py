"""Live splits: which version answers a request, and the sample-ratio check of the split.

A live split sends ``percent`` % of units (users, accounts … whatever the caller's unit key
names) to one challenger, stickily: :func:`shadow.stats.assign` hashes the salt and the key,
so a unit sees the same version on every request and every replica. Requests without a
unit key are answered by the champion (there is no unit to keep sticky).

What the inference path must record for the sample-ratio check: a request the split
challenger answers is written with the challenger's output (any role, normally
``"challenger"``) and **no** output in role ``"champion"``; a request the champion answers
keeps its ``"champion"`` output (challengers may still shadow it). The check counts
requests, not units: with many requests per unit it is conservative only if units are
small; record one request per unit per period for an exact unit-level check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from shadow.stats import SRMResult, assign, srm_check
from tunewatch._config_base import Frozen

if TYPE_CHECKING:  # _config nests SplitConfig: import nothing that imports _config
    from tunewatch._actions import ActionOutcome, Dispatcher
    from tunewatch.store._comparisons import ComparisonStore, SplitCheckRow

logger = logging.getLogger(__name__)


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

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"`start` must carry a time zone, got {value.isoformat()}")
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
    ``None`` while fewer than ``min_requests`` requests were split."""
    n_champion, n_challenger = comparisons.count_split_arms(
        model=model, challenger_version=split.challenger, since=since
    )
    if n_champion + n_challenger < min_requests:
        return None
    result: SRMResult = srm_check(n_champion, n_challenger, split.percent / 100.0, alpha=alpha)
    previous = comparisons.latest_split_check(
        model, salt=split.salt, challenger_version=split.challenger
    )
    p_value, mismatch = result.p_value, result.mismatch
    grown = (
        previous is not None
        and previous.percent == split.percent
        and n_champion + n_challenger >= previous.n_champion + previous.n_challenger
    )
    if previous is not None and grown:
        # The same count grown: its always-valid evidence is the smallest p-value seen, and
        # a mismatch, once found, is final like a test's decision. Re-reading the current
        # value unblocked promotions on a broken split (a 48.5/51.5 split read "no
        # mismatch" again after detection in 35 % of 300 simulated runs). A count that
        # shrank was restarted (a later ``start``), and a new salt or share is a new split.
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
        chi2=result.chi2,
        p_value=p_value,
        mismatch=mismatch,
    )
    if mismatch and grown and previous is not None and previous.mismatch:
        _retry_owed_retune(dispatcher, model, split)
    elif mismatch:
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
            },
            dedupe_key=f"srm:{model}:{split.salt}:{row.id}",
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


def _retry_owed_retune(dispatcher: Dispatcher, model: str, split: SplitConfig) -> None:
    """The mismatch episode goes on: a ``do: retune`` its ``srm_detected`` raised that is
    still owed (the quota suppressed it, or the dispatch failed before queuing its job)
    is tried again (:meth:`Dispatcher.retry`: nothing is recorded while the quota holds
    it, and its outcome once it settles). A retune a cool-down suppressed is not owed:
    the model was just retuned."""
    fired = dispatcher.owed(model, "srm_detected")
    if fired is None:
        return
    if (fired.payload.get("salt"), fired.payload.get("challenger_version")) != (
        split.salt,
        split.challenger,
    ):  # an earlier split's: that experiment is over
        return
    dispatcher.retry(model, fired)
