"""Everyone who asked for a promotion is named where it is decided: the rationale report's
approval row and the reason of the promotion's audit entry, as ``tunewatch approvals``
and the API (``co_requesters``) name them."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report


def test_an_approval_asked_for_by_two_people_names_both_in_the_report_and_the_audit(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """alice, then bob, asked for v2's promotion (neither may decide it); carol approved.
    The report's row and the promotion's audit reason named alice alone."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        store = daemon.store
        asked = store.request_approval(
            MODEL, 2, requested_by="alice", reason="r1", rules=["regulated model"]
        )
        store.request_approval(MODEL, 2, requested_by="bob", reason="r2", rules=["regulated model"])
        decided, promoted = store.decide_approval(
            asked.id, approver="carol", approve=True, reason="ok"
        )
        assert decided.co_requesters == ("bob",) and promoted is not None
        [promote] = store.audit_log(limit=10, action="promote")
        assert promote.actor == "carol"
        assert promote.details["reason"] == f"approved request {asked.id} by alice, bob: ok"
        md = build_report(store, daemon.config, MODEL, 2).markdown()
        row = next(line for line in md.splitlines() if f"**approval {asked.id}**" in line)
        assert row == (
            f"- **approval {asked.id}**: approved by carol "
            "(requested by alice, bob; rules: regulated model): ok"
        )
    finally:
        daemon.close()
