"""The rollback watch's check of a new champion's failed runs: raised, stopped at the run
deadline, or answered values its checks refused (no output, so no loss the watch could
compare). Counted by the recorder (``run_tallies``, role ``champion``) from the watch's
start, and tested at every look against ``guardrails.max_error_rate``."""

from __future__ import annotations

from typing import Any

from shadow.stats import failure_rate_look
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonTestRow

#: The key of a watch's state holding the new champion's run counts when it began (absent
#: from watches begun before runs were counted): the failure rate is of the runs since.
RUNS_AT_START = "champion_runs_at_start"


def champion_runs(store: Store, model: str, version: int) -> dict[str, int]:
    """``version``'s runs and failures as champion counted so far (zeros before any)."""
    tally = store.run_tally(model, version, "champion")
    return {"runs": tally.runs if tally else 0, "failures": tally.failures if tally else 0}


def failed_runs(
    store: Store, test: ComparisonTestRow, settings: ComparisonConfig
) -> dict[str, Any] | None:
    """The watched champion's failed runs since the watch began, when they are evidence,
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
    if not failure_rate_look(failures, runs, limit=limit, alpha=settings.rollback.alpha).exceeded:
        return None
    return {"failures": failures, "runs": runs, "limit": limit, "last_failure": tally.last_failure}
