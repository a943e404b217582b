"""A config error names its key path with the file's own keys, and a key holding control
characters is shown escaped: ``"x\\x1b]0;pwned\\x07\\x1b[31m\\nmodels.0.task: Input should
be fine": 1`` wrote a terminal escape sequence and a second, forged error line on
stderr, while the value beside it was shown quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch import ConfigError, build_config, load_config
from tunewatch._cli import main

FORGED = "models.0.task: Input should be fine"
HOSTILE = f"x\x1b]0;pwned\x07\x1b[31m\n{FORGED}"


def _errors(raw: dict[str, object]) -> list[str]:
    """The error lines of ``raw``'s config error, each checked to hold no control
    character."""
    with pytest.raises(ConfigError) as info:
        build_config(raw, env={})
    head, *lines = info.value.message.split("\n")
    assert head == "invalid configuration in <config>:"
    for line in lines:
        assert line.isprintable(), repr(line)
    return [line.strip() for line in lines]


def test_a_key_with_control_characters_is_shown_escaped_on_one_line() -> None:
    [line] = _errors({HOSTILE: 1})
    assert line == f"{HOSTILE!r}: Extra inputs are not permitted, got 1"


def test_a_nested_key_with_control_characters_is_escaped_and_the_rest_of_the_path_kept() -> None:
    raw = {"models": [{"name": "m", "task": "binary", "tuning": {"x\r\ny": 1}}]}
    assert _errors(raw) == [r"models.0.tuning.'x\r\ny': Extra inputs are not permitted, got 1"]


def test_a_key_with_a_space_or_a_dot_is_quoted_and_a_plain_key_is_not() -> None:
    """``models.0.safe_ranges.a b.lo`` read as a path of other keys; the union member
    pydantic names (``list[list[float]]``) stays as it is."""
    raw = {
        "models": [
            {
                "name": "m",
                "task": "binary",
                "safe_ranges": {"a b": {"lo": 1}, "C": {"lo": 1}},
                "objective": {"name": "logloss", "params": {"cost_matrix": "x"}},
                "a.b": 1,
            }
        ]
    }
    paths = [line.split(": ", 1)[0] for line in _errors(raw)]
    assert "models.0.safe_ranges.'a b'.lo" in paths
    assert "models.0.safe_ranges.C.lo" in paths
    assert "models.0.'a.b'" in paths
    assert "models.0.objective.params.cost_matrix.list[list[float]]" in paths


def test_a_very_long_key_with_control_characters_is_shown_bounded() -> None:
    [line] = _errors({"\x1b" + "k" * 100_000: 1})
    assert len(line) < 400 and line.startswith(r"'\x1bkkk")


def test_the_cli_says_a_yaml_file_s_bad_key_on_one_line_of_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        'version: 1\n"x\\e]0;pwned\\a\\e[31m\\nmodels.0.task: Input should be fine": 1\n'
    )
    with pytest.raises(ConfigError):
        load_config(path, env={})
    capsys.readouterr()

    assert main(["--config", str(path), "models"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    [error] = [line for line in err.splitlines() if "Extra inputs" in line]
    assert error.endswith(f": {HOSTILE!r}: Extra inputs are not permitted, got 1")
    assert not any(line.strip().startswith(FORGED) for line in err.splitlines())
