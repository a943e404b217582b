"""Which versions the rollback watches still pending hold, and until when: a live split
whose challenger a paired watch compares with sends it no units meanwhile (see
:func:`tunewatch._split.route`)."""

from __future__ import annotations

from datetime import datetime

from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow


def watched_versions(comparisons: ComparisonStore, model: str) -> set[int]:
    """The versions pending paired rollback watches compare their champion with. Each must
    shadow the champion, scoring the requests it answers, so a live split whose challenger
    it is sends it no units and tests nothing meanwhile: answering its split share, it gave
    the watch no pair (open for ever, or passed without evidence), and a split test could
    promote it back during the watch. See :func:`tunewatch._split.route`."""
    pending = [  # read by status: every closed watch of a model read each refresh tick
        *comparisons.list_tests(model, kind="rollback_watch", status="open"),
        *comparisons.list_tests(model, kind="rollback_watch", status="decided"),
    ]
    return {t.champion_version for t in pending if t.state.get("paired") and pending_watch(t)}


def watched_until(comparisons: ComparisonStore, model: str, version: int) -> datetime | None:
    """When the newest paired rollback watch comparing with ``version`` ended (``None``:
    none did). A live split that ``version`` challenges splits again from there."""
    ended = [
        t.decided_at or t.updated_at
        for t in comparisons.list_tests(model, kind="rollback_watch", champion_version=version)
        if t.state.get("paired") and not pending_watch(t)
    ]
    return max(ended, default=None)


def pending_watch(test: ComparisonTestRow) -> bool:
    """Whether watch ``test`` is open, or decided and not yet acted on."""
    return test.status == "open" or (test.status == "decided" and test.outcome is None)
