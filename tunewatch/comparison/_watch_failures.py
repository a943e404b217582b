"""The rollback watch's check of a new champion's failed runs: raised, stopped at the run
deadline, or answered values its checks refused (no output, so no loss the watch could
compare). Counted by the recorder (``run_tallies``, role ``champion``) from the
promotion, and tested at every look against ``guardrails.max_error_rate``."""

from __future__ import annotations

import logging
from typing import Any

from shadow.stats import failure_rate_look
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.store import Event, Store
from tunewatch.store._comparisons import ComparisonTestRow

logger = logging.getLogger(__name__)

#: The key of a watch's state holding the new champion's run counts when it was promoted
#: (absent from watches begun before runs were counted): the failure rate is of the runs
#: since.
RUNS_AT_START = "champion_runs_at_start"


def runs_at_promotion(store: Store, promotion: Event) -> dict[str, int]:
    """The promoted version's runs and failures as champion when it was promoted (its
    ``promoted`` event's ``champion_runs``); for an event written before it carried them,
    as counted now. Counted from the watch's start instead, the failures before its first
    run (up to ``interval_s`` after the promotion) were left out: 30 of the first 300
    runs failing, then 300 clean, rolled nothing back."""
    ran = promotion.payload.get("champion_runs")
    if isinstance(ran, dict):
        return {"runs": int(ran["runs"]), "failures": int(ran["failures"])}
    tally = store.run_tally(promotion.model or "", int(promotion.payload["version"]), "champion")
    return {"runs": tally.runs if tally else 0, "failures": tally.failures if tally else 0}


def failed_runs(
    store: Store, test: ComparisonTestRow, settings: ComparisonConfig
) -> dict[str, Any] | None:
    """The watched champion's failed runs since its promotion, when they are evidence,
    valid at every look (:func:`~shadow.stats.failure_rate_look`, at the watch's
    ``alpha``), that it fails on more than ``guardrails.max_error_rate`` of them; else
    ``None`` (so too with the rule off, or a watch begun before runs were counted)."""
    limit = settings.guardrails.max_error_rate
    start = test.state.get(RUNS_AT_START)
    if limit is None or not isinstance(start, dict):
        return None
    tally = store.run_tally(test.model, test.challenger_version, "champion")
    if tally is None:
        return None
    runs, failures = tally.runs - start["runs"], tally.failures - start["failures"]
    if runs < 0 or failures < 0 or failures > runs:
        # counted afresh since (the store downgraded below revision 0020 and upgraded
        # again): its counts are all there is, not a reason to stop the watch
        logger.warning(
            "model=%s version=%d: runs counted as champion (%d, %d failed) are fewer than at its "
            "promotion (%d, %d): counting from zero",
            test.model,
            test.challenger_version,
            tally.runs,
            tally.failures,
            start["runs"],
            start["failures"],
        )
        runs, failures = tally.runs, tally.failures
    if not failure_rate_look(failures, runs, limit=limit, alpha=settings.rollback.alpha).exceeded:
        return None
    return {"failures": failures, "runs": runs, "limit": limit, "last_failure": tally.last_failure}
