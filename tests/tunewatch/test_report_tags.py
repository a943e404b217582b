"""A version's rationale report lists its tags (key, value, who set it and when), and a
tag's changes are not read as decisions about the version."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def test_the_report_lists_the_version_s_tags_and_not_as_decisions(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        store = daemon.store
        store.set_version_tag(MODEL, 2, "validation", "passed", actor="bob")
        store.set_version_tag(MODEL, 2, "ticket", "RISK-1", actor="alice")
        store.set_version_tag(MODEL, 2, "ticket", "RISK-123", actor="alice")
        store.set_version_tag(MODEL, 2, "gone", "x", actor="alice")
        store.delete_version_tag(MODEL, 2, "gone", actor="alice")
        markdown = build_report(store, daemon.config, MODEL, 2).markdown()
        tags = _section(markdown, "Tags")
        assert "| ticket | RISK-123 | alice |" in tags
        assert "| validation | passed | bob |" in tags
        assert tags.index("ticket") < tags.index("validation") and "gone" not in tags
        decisions = _section(markdown, "Decisions and approvals")
        assert "set_tag" not in decisions and "delete_tag" not in decisions
        assert "no tags" in _section(
            build_report(store, daemon.config, MODEL, 1).markdown(), "Tags"
        )
    finally:
        daemon.close()
