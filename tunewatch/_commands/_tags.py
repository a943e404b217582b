"""``tunewatch tag``: set and delete a version's key/value tags, as ``PUT`` and ``DELETE
/v1/models/{m}/versions/{v}/tags/{key}`` do, each change audited under the CLI's actor.

Every tag is checked against the convention (:mod:`tunewatch._tag_rules`) while the
arguments are parsed, so a command holding one bad tag is a usage error that writes
none. The changes are then written one a transaction, in the order given (sets, then
deletes): one the store refuses (a missing tag, the 50th) stops the command, the
changes before it kept, each with its audit entry. The version's rationale report file
is rewritten once the command changed a tag, also when a later change is refused (as a
governance command rewrites it: it listed the tags of the last promotion)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tunewatch._tag_rules import TagRuleError, check_key, check_tag

from ._context import actor_of, config_of
from ._shown import shown


def tag_assignment(text: str) -> tuple[str, str]:
    """An argparse type: ``KEY=VALUE`` (the value may hold ``=``, or be empty), within the
    convention, else a usage error."""
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"a tag must be written KEY=VALUE, got {text[:80]!r}")
    try:
        check_tag(key, value)
    except TagRuleError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc
    return key, value


def tag_key(text: str) -> str:
    """An argparse type: a tag's key (``--delete``) within the convention."""
    try:
        check_key(text)
    except TagRuleError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc
    return text


def add_tag_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    model: Callable[[str], str],
    version: Callable[[str], int],
) -> None:
    """Add ``tag`` to the CLI's subcommands (``model`` and ``version``: the CLI's types)."""
    p = sub.add_parser(
        "tag", help="set (KEY=VALUE) or delete (--delete KEY) a version's tags, audited"
    )
    p.add_argument("model", type=model)
    p.add_argument("version", type=version)
    p.add_argument("tags", nargs="*", type=tag_assignment, metavar="KEY=VALUE")
    p.add_argument("--delete", nargs="+", action="extend", default=[], type=tag_key, metavar="KEY")
    p.set_defaults(func=cmd_tag, parser=p)


def cmd_tag(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store
    from tunewatch._report import refresh_reports

    if not args.tags and not args.delete:
        args.parser.error("name a tag to set, KEY=VALUE or --delete KEY")
    actor = actor_of(args)
    config = config_of(args)
    store = open_store(config, create=False)
    changed_any = False
    where = f"{shown(args.model)} v{args.version}"
    try:
        for key, value in args.tags:
            changed = store.set_version_tag(args.model, args.version, key, value, actor=actor)
            changed_any |= changed
            print(f"{where}: {'set' if changed else 'unchanged'} {key}={shown(value)}")
        for key in args.delete:
            was = store.delete_version_tag(args.model, args.version, key, actor=actor)
            changed_any = True
            print(f"{where}: deleted {key} (was {shown(was)})")
    finally:
        if changed_any:  # the changes made stand, those before a refused one too
            refresh_reports(store, config, args.model, (args.version,))
        store.close()
    return 0
