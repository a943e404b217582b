"""A version's rationale report finds its evidence and decisions however old they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch.store._audit import append_audit_in
from tunewatch.store._events import add_event_in


@pytest.mark.slow
def test_the_report_of_a_version_decided_long_ago_keeps_its_evidence_and_decisions(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The report read only the newest 500 events and 10,000 audit entries: on a busy
    daemon an older version's report lost its comparison evidence and its promotion."""
    d, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        d.store.add_event(
            model=MODEL,
            type="challenger_better",
            payload={"challenger_version": 2, "champion_version": 1, "estimate": 0.031},
        )
        d.store.promote(MODEL, 2, actor="alice", reason="v2 won the paired test")
        with d.store.engine.begin() as conn:
            for i in range(600):
                add_event_in(conn, model=MODEL, type="drift_detected", payload={"i": i})
            for i in range(10_001):
                append_audit_in(
                    conn, actor="bot", action="create_token", target=f"t{i}", details={}
                )
        text = build_report(d.store, d.config, MODEL, 2).markdown()
        assert "challenger_better" in text and "estimate=0.031" in text
        assert "v2 won the paired test" in text and "alice" in text
    finally:
        d.close()


def test_a_report_of_a_model_named_like_a_path_stays_in_the_reports_folder(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """Names with `/` are refused for new models; one registered before wrote its report
    into a folder that did not exist (or outside the data directory with `..`)."""
    from datetime import UTC, datetime

    from tunewatch._report import write_report
    from tunewatch.store._schema import models

    daemon, _ = make_daemon(tmp_path / "data", trained)
    name = "../x/credit"
    try:
        with daemon.store.engine.begin() as conn:
            conn.execute(
                models.insert().values(
                    name=name,
                    task="binary",
                    feature_names=list(trained[0].metadata.feature_names),
                    regulated=False,
                    created_at=datetime.now(UTC),
                )
            )
        daemon.registry.register(
            name, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        md, page = write_report(daemon.store, daemon.config, name, 1)
        folder = (tmp_path / "data" / "reports").resolve()
        assert md.parent == folder and page.parent == folder and md.exists()
    finally:
        daemon.close()


def test_a_token_named_like_a_version_is_not_among_its_decisions(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A token's audit entries target its name: one named ``credit/v2``, created and
    revoked, was listed among v2's decisions and approvals, as by its creator."""
    from tunewatch._auth import hash_token, new_token

    d, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        name = f"{MODEL}/v2"
        d.store.add_token(
            name=name, role="viewer", token_hash=hash_token(new_token()), actor="mallory"
        )
        d.store.revoke_token(name, actor="mallory")
        section = build_report(d.store, d.config, MODEL, 2).markdown().split("## Decisions")[1]
        assert "create_token" not in section and "revoke_token" not in section
        assert "mallory" not in section
        assert "register_version" in section  # the version's own entries are still there
    finally:
        d.close()
