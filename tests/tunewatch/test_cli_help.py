"""Every command and subcommand says what it does in ``--help``."""

from __future__ import annotations

import argparse

from tunewatch._cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{path} {name}", helps.get(name)))
                found.extend(_commands(sub, f"{path} {name}"))
    return found


def test_every_command_and_subcommand_has_help_text() -> None:
    commands = _commands(build_parser(), "tunewatch")
    assert len(commands) > 20
    assert "tunewatch tokens revoke" in dict(commands)
    assert [name for name, text in commands if not text] == []
