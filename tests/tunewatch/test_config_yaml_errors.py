"""A YAML syntax error in a configuration file is reported by its line, column and what
was wrong, never by the text of the line: PyYAML's own message quotes ~75 characters of
it, so a mistyped ``store.url`` printed its database password on stderr (the CLI's, and
``serve``'s at start-up). Search-space files are read, and their errors worded, the same."""

from __future__ import annotations

import traceback
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from retune import SearchSpaceError
from retune.space import load_search_space, read_yaml
from tunewatch._cli import main
from tunewatch._config import load_config
from tunewatch._errors import ConfigError

SECRET = "S3cr3t"

#: A config with a YAML syntax error on its password's line, and what its message says.
BROKEN = {
    "unknown-escape": (
        "store:\n"
        '  url: "postgresql+psycopg://review_secrets:S3cr3t\\qxyz@127.0.0.1:5432/review_secrets"\n',
        "line 2, column 52: found unknown escape character 'q' "
        "(while scanning a double-quoted scalar at line 2, column 8)",
    ),
    "trailing-junk": (
        'store:\n  url: "postgresql+psycopg://tw:S3cr3t-xyz@db/tw"x\n',
        "line 2, column 50: expected <block end>, but found '<scalar>' "
        "(while parsing a block mapping at line 2, column 3)",
    ),
    "unclosed-quote": (
        'store:\n  url: "postgresql+psycopg://tw:S3cr3t-xyz@db/tw\n',
        "line 3, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2, column 8)",
    ),
    "int-tag": (
        "store:\n  url: !!int postgresql+psycopg://tw:S3cr3t-xyz@db/tw\n",
        "line 2, column 8: a value tagged `!!int` must be an integer",
    ),
    "control-character": (
        "store:\n  url: postgresql+psycopg://tw:S3cr3t\x01xyz@db/tw\n",
        "line 2, column 38: unacceptable character #x0001: special characters are not allowed",
    ),
    "float-tag": (
        "store:\n  url: !!float postgresql+psycopg://tw:S3cr3t-xyz@db/tw\n",
        "line 2, column 8: a value tagged `!!float` must be a number",
    ),
    "bool-tag": (
        "store:\n  url: !!bool postgresql+psycopg://tw:S3cr3t-xyz@db/tw\n",
        "line 2, column 8: a value tagged `!!bool` must be true or false",
    ),
    "timestamp-tag": (
        "store:\n  url: !!timestamp postgresql+psycopg://tw:S3cr3t-xyz@db/tw\n",
        "line 2, column 8: a value tagged `!!timestamp` must be a date, or a date and time",
    ),
    # PyYAML reads an unquoted date as a timestamp, and raised datetime's ValueError for
    # one that never was: a traceback, exit 1, from every command
    "leap-second": (
        "models:\n  - name: m\n    comparison:\n      split:\n"
        "        start: 2016-12-31T23:59:60Z\n",
        "line 5, column 16: no such date and time: second must be in 0..59",
    ),
    "february-30": (
        "split: {challenger: 2, percent: 10, start: 2026-02-30T10:00:00+05:30}\n",
        "line 1, column 44: no such date and time: day is out of range for month",
    ),
    # datetime read an offset's minutes past 59 as hours: +05:99 was +06:39
    "offset-minutes": (
        "split: {challenger: 2, percent: 10, start: 2026-06-01T10:00:00+05:99}\n",
        "line 1, column 44: a time's offset must be hours 00-23 and minutes 00-59",
    ),
    "hour-24-key": (
        "windows:\n  2026-06-01 24:00:00: closed\n",
        "line 2, column 3: no such date and time: hour must be in 0..23",
    ),
}


@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_yaml_error_names_line_column_and_problem_not_the_line_s_text(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.message == f"{path}: not valid YAML: {message}"
    # nor in a traceback (a job's log), the YAML error it was raised from included
    assert SECRET not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("command", ["models", "serve"])
@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_the_command_line_prints_a_yaml_error_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, text: str, message: str
) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(text)
    assert main(["--config", str(path), command]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert SECRET not in captured.err + captured.out


def test_a_search_space_s_yaml_error_is_worded_as_a_config_s(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text('name: t\nparams:\n  C: {type: float, low: "0.1\\q", high: 1.0}\n')
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert str(info.value) == (
        f"cannot read search space {str(path)!r}: line 3, column 30: found unknown escape "
        "character 'q' (while scanning a double-quoted scalar at line 3, column 25)"
    )


def test_a_search_space_s_impossible_date_is_worded_as_a_config_s(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("name: t\nparams:\n  C: {type: float, low: 2026-02-30, high: 1.0}\n")
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert str(info.value) == (
        f"cannot read search space {str(path)!r}: line 3, column 25: no such date and time: "
        "day is out of range for month"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("at: 2016-12-31T23:59:59Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (
            "at: 2026-02-28T10:00:00.5+05:30",
            datetime(2026, 2, 28, 10, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=5.5))),
        ),
        ("at: 2024-02-29", date(2024, 2, 29)),
    ],
    ids=["utc", "offset", "leap-day"],
)
def test_a_date_and_time_that_exists_reads_as_one(text: str, value: date) -> None:
    assert read_yaml(text) == {"at": value}
