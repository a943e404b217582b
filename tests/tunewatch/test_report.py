"""Rationale reports: what the Markdown says, and where the files go."""

from __future__ import annotations

import dataclasses
import html
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import tunewatch._report as report_module
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.report_imports import audit_import
from tunewatch._example import ExampleModel
from tunewatch._report import build_report, refresh_reports


def _table(markdown: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table under ``header``, split at unescaped pipes."""
    lines = markdown[markdown.index(header) :].split("\n\n")[0].splitlines()[2:]
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines]


def test_markdown_report_escapes_pipes_newlines_and_html_in_values(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Values went into the Markdown unescaped: a '|' split a table cell, a newline ended
    the table, and raw HTML reached the stored .md and `?format=md` (the HTML report
    escaped them)."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        hp = {
            **trained[0].metadata.hyperparameters,
            "features": "age|income",
            "note": "line1\n<img src=x onerror=alert(1)> & more",
        }
        meta = dataclasses.replace(trained[0].metadata, hyperparameters=hp)
        row = daemon.registry.register(MODEL, trained[0].onnx, meta, actor="t", stage="shadow")
        daemon.store.promote(MODEL, row.version, actor="alice", reason="won|by far\nsee <b>")
        report = build_report(daemon.store, daemon.config, MODEL, row.version)
        md = report.markdown()
        params = _table(md, "| parameter | value |")
        assert all(len(cells) == 2 for cells in params), params
        values = {k.strip(): v.strip() for k, v in params}
        # exact, as the canonical JSON the set's id hashes (a string in quotes)
        assert values["features"] == r'"age\|income"'
        assert values["note"] == r'"line1\\n&lt;img src=x onerror=alert(1)&gt; &amp; more"'
        decisions = _table(md, "| when | action | by | reason |")
        assert all(len(cells) == 4 for cells in decisions), decisions
        assert decisions[-1][3].strip() == r"won\|by far<br>see &lt;b&gt;"
        assert "<img" not in md and "<b>" not in md
        # the HTML report escapes for HTML only: the value reads as it was given
        assert "age|income" in report.html() and "&lt;img src=x" in report.html()
    finally:
        daemon.close()


#: Values carrying Markdown's inline syntax, each to read back as given.
INLINE = {
    "image": "![x](http://127.0.0.1:9/beacon.png)",
    "link": "[approve here](http://127.0.0.1:9/phish)",
    "reference": "[approve][1] [1]: http://127.0.0.1:9/",
    "autolink": "<http://127.0.0.1:9/>",
    "emphasis": "*strong* __bold__ _it_ ~~gone~~",
    "code": "`tick` $x$",
    "escapes": "a\\|b \\* c\\",
    "entity": "&lt; &#60; &amp;",
    "intraword": "gb_n_estimators rolled_back",
}


def _markdown_of(values: dict[str, str]) -> str:
    table = (("parameter", "value"), *sorted(values.items()))
    return report_module.Report(
        model="m", version=1, sections=(report_module.Section("S", table=table),)
    ).markdown()


def test_markdown_report_escapes_links_images_and_inline_syntax_in_values() -> None:
    """Only `& < > |` and line breaks were escaped: a hyperparameter value put an image
    (fetched when the .md is viewed) or a link with any text into the report."""
    params = dict(_table(_markdown_of(INLINE), "| parameter | value |"))
    values = {k.strip(): v.strip() for k, v in params.items()}
    assert values["image"] == r"!\[x\](http://127.0.0.1:9/beacon.png)"
    assert values["link"] == r"\[approve here\](http://127.0.0.1:9/phish)"
    assert values["autolink"] == "&lt;http://127.0.0.1:9/&gt;"
    assert values["emphasis"] == r"\*strong\* \_\_bold\_\_ \_it\_ \~\~gone\~\~"
    assert values["code"] == r"\`tick\` \$x\$"
    assert values["escapes"] == r"a\\\|b \\\* c\\"  # a backslash stays one
    assert values["entity"] == "&amp;lt; &amp;#60; &amp;amp;"
    assert values["intraword"] == "gb_n_estimators rolled_back"  # `_` inside a word is text


def test_a_commonmark_renderer_shows_each_value_as_it_was_given() -> None:
    """Rendered (CommonMark with tables and strikethrough, as GitHub renders a .md), no
    value makes a link, an image or markup: each cell reads as the value it holds."""
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(_markdown_of(INLINE))
    cells = re.findall(r"<tr>\n<td>(.*?)</td>\n<td>(.*?)</td>\n</tr>", page)
    assert {k: html.unescape(v) for k, v in cells} == INLINE
    assert "<a " not in page and "<img" not in page and "<h2>S</h2>" in page


def test_report_files_of_a_long_model_name_fit_a_file_name_and_stay_apart(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The file name was the escaped model name and `-vN.md`, never measured: a valid
    name of 130 'é' (260 bytes) or 90 '%' (270 bytes escaped) is past the 255-byte limit
    of a file name, and writing the report raised OSError after the change it explains
    was committed. A short name keeps its file name."""
    from tunewatch._report import write_report

    daemon, _ = make_daemon(tmp_path, trained)
    names = ["é" * 130, "é" * 129 + "e", "%" * 90, "\U0001f600" * 200]
    try:
        for name in names:
            daemon.registry.register(
                name, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
            )
        folder = (tmp_path / "reports").resolve()
        written = [write_report(daemon.store, daemon.config, name, 1) for name in names]
        for md, page in written:
            assert md.parent == page.parent == folder
            assert len(page.name.encode()) <= 255 and md.read_text(encoding="utf-8")
            assert md.name.endswith("-v1.md") and page.stem == md.stem
        assert written[0][0].name.startswith("é" * 50)
        assert len({md for md, _ in written}) == len(names)
        short = write_report(daemon.store, daemon.config, MODEL, 1)
        assert [p.name for p in short] == ["credit-v1.md", "credit-v1.html"]
    finally:
        daemon.close()


def test_the_report_of_a_rolled_back_version_says_who_rolled_it_back_and_why(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The rollback is audited against the restored version (`credit/v1`) and the report
    read only entries whose target was its own version: v2's report said `rolled_back`
    with no who, when or why."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        daemon.store.promote(MODEL, 2, actor="alice", reason="won in shadow")
        daemon.store.rollback(MODEL, actor="bob", reason="pager at 3am")
        decisions = {}
        for version in (2, 1):
            md = build_report(daemon.store, daemon.config, MODEL, version).markdown()
            table = _table(md, "| when | action | by | reason |")
            decisions[version] = [tuple(c.strip() for c in row[1:]) for row in table]
        rollback = ("rollback (v2 rolled back, v1 restored)", "bob", "pager at 3am")
        assert decisions[2][-2:] == [("promote", "alice", "won in shadow"), rollback]
        assert decisions[1][-1] == rollback
    finally:
        daemon.close()


def test_an_imported_version_s_report_says_where_it_came_from(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """An import moves the source store's job, trigger and row counts under
    `details.imported`: the report then read no trigger and said the version was
    registered by hand, with no rows."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        imported = {
            "model": "credit-eu",
            "version": 7,
            "origin": {"model": "credit-eu", "version": 7},
            "stage": "champion",
            "job": 12,
            "trigger": {"event": "drift_detected", "job": 12},
            "rows": 1500,
            "traffic_rows": 1300,
            "bundle_sha256": "ab" * 32,
            "exported_at": "2026-11-30T09:00:00+00:00",
        }
        meta = dataclasses.replace(trained[0].metadata, details={"imported": imported})
        row = daemon.registry.register(MODEL, trained[0].onnx, meta, actor="t", stage="shadow")
        audit_import(daemon.store, MODEL, row.version)  # as the import records it
        md = build_report(daemon.store, daemon.config, MODEL, row.version).markdown()
        assert "by hand" not in md
        assert "- **imported from**: credit-eu v7" in md
        assert "- **source trigger event**: drift_detected" in md
        assert "- **rows (in the source store)**: 1500" in md
        assert "- **of which labelled traffic (in the source store)**: 1300" in md
    finally:
        daemon.close()


def test_a_reason_holding_a_lone_surrogate_is_written_escaped_in_the_reports(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`tunewatch promote … --reason $'ok \\xff'` stored a lone surrogate (argv decoding
    turns an undecodable byte into one); writing a report quoting it raised
    UnicodeEncodeError, which refresh_reports let through after the change committed."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        daemon.store.promote(MODEL, 2, actor="ops", reason="bad byte \udcff from argv")
        refresh_reports(daemon.store, daemon.config, MODEL, (2, 1))
        folder = Path(daemon.config.data_dir) / "reports"
        # stored backslash-escaped by the audit log; Markdown escapes that backslash, so
        # both render as the text ``bad byte \\udcff from argv``
        shown = {"md": "bad byte \\\\udcff from argv", "html": "bad byte \\udcff from argv"}
        for suffix, escaped in shown.items():
            text = (folder / f"{MODEL}-v2.{suffix}").read_text(encoding="utf-8")
            assert escaped in text, suffix
        assert "- **stage**: retired" in (folder / f"{MODEL}-v1.md").read_text(encoding="utf-8")
    finally:
        daemon.close()


def test_a_report_failing_with_a_value_error_is_logged_and_the_others_written(
    trained: list[ExampleModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only OSError was caught: any other error of one report (UnicodeEncodeError is a
    ValueError) escaped to the request that had committed the change, and the reports
    after it were not written."""
    daemon, _ = make_daemon(tmp_path, trained)
    real = report_module.write_report

    def failing_for_v2(store: Any, config: Any, model: str, version: int) -> Any:
        if version == 2:
            raise ValueError("cannot encode")
        return real(store, config, model, version)

    monkeypatch.setattr(report_module, "write_report", failing_for_v2)
    try:
        with caplog.at_level(logging.ERROR, logger="tunewatch._report"):
            refresh_reports(daemon.store, daemon.config, MODEL, (2, 1))
        [failure] = [r for r in caplog.records if "rationale report" in r.getMessage()]
        assert failure.args == (MODEL, 2) and failure.exc_info is not None
        assert (Path(daemon.config.data_dir) / "reports" / f"{MODEL}-v1.md").exists()
    finally:
        daemon.close()


@pytest.mark.parametrize(
    ("details", "row"),
    [
        ({"cv": "nested"}, "- **CV scheme**: —"),
        ({"nested_estimate": [0.1, 0.2]}, "- **nested CV estimate (outer folds)**: —"),
        ({"nested_estimate": {"mean": None}}, "- **nested CV estimate (outer folds)**: —"),
        (
            {"nested_estimate": {"mean": 0.25, "std": "x"}},
            "- **nested CV estimate (outer folds)**: —",
        ),
        ({"warm_start_plan": ["enqueue"]}, "No tuning job: registered by hand."),
        ({"warm_start_plan": {"numeric_box": [1, {"name": "C"}]}}, "| C | — | — | — |"),
        ({"warm_start_plan": {"choice_box": ["estimator"]}}, "- **strategies**: —"),
        ({"warm_start_plan": {"choice_box": {"estimator": "gb"}}}, "| estimator | — | — | gb |"),
        ({"warm_start_plan": {"importances": {"C": "x"}}}, "(fANOVA)**: none"),
        ({"importances": ["C"]}, "None recorded"),
        ({"importances": {"shares": {"C": None, "x": "y"}}}, "None recorded"),
        ({"importances": {"shares": {"C": 1}, "n_complete": "x"}}, "| C | 100.0% |"),
        ({"trigger": "manual"}, "- **registered**: by hand (no tuning job)"),
        ({"imported": {"model": "m", "origin": "x"}}, "- **first registered as**: None vNone"),
        ({"imported": {"model": "m", "trigger": ["a"]}}, "- **imported from**: m vNone"),
    ],
    ids=[
        "cv_text",
        "nested_list",
        "nested_no_mean",
        "nested_text_std",
        "plan_list",
        "box_odd",
        "choice_box_list",
        "choice_box_text",
        "plan_importances_text",
        "importances_list",
        "importances_not_numbers",
        "importances_count_text",
        "trigger_text",
        "origin_text",
        "imported_trigger_list",
    ],
)
def test_details_of_an_unexpected_shape_neither_fail_the_report_nor_the_promotion(
    trained: list[ExampleModel], tmp_path: Path, details: dict[str, Any], row: str
) -> None:
    """`details` is free JSON (the API, a bundle): a `cv` given as text, a
    `nested_estimate` as a list or without numbers, made the report raise, so its
    `GET` answered 500 and so did a promotion of that version, after it had committed."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        meta = dataclasses.replace(trained[0].metadata, details=details)
        row_ = daemon.registry.register(MODEL, trained[0].onnx, meta, actor="t", stage="shadow")
        if "imported" in details:  # an import's record, as an import's audit entry confirms
            audit_import(daemon.store, MODEL, row_.version)
        assert row in build_report(daemon.store, daemon.config, MODEL, row_.version).markdown()
        daemon.store.promote(MODEL, row_.version, actor="t", reason="odd details")
        refresh_reports(daemon.store, daemon.config, MODEL, (row_.version, 1))  # as the API
        assert (Path(daemon.config.data_dir) / "reports" / f"{MODEL}-v{row_.version}.md").exists()
    finally:
        daemon.close()


def test_a_nested_estimate_of_integers_past_float64_is_no_estimate() -> None:
    """A version stored with one (registration refuses it now) made its report a 500
    at every view: formatting it overflowed."""
    assert report_module._nested({"mean": 10**400, "std": 1.0}) is None
    assert report_module._nested({"mean": 0.5, "std": 10**400}) is None
    assert report_module._nested({"mean": 1, "std": 0.5, "outer_scores": [1]}) == ("1 ± 0.5 over 1")
