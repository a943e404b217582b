"""Stored text as a line of the CLI's output shows it. Reasons, actors and trigger text
reach the store from request bodies unchecked for control characters, and a listing that
printed them raw let a client write terminal escape sequences (a window title, an erased
line) and forge rows of its own below."""

from __future__ import annotations


def shown(text: object) -> str:
    """``text`` (as ``str`` makes it) as a line of output shows it: as it is when
    printable, else quoted with its control characters escaped, so that no stored text
    (a reason sent to the API, a name from before names had to be printable) writes an
    escape sequence or starts a line of its own."""
    line = str(text)
    return line if line.isprintable() else repr(line)
