"""A rationale report as a document: sections of rows and tables, rendered to Markdown
(every value escaped, so a hyperparameter cannot embed a link or an image) and HTML."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from tunewatch.store import canonical_json

Row = tuple[str, Any]

#: What a table of :func:`exact` values says of them (the hyperparameter table).
EXACT_VALUES = (
    "Each value is shown as the canonical JSON the hyperparameter set id is the sha256 of "
    "(a string in quotes, a float in full): the values reproduce the set exactly."
)


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: tuple[Row, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()  # first tuple: the header
    text: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    model: str
    version: int
    sections: tuple[Section, ...]

    @property
    def title(self) -> str:
        return f"{self.model} version {self.version}: rationale"

    def markdown(self) -> str:
        out = [f"# {md(self.title)}", ""]
        for s in self.sections:
            out += [f"## {md(s.title)}", ""]
            if s.text:
                out += [md(s.text), ""]
            for key, value in s.rows:
                out.append(f"- **{md(key)}**: {md(fmt(value))}")
            if s.rows:
                out.append("")
            if s.table:
                header, *body = s.table
                out.append("| " + " | ".join(md(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(md(fmt(c)) for c in row) + " |" for row in body]
                out.append("")
        return _encodable("\n".join(out))

    def html(self) -> str:
        def e(text: str) -> str:
            return html.escape(_HTML_HIDING.sub(_html_visible, text))

        parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{e(self.title)}"
            "</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            "</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for s in self.sections:
            parts.append(f"<h2>{e(s.title)}</h2>")
            if s.text:
                parts.append(f"<p>{e(s.text)}</p>")
            if s.rows:
                parts.append(
                    "<ul>"
                    + "".join(f"<li><b>{e(k)}</b>: {e(fmt(v))}</li>" for k, v in s.rows)
                    + "</ul>"
                )
            if s.table:
                header, *body = s.table
                parts.append(
                    "<table><tr>"
                    + "".join(f"<th>{e(h)}</th>" for h in header)
                    + "</tr>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{e(fmt(c))}</td>" for c in row) + "</tr>"
                        for row in body
                    )
                    + "</table>"
                )
        parts.append("</body></html>")
        return _encodable("".join(parts))


def _encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode as its escape: a lone surrogate (``\\udcff``)
    from a reason the CLI stored before it refused argv's undecodable bytes. A report
    explains a change made: written, served or printed, it must not fail on one."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: What moves a terminal's cursor, rings it, runs its commands (ESC c resets it) or
#: reorders the text around it, so that a report printed or viewed reads other than what
#: the store holds: C0 and C1 controls and DEL (a tab and line breaks aside: each format
#: keeps them as whitespace), the bidi marks, embeddings, overrides and isolates, and
#: the Unicode line and paragraph separators.
_HIDING = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_HTML_HIDING = re.compile(rf"\r\n?|[{_HIDING}]")


def _visible(char: str) -> str:
    """``char`` as the escape Python writes for it: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _html_visible(match: re.Match[str]) -> str:
    char = match.group()
    # a lone carriage return would move a terminal's cursor back over the line; HTML
    # reads it as a line break, as it is here
    return "\n" if char[0] == "\r" else _visible(char)


_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: What may begin Markdown syntax within a line (CommonMark and GFM): HTML, autolinks and
#: entities (as entities: every flavour reads them), and, backslash-escaped, the backslash,
#: links, images and footnotes, emphasis, code, strikethrough, math and table cells. An
#: ``_`` between two letters or digits is left as it is: it never delimits emphasis.
_MD_SPECIAL = r"[&<>\\`*\[\]~$|]|(?<![^\W_])_|_(?![^\W_])"
_MD_INLINE = re.compile(rf"(\r\n?|\n)|([{_HIDING}])|{_MD_SPECIAL}")
#: What else begins a block at the start of a line, once :data:`_MD_INLINE` has escaped a
#: line's ``* > | _ ` ~ < [``: indentation (a code block, or up to three spaces before a
#: marker), a heading's ``#``, a list's ``-`` or ``+`` and an ordered list's number and
#: ``.`` or ``)`` (each before a space or nothing), a line of a rule's ``-`` or of a
#: heading underline's ``=``. Only these: ``-0.5`` or ``3.14`` in a cell stays as it is.
_MD_BLOCK_START = re.compile(
    r"(?P<indent>[ \t]+)|(?P<number>[0-9]+)[.)](?=[ \t]|\Z)"
    r"|(?:#{1,6}|[-+])(?=[ \t]|\Z)|-[- \t]*\Z|=+[ \t]*\Z"
)


def _md_escape(match: re.Match[str]) -> str:
    line_break, hiding = match.groups()
    if line_break:
        return "<br>"
    if hiding:
        return "\\" + _visible(hiding)  # its backslash escaped, as every backslash is
    char = match.group()
    return _MD_ENTITIES.get(char) or "\\" + char


def md(text: str) -> str:
    """``text`` as one line of Markdown that reads as ``text`` wherever the line puts it,
    at its start too: nothing in it makes a link, an image, raw HTML or markup
    (:data:`_MD_INLINE`; a backslash stays one), nothing begins a block
    (:data:`_MD_BLOCK_START`; leading spaces and tabs are character references), line
    breaks are ``<br>`` (one ends a table row or a list item), and a control or bidi
    character is shown as its escape (:data:`_HIDING`)."""
    line = _MD_INLINE.sub(_md_escape, text)
    start = _MD_BLOCK_START.match(line)
    if start is None:
        return line
    if indent := start["indent"]:
        return "".join(f"&#{ord(c)};" for c in indent) + line[start.end() :]
    if number := start["number"]:
        return number + "\\" + line[len(number) :]  # `\1.` would show its backslash
    return "\\" + line


def fmt(value: Any) -> str:
    """``value`` for reading: a float to 6 significant digits, a list joined, ``None`` as
    a dash. For a figure, not for a value an auditor must reproduce (:func:`exact`)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) if value else "—"
    return str(value)


def exact(value: Any) -> str:
    """``value`` as the canonical JSON a hyperparameter-set id is the sha256 of
    (:func:`tunewatch.store.canonical_json`): a float's shortest round-tripping form, a
    string in quotes, ``true``, ``null``. ``json.loads`` of it gives ``value`` back, so
    the values shown hash to the set id the report prints."""
    return canonical_json(value)
