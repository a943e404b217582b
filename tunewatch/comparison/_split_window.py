"""Where the live split stands in time: whether it still splits, where its sample-ratio
check counts from and where its test reads from (a champion change, the challenger's
time out of shadow and a rollback watch that kept it shadowing move them)."""

from __future__ import annotations

from datetime import datetime

from tunewatch._approval_rules import promotion_rules
from tunewatch._config import Config
from tunewatch._split import SplitConfig
from tunewatch.comparison._watched import watched_until, watched_versions
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore


def splitting(
    store: Store, comparisons: ComparisonStore, model: str, split: SplitConfig, *, config: Config
) -> bool:
    """Whether the live split still splits: its challenger is in shadow (a version out
    of the lineup answers no unit, see :func:`tunewatch._split.route`). Once it was
    promoted every unit counts in the champion arm: the check reported a mismatch,
    raised ``srm_detected`` and blocked every later promotion. Nor while a rollback
    watch compares with it: it shadows the champion then (see
    :func:`~tunewatch.comparison._watched.watched_versions`). Nor while promoting it
    would wait for an approver under ``config``: the runtime holds the split and the
    challenger shadows (:mod:`tunewatch._approval_gate`), so a paired test compares it
    (as the split's, it was compared by no test while held)."""
    try:
        challenger = store.get_version(model, split.challenger)
    except LookupError:
        return False
    if challenger.stage != "shadow":
        return False
    if split.challenger in watched_versions(comparisons, model):
        return False
    return not promotion_rules(store.get_model(model), challenger, config)


def split_start(
    store: Store, comparisons: ComparisonStore, model: str, split: SplitConfig
) -> datetime | None:
    """Where the live split starts, and its sample-ratio check's window with it: the
    split's ``start`` (default: when its challenger was registered), or when the
    challenger returned to shadow if it left it since and that is later. Another
    version's promotion does not move it: every unit a champion answered is the
    champion arm's, and a check counting from the promotion forgot a real mismatch and
    unblocked promotions. The challenger's own time out of shadow does: as champion it
    answered every unit (all in the champion arm), and a balanced split after its
    return read as a mismatch. So does a rollback watch that kept it shadowing: the
    split counts from the watch's end. The check counts from later still after the
    split's challenger, salt or share changed: from the first check that saw them
    (see :func:`~tunewatch._split.check_split`)."""
    try:
        challenger = store.get_version(model, split.challenger)
    except LookupError:
        return split.start
    start = split.start if split.start is not None else challenger.created_at
    returned = challenger.stage_changed_at > challenger.created_at
    if challenger.stage == "shadow" and returned:
        start = max(start, challenger.stage_changed_at)
    if challenger.stage == "shadow":
        ended = watched_until(comparisons, model, split.challenger)
        if ended is not None:
            start = max(start, ended)
    return start


def split_since(
    store: Store, comparisons: ComparisonStore, model: str, split: SplitConfig
) -> datetime | None:
    """Where the live split's test reads from: the split's start, or the newest change
    of champion after it. The split test is the current champion's, so the
    challenger's units from before the change are no fair match for it. It reads from
    later still after the split's challenger, salt or share changed: from the first
    check that saw them, as the check counts (see
    :class:`~tunewatch.comparison._split_test.SplitTest`)."""
    start = split_start(store, comparisons, model, split)
    changes = store.list_events(model=model, types=("promoted", "rolled_back"), limit=1)
    if changes and (start is None or changes[0].created_at > start):
        return changes[0].created_at
    return start
