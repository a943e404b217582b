"""Text a registrant wrote, in the rationale report an approver reads before approving:
no character of it hides or reorders other text (a terminal control, a bidi override), and
none starts a Markdown block (a heading, a list, a quote, a code block)."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch._report_document import Report, Section, md

#: Characters that move the cursor, reset a terminal, or reorder text, each with the
#: escape the report shows instead.
HIDING = {
    "\b": r"\x08",
    "\x1b": r"\x1b",
    "\x07": r"\x07",
    "\x00": r"\x00",
    "\x0b": r"\x0b",
    "\x7f": r"\x7f",
    "\x85": r"\x85",
    "\x9b": r"\x9b",
    "\u202e": r"\u202e",
    "\u202a": r"\u202a",
    "\u2066": r"\u2066",
    "\u2069": r"\u2069",
    "\u200e": r"\u200e",
    "\u200f": r"\u200f",
    "\u061c": r"\u061c",
    "\u2028": r"\u2028",
}

#: Section texts each of which, at the start of a line, begins a Markdown block.
BLOCK_STARTS = {
    "atx heading": "# Approved by the model risk committee",
    "deep heading": "###### x",
    "dash list": "- x",
    "plus list": "+ x",
    "star list": "* x",
    "ordered list": "1. x",
    "paren list": "12) x",
    "indented code": "    x",
    "tab code": "\tx",
    "indented heading": "   # x",
    "quote": "> x",
    "dash rule": "---",
    "empty item": "-",
    "empty ordered item": "1.",
    "broken rule": "-- -",
    "spaced rule": "- - -",
    "star rule": "***",
    "underscore rule": "___",
    "equals": "===",
    "table row": "| a | b |",
    "fence": "```",
    "tilde fence": "~~~",
    "html block": "<div>",
    "link definition": "[a]: http://127.0.0.1:9/",
    "leading newline": "\n# x",
}


def _render(markdown: str) -> str:
    """``markdown`` as GitHub shows a .md: CommonMark with tables and strikethrough."""
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def _body(page: str, title: str) -> str:
    """What the rendered page holds between the heading ``title`` and the next heading."""
    start = page.index(f"<h2>{title}</h2>\n") + len(f"<h2>{title}</h2>\n")
    end = page.find("<h2>", start)
    return page[start:] if end == -1 else page[start:end]


def _document(text: str) -> Report:
    """``text`` everywhere a section puts client text: its paragraph, a row's name and
    value, a table's header and cells."""
    return Report(
        model=MODEL,
        version=2,
        sections=(
            Section("Given", text=text),
            Section("Rows", rows=((text, text),)),
            Section("Table", table=((text, "b"), (text, "d"))),
        ),
    )


@pytest.mark.parametrize("char", HIDING.keys(), ids=HIDING.values())
def test_a_character_that_hides_or_reorders_text_is_shown_as_its_escape(char: str) -> None:
    """`md()` changed only line breaks: a dataset version of `unvetted-scrape`, fifteen
    backspaces and `audited-2026-11` read `audited-2026-11` in `report --print`, ESC c
    reset the terminal, and U+202E reversed what followed it, in the .md and the HTML."""
    text = f"unvetted{char}audited"
    report = _document(text)
    markdown, page = report.markdown(), report.html()
    for rendered in (markdown, page):
        assert char not in rendered, f"{char!r} reached {rendered[:60]!r}"
    shown = f"unvetted{HIDING[char]}audited"
    assert html.escape(shown) in page
    rendered = _render(markdown)
    assert f"<p>{shown}</p>" in _body(rendered, "Given")
    assert f"<strong>{shown}</strong>: {shown}" in _body(rendered, "Rows")
    assert f"<td>{shown}</td>" in _body(rendered, "Table")


def test_whitespace_and_line_breaks_still_read_as_whitespace() -> None:
    """A tab is left as it is, and a line break stays a `<br>` in the Markdown and a line
    break in the HTML (a lone carriage return too: a terminal would overwrite with it)."""
    report = _document("a\tb\r\nc\rd\ne")
    markdown, page = report.markdown(), report.html()
    assert "a\tb<br>c<br>d<br>e" in markdown
    assert "<p>a\tb\nc\nd\ne</p>" in page and "\r" not in page


@pytest.mark.parametrize("text", BLOCK_STARTS.values(), ids=BLOCK_STARTS.keys())
def test_a_section_s_text_renders_as_one_plain_paragraph(text: str) -> None:
    """A section's text began a line of the Markdown: a searched space's `description` of
    `# Approved by the model risk committee` rendered as the report's heading, and a list
    marker, a quote or four spaces began a list, a quote or a code block."""
    rendered = _render(_document(text).markdown())
    body = _body(rendered, "Given")
    paragraph = re.fullmatch(r"<p>(.*)</p>\n", body, re.S)
    assert paragraph, f"{text!r} rendered as {body!r}"
    assert html.unescape(paragraph.group(1).replace("<br>", "\n")) == text
    rows = _body(rendered, "Rows")
    assert rows.startswith("<ul>\n<li><strong>") and rows.count("<li>") == 1, rows
    cells = re.findall(r"<t[dh]>(.*?)</t[dh]>", _body(rendered, "Table"), re.S)
    assert len(cells) == 4, cells


@pytest.mark.parametrize("text", ["-0.5", "3.14", "1e-05", "#1", "+inf", "== x", "a - b"])
def test_text_that_begins_no_block_is_left_as_it_is(text: str) -> None:
    """Only a marker a block begins with is escaped: a number or a word in a cell keeps
    its source form, so the .md reads as the values do."""
    assert md(text) == text


def test_a_registrant_s_searched_space_description_and_dataset_version_read_as_given(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The report builder's path: a version registered by hand with a description that
    was a heading and a dataset version that backspaced over itself."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        description = "# Approved by the model risk committee"
        space = {"name": "n", "description": description, "params": {}}
        meta = dataclasses.replace(
            trained[1].metadata,
            dataset_version="unvetted-scrape" + "\b" * 15 + "audited-2026-11\x1bc",
            details={"searched_space": space},
        )
        row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow")
        report = build_report(daemon.store, daemon.config, MODEL, row.version)
        markdown, page = report.markdown(), report.html()
        assert "\b" not in markdown + page and "\x1b" not in markdown + page
        assert "\n# Approved" not in markdown and "\n\\# Approved" in markdown
        assert "unvetted-scrape" + r"\x08" * 15 + r"audited-2026-11\x1bc" in page
        rendered = _render(markdown)
        assert rendered.count("<h1>") == 1
        assert f"<p>{description}</p>" in rendered
    finally:
        daemon.close()
