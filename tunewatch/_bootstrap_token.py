"""The admin token an operator hands the daemon in ``TUNEWATCH_ADMIN_TOKEN``.

The daemon stores it at start (:func:`ensure_bootstrap_token`) so that a new deployment
can be driven before any token was created with ``tunewatch tokens create``; changing the
variable rotates it. Its log lines keep the daemon's logger name, which operators filter on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tunewatch._auth import hash_token
from tunewatch._config import ENV_ADMIN_TOKEN
from tunewatch._errors import ConfigError, ConflictError
from tunewatch.store import Store
from tunewatch.store._governance import BOOTSTRAP_NAME, BOOTSTRAP_TOKEN_NAME
from tunewatch.store._tokens import reads_as_bootstrap, reads_as_daemon_actor

logger = logging.getLogger("tunewatch._daemon")


#: The shortest ``TUNEWATCH_ADMIN_TOKEN`` taken: an admin token, stored as an unsalted
#: sha256 and tried without a rate limit, must not be guessable (``tunewatch tokens
#: create`` makes ``tw_`` and 43 URL-safe characters).
MIN_ADMIN_TOKEN_LENGTH = 32


def ensure_bootstrap_token(store: Store, env: Mapping[str, str]) -> None:
    """Store the admin token named by ``TUNEWATCH_ADMIN_TOKEN`` unless it is stored already.

    Changing the variable rotates the token: every earlier bootstrap token is revoked
    (``bootstrap-admin``, ``bootstrap-admin-2`` …), all names of one person to the rule that
    a requester may not decide their own approval. A revoked token is refused rather than
    brought back to life. Replicas starting together may race through this: a revocation
    or the new token a racing replica stored first counts as done. A token that is not
    printable ASCII, which no ``Authorization`` header can carry, or that is shorter than
    ``MIN_ADMIN_TOKEN_LENGTH`` characters, is refused (``ConfigError``) before the store
    is touched.
    """
    # stripped as a bearer token is: a secret file's trailing newline hashed with it made
    # a token no Authorization header could match
    value = env.get(ENV_ADMIN_TOKEN) or ""
    token = value.strip()
    if not token:
        return
    _check_header_safe(value, lead=len(value) - len(value.lstrip()))
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        # never the value: the message goes to the log and the terminal
        stored = store.token_by_hash(hash_token(token))
        # stored before the rule: unsetting the variable would leave it valid
        still = (
            ""
            if stored is None
            else f"; the token {stored.name!r} this value created is still active: a new "
            f"{ENV_ADMIN_TOKEN} revokes it (unsetting the variable does not), as does "
            f"`tunewatch tokens revoke {stored.name}`"
        )
        raise ConfigError(
            f"{ENV_ADMIN_TOKEN} must be at least {MIN_ADMIN_TOKEN_LENGTH} characters (without "
            f"surrounding whitespace), got {len(token)}: an admin token must not be "
            "guessable; make one with "
            f"python -c 'import secrets; print(secrets.token_urlsafe(32))'{still}"
        )
    digest = hash_token(token)
    if store.token_by_hash(digest) is not None:
        return
    tokens = store.list_tokens()
    ours = [t for t in tokens if t.token_hash == digest]
    if any(t.revoked_at is None for t in ours):
        return  # a replica starting with us stored it since we looked
    if ours:
        raise ConfigError(
            f"{ENV_ADMIN_TOKEN} holds a token that was revoked; set a new one to rotate",
            code="token_revoked",
        )
    names = {t.name for t in tokens}
    for t in tokens:
        if t.revoked_at is None and BOOTSTRAP_NAME.fullmatch(t.name):
            try:
                store.revoke_token(
                    t.name, actor="system", details={"reason": f"{ENV_ADMIN_TOKEN} changed"}
                )
            except ConflictError as exc:
                if exc.code != "token_revoked":
                    raise
                continue  # a replica starting with us revoked it (and audited that)
            logger.warning("%s changed: revoked the admin token %r", ENV_ADMIN_TOKEN, t.name)
    name, suffix = BOOTSTRAP_TOKEN_NAME, 1
    while name in names:
        suffix += 1
        name = f"{BOOTSTRAP_TOKEN_NAME}-{suffix}"
    try:
        store.add_token(  # only this path may take the bootstrap admin's names
            name=name,
            role="admin",
            token_hash=digest,
            actor="system",
            details={"source": ENV_ADMIN_TOKEN},
            bootstrap=True,
        )
    except ConflictError:
        if store.token_by_hash(digest) is not None:
            return  # a replica starting with us stored it first (and audited that)
        raise


def warn_of_bootstrap_lookalikes(store: Store) -> None:
    """Name the active tokens stored under a name that reads as the bootstrap admin's
    (``Bootstrap-Admin-7``): refused since, one stored before still works, as another
    person to the rule that a requester may not decide their own approval. So are those
    under a name that reads as an actor the daemon itself audits as (``tunewatch``,
    ``System``, ``job:7``): refused since, what is done with one stored before reads in
    the audit log as done by the daemon."""
    names = [t.name for t in store.list_tokens() if t.revoked_at is None]
    daemon_like = [name for name in names if reads_as_daemon_actor(name)]
    if daemon_like:
        logger.warning(
            "active tokens %s have names that read as the daemon's own actors in the audit "
            "log: what is done with them reads as done by the daemon; such names are refused "
            "now: revoke each with `tunewatch tokens revoke NAME` and create it again under "
            "another name",
            ", ".join(map(repr, daemon_like)),
        )
    lookalikes = [name for name in names if reads_as_bootstrap(name)]
    if lookalikes:
        logger.warning(
            "active tokens %s have names that read as the bootstrap admin's (%r) but are "
            "other people's; such names are refused now: revoke each with `tunewatch tokens "
            "revoke NAME` and create it again under another name",
            ", ".join(map(repr, lookalikes)),
            BOOTSTRAP_TOKEN_NAME,
        )


def _check_header_safe(value: str, *, lead: int) -> None:
    """Refuse a token an ``Authorization`` header cannot carry: headers are Latin-1, and
    ``tw_€uro…`` was stored only for every sign-in with it to fail. The offending
    character is named by its code point and its position in the variable's value (its
    first ``lead`` characters are the whitespace stripped off), never the token."""
    for at, char in enumerate(value.strip()):
        if not " " <= char <= "~":
            raise ConfigError(
                f"{ENV_ADMIN_TOKEN} must be printable ASCII (as an Authorization header "
                f"carries it), got U+{ord(char):04X} at position {lead + at + 1}"
            )
