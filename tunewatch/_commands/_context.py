"""What every command takes from its parsed arguments: the config, the actor the audit
log names, and the registry; and what a listing says when it held rows back."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, load_config
from tunewatch._errors import TunewatchError
from tunewatch._registry import Registry

if TYPE_CHECKING:
    from tunewatch.store import Store


def config_of(args: argparse.Namespace) -> Config:
    """``--config``, else ``$TUNEWATCH_CONFIG``, else the built-in defaults. An empty one
    is refused: ``--config ""`` read as the defaults (a new store made and migrated under
    the working directory), an empty variable as the working directory."""
    if args.config is not None:
        if not args.config:
            raise TunewatchError(
                "`--config` must name a configuration file, got an empty value (leave the "
                "flag out for $TUNEWATCH_CONFIG or the built-in defaults)",
                code="invalid_argument",
            )
        return load_config(args.config)
    path = os.environ.get("TUNEWATCH_CONFIG")
    if path == "":
        raise TunewatchError(
            "$TUNEWATCH_CONFIG is set but empty: name a configuration file in it, or unset "
            "it for the built-in defaults",
            code="invalid_argument",
        )
    return load_config(path)


def actor_argument(text: str) -> str:
    """An argparse type (``--actor``): a person's name the audit log can hold as the actor
    (:func:`~tunewatch.store._tokens.person_name_problem`), else a usage error (checked
    before the command writes anything)."""
    from tunewatch.store import MAX_ACTOR_LENGTH, valid_actor
    from tunewatch.store._tokens import person_name_problem

    if not valid_actor(text):
        raise argparse.ArgumentTypeError(
            f"`--actor` must be 1 to {MAX_ACTOR_LENGTH} printable characters, got "
            f"{len(text)} characters: {text!r:.60}"
        )
    problem = person_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"`--actor` {problem}, got {text!r:.60}")
    return text


def actor_of(args: argparse.Namespace) -> str:
    """``--actor`` (checked by the parser), else ``$USER`` if it can name the actor as
    ``--actor`` can."""
    from tunewatch.store import MAX_ACTOR_LENGTH, valid_actor
    from tunewatch.store._tokens import person_name_problem

    if args.actor:
        return str(args.actor)
    user = os.environ.get("USER") or "cli"
    if not valid_actor(user):
        raise TunewatchError(
            f"$USER must be 1 to {MAX_ACTOR_LENGTH} printable characters to name the actor, "
            f"got {len(user)} characters: {user!r:.60}; pass --actor",
            code="invalid_argument",
        )
    problem = person_name_problem(user)
    if problem is not None:  # the image's user is `tunewatch`, the daemon's own actor
        raise TunewatchError(
            f"$USER names the actor, and {problem}, got {user!r:.60}; pass --actor",
            code="invalid_argument",
        )
    return user


def registry_of(config: Config, store: Store) -> Registry:
    return Registry(
        store,
        ArtefactStore(config.artefact_dir, store=store),
        memory_limit_bytes=config.scoring.candidate_memory_limit_mb * 1024 * 1024,
        timeout_s=config.scoring.candidate_timeout_s,
        regulated_models=[m.name for m in config.models if m.regulated],
        check_features=config.check_registered_model,
    )


def say_held_back(shown: str, *, see: str = "use --limit") -> None:
    """Say on stderr that a listing printed ``shown`` and older rows exist, and where to
    ``see`` them: a listing that stopped at its limit without a word made the rows left out
    read as none. The caller fetches one row past its limit to know."""
    print(f"tunewatch: {shown}; older ones exist: {see}", file=sys.stderr)


def next_page(cursor: int) -> str:
    """Where a listing with ``--before-id`` says its older rows are: the cursor of the next
    older page, the id of the last row it printed. ``--limit`` alone stopped at 10,000."""
    return f"--before-id {cursor} lists them"
