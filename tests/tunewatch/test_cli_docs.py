"""Every command and long option of the CLI is named in the README: ``register
--hyperparameters`` (what safe ranges are checked against), ``--dataset-version`` and
``demo --seed`` existed and were documented nowhere."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tunewatch._cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _options(parser: argparse.ArgumentParser, command: str = "") -> list[tuple[str, str]]:
    """``(command, --option)`` of every long option, subcommands' too."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, name))
                found.extend(_options(sub, name))
        elif not isinstance(action, argparse._HelpAction):
            found.extend((command, o) for o in action.option_strings if o.startswith("--"))
    return found


def test_every_command_and_long_option_is_named_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("tunewatch serve [") :]
    block = block[: block.index("```")]  # the CLI section's commands

    def named(word: str, where: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", where) is not None

    missing = [
        option if option == command else f"{command} {option}".strip()
        for command, option in _options(build_parser())
        if not named(option, block if option == command else text)
    ]
    assert missing == []
