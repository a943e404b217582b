"""The rationale report's hyperparameter table reproduces the set it names: its values
were formatted like every other figure (``.6g``), so a learning rate of
0.13057685492239668 read 0.130577 and the values shown hashed to another set id than
the one the report printed beside them. An auditor must be able to rebuild the set."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path
from typing import Any

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report, write_report
from tunewatch.store import hyperparameter_set_id

#: A float ``.6g`` rounds, an int, strings (one that reads as a number), a bool, a list.
PARAMS: dict[str, Any] = {
    "gb_learning_rate": 0.13057685492239668,
    "gb_n_estimators": 30,
    "estimator": "gradient_boosting",
    "label": "3",
    "balanced": True,
    "layers": [64, 0.1],
}


def _markdown_table(markdown: str) -> dict[str, str]:
    """The hyperparameter table's cells, read back from the Markdown escaping."""
    section = markdown[markdown.index("## Search space and hyperparameters") :]
    lines = section[section.index("| parameter | value |") :].split("\n\n")[0].splitlines()
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines[2:]]
    return {_unmd(k): _unmd(v) for k, v in cells}


def _unmd(cell: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", cell.strip()))


def _html_table(page: str) -> dict[str, str]:
    section = page[page.index("<h2>Search space and hyperparameters</h2>") :]
    section = section[: section.index("<h2>", 1)]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", section)
    return {html.unescape(k): html.unescape(v) for k, v in rows}


def _printed_id(text: str) -> str:
    found = re.search(r"hyperparameter set(?:\*\*|</b>): ([0-9a-f]{64})", text)
    assert found is not None, text
    return found.group(1)


def _assert_reproduces(table: dict[str, str], text: str) -> None:
    parsed = {k: json.loads(v) for k, v in table.items()}
    assert parsed == PARAMS
    assert all(type(parsed[k]) is type(v) for k, v in PARAMS.items())
    assert hyperparameter_set_id(parsed) == _printed_id(text)


def test_report_hyperparameter_values_reproduce_the_set_id_it_prints(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        meta = dataclasses.replace(trained[1].metadata, hyperparameters=PARAMS)
        row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow")
        assert row.hyperparameter_set_id == hyperparameter_set_id(PARAMS)
        report = build_report(daemon.store, daemon.config, MODEL, row.version)
        markdown, page = report.markdown(), report.html()
        assert _printed_id(markdown) == row.hyperparameter_set_id
        _assert_reproduces(_markdown_table(markdown), markdown)
        _assert_reproduces(_html_table(page), page)
        assert "| gb_learning_rate | 0.13057685492239668 |" in markdown
    finally:
        daemon.close()


def test_promotion_copy_of_the_report_reproduces_the_set(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The copy under ``reports/`` an approver reads is the same document."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        meta = dataclasses.replace(trained[1].metadata, hyperparameters=PARAMS)
        row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow")
        daemon.store.promote(MODEL, row.version, actor="alice", reason="won in shadow")
        md_path, html_path = write_report(daemon.store, daemon.config, MODEL, row.version)
        markdown = md_path.read_text(encoding="utf-8")
        page = html_path.read_text(encoding="utf-8")
        _assert_reproduces(_markdown_table(markdown), markdown)
        _assert_reproduces(_html_table(page), page)
    finally:
        daemon.close()


def test_scores_elsewhere_in_the_report_stay_rounded() -> None:
    """Only the hyperparameter table is exact: other figures keep ``.6g``."""
    from tunewatch._report_document import fmt

    assert fmt(0.13057685492239668) == "0.130577"
