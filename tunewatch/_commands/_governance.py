"""The registry and its governance: ``register``, ``promote``, ``approve``/``reject``,
``rollback``, ``approvals``, ``models``, and who may act and what they did (``tokens``,
``audit``)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import stat
import sys
from typing import TYPE_CHECKING

from tunewatch._auth import check_role, hash_token, new_token
from tunewatch._errors import TunewatchError
from tunewatch._json_text import json_integer, repeated_key
from tunewatch._reference import Reference
from tunewatch._registry import feature_names_from
from tunewatch._report import refresh_reports
from tunewatch._version_metadata import VersionMetadata

from ._context import actor_of, config_of, next_page, registry_of, say_held_back
from ._shown import shown

if TYPE_CHECKING:
    from tunewatch.store import ApprovalRow, AuditEntry, Store, TokenRow


def _hyperparameters(text: str | None) -> dict[str, object]:
    """``--hyperparameters``: a JSON object (none: ``{}``), read before anything opens."""
    if not text:
        return {}
    try:
        value = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_int=_integer
        )
    except RecursionError as exc:
        raise TunewatchError(
            "--hyperparameters is JSON nested too deeply", code="invalid_argument"
        ) from exc
    except ValueError as exc:  # before JSONDecodeError's own: an integer Python cannot read
        if isinstance(exc, json.JSONDecodeError):
            raise TunewatchError(
                f"--hyperparameters must be a JSON object, got text that is not JSON: {exc}",
                code="invalid_argument",
            ) from exc
        raise TunewatchError(
            "--hyperparameters holds a number of too many digits (Python reads 4,300)",
            code="invalid_argument",
        ) from exc
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        raise TunewatchError(
            f"--hyperparameters must be a JSON object, got {kind.get(type(value), 'a number')}: "
            f"{text:.60}",
            code="invalid_argument",
        )
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object of ``--hyperparameters``, refused when it holds a key twice, as the API
    refuses it (400 ``duplicate_key``): ``json`` kept the last value without a word."""
    twice = repeated_key(pairs)
    if twice is not None:
        raise TunewatchError(
            f"--hyperparameters holds the key {twice[:80]!r} twice", code="invalid_argument"
        )
    return dict(pairs)


def _integer(text: str) -> int | float:
    """An integer of ``--hyperparameters`` as the API reads one (:func:`json_integer`:
    the nearest float beyond 64 bits), refused beyond a float as the API refuses it."""
    try:
        return json_integer(text)
    except OverflowError:
        raise TunewatchError(
            f"--hyperparameters holds an integer of {len(text.lstrip('-'))} digits, beyond "
            "float64's range (about 1.8e308)",
            code="invalid_argument",
        ) from None


def _no_constant(name: str) -> object:
    raise TunewatchError(
        f"--hyperparameters must be JSON, and {name} is not (finite numbers only)",
        code="invalid_argument",
    )


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_input(path: str, name: str, limit: int) -> bytes:
    """The regular file at ``path`` (the argument ``name``), of at most ``limit`` bytes
    (``server.max_artefact_bytes``, as the API's uploads and bundle imports): it was read
    whole whatever it was, ``/dev/zero`` until a MemoryError traceback."""
    what = "the ONNX file" if name == "FILE" else "the reference snapshot (.npz)"
    try:
        mode = os.stat(path).st_mode  # before opening: a named pipe's open waits for a writer
        if not stat.S_ISREG(mode):
            kind = next((text for test, text in _KINDS if test(mode)), "not a file")
            raise TunewatchError(
                f"{name} {path} is not a regular file ({kind}): give {what}",
                code="invalid_argument",
            )
        with open(path, "rb") as f:
            data = f.read(limit + 1)
            size = max(len(data), os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise TunewatchError(
            f"cannot read {name} {path}: {exc.strerror}", code="invalid_argument"
        ) from exc
    if size > limit:
        raise TunewatchError(
            f"{name} {path} holds {size} bytes, more than `server.max_artefact_bytes` "
            f"({limit}): raise the setting to register it",
            code="invalid_argument",
        )
    return data


def cmd_register(args: argparse.Namespace) -> int:
    from tunewatch._approval_rules import check_champion_registration
    from tunewatch._open_store import open_store

    hyperparameters = _hyperparameters(args.hyperparameters)
    config = config_of(args)
    limit = config.server.max_artefact_bytes
    artefact = _read_input(args.file, "FILE", limit)  # before the store opens
    snapshot = None if args.reference is None else _read_input(args.reference, "--reference", limit)
    store = open_store(config)
    try:
        registry = registry_of(config, store)
        metadata = VersionMetadata(
            task=args.task,
            feature_names=feature_names_from(args.features),
            hyperparameters=hyperparameters,
            dataset_version=args.dataset_version,
        )
        if args.stage == "champion":
            check_champion_registration(
                store,
                config,
                args.model,
                task=args.task,
                regulated=None,
                hyperparameters=hyperparameters,
            )
        reference = None if snapshot is None else Reference.from_bytes(snapshot, max_bytes=limit)
        row = registry.register(
            args.model,
            artefact,
            metadata,
            actor=actor_of(args),
            stage=args.stage,
            reference=reference,
        )
    finally:
        store.close()
    print(
        f"registered {row.model} version {row.version} ({row.stage}), "
        f"sha256 {row.artefact_sha256[:12]}, hyperparameter set {row.hyperparameter_set_id[:12]}"
    )
    print("a running daemon loads it within scoring.refresh_s")
    return 0


#: ``tunewatch promote``'s exit status when it asked for an approval and promoted nothing
#: (yet): not 0, which a script (``tunewatch promote … && deploy``) read as promoted, nor 1
#: or 2, a failure or a refusal.
WAITS_FOR_APPROVER = 3


def cmd_promote(args: argparse.Namespace) -> int:
    from tunewatch._governance import promote
    from tunewatch._open_store import check_stored_models, open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        # a config naming the model in another case regulated nothing: promoted with no
        # approver (refused here as the daemon refuses to start on it)
        check_stored_models(config, store)
        # refused, nothing changed, when another champion than --champion serves
        # (`champion_changed`); the champion already is answered unchanged (a retry)
        outcome = promote(
            store,
            config,
            args.model,
            args.version,
            actor=actor_of(args),
            reason=args.reason,
            expected_champion=args.champion,
            audit_refusal=True,  # a refusal is audited, denied_promote
        )
        if outcome.champion is not None and not outcome.unchanged:  # as the API does
            replaced = () if outcome.previous is None else (outcome.previous.version,)
            refresh_reports(store, config, args.model, (outcome.champion.version, *replaced))
    finally:
        store.close()
    if outcome.approval is not None:
        a = outcome.approval
        print(
            f"promotion of {a.model} version {a.version} waits for an approver "
            f"(request {a.id}): {'; '.join(a.rules)}"
        )
        print(f"another person runs: tunewatch approve {a.id} --reason '...'")
        return WAITS_FOR_APPROVER
    assert outcome.champion is not None
    if outcome.unchanged:
        print(
            f"{outcome.champion.model} version {outcome.champion.version} already is "
            "champion: nothing changed"
        )
        return 0
    was = f" (was version {outcome.previous.version})" if outcome.previous else ""
    print(f"{outcome.champion.model} version {outcome.champion.version} is champion{was}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from tunewatch._governance import decide_approval
    from tunewatch._open_store import check_stored_models, open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        check_stored_models(config, store)  # as promote does: approving promotes
        decided, promoted = decide_approval(
            store,
            config,
            args.approval,
            approver=actor_of(args),
            approve=args.command == "approve",
            reason=args.reason,
            audit_refusal=True,  # a refusal is audited, denied_approve or denied_reject
        )
        if promoted is not None:
            versions = [row.version for row in promoted if row is not None]  # new, replaced
            refresh_reports(store, config, decided.model, versions)
    finally:
        store.close()
    if args.command == "approve" and promoted is None:  # not the approver's rejection
        print(
            f"approval {decided.id} closed unpromoted by {decided.decided_by} (stored as rejected)"
        )
    else:
        print(f"approval {decided.id} {decided.status} by {decided.decided_by}")
    if promoted is not None:
        print(f"{promoted[0].model} version {promoted[0].version} is champion")
    elif args.command == "approve":  # closed unpromoted: expired, or the champion changed since
        print(
            f"tunewatch: error: {decided.model} version {decided.version} was "
            f"{shown(decided.decision_reason)}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tunewatch._artefacts import ArtefactStore
    from tunewatch._governance import rollback
    from tunewatch._open_store import open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        # refused, nothing changed, when the restored version's artefact cannot be read
        # back intact or loaded (`artefact_unavailable`), or when another champion than
        # --champion (or than the one read) serves (`champion_changed`), or when, without
        # --champion, a rollback restored the one read (`champion_changed`: a rerun)
        restored, rolled = rollback(
            store,
            ArtefactStore(config.artefact_dir, store=store),
            args.model,
            actor=actor_of(args),
            reason=args.reason,
            expected_champion=args.champion,
            audit_refusal=True,  # a refusal is audited, denied_rollback
        )
        refresh_reports(store, config, args.model, (restored.version, rolled.version))
    finally:
        store.close()
    print(
        f"{restored.model} version {restored.version} is champion again; "
        f"version {rolled.version} rolled back"
    )
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        if args.model is not None:
            store.get_model(args.model)  # NotFoundError: "not registered" rather than nothing
        # one more than --limit: whether it held requests back, not whether it may have
        rows = store.list_approvals(
            model=args.model, status=args.status, limit=args.limit + 1, before_id=args.before_id
        )
    finally:
        store.close()
    for a in rows[: args.limit]:  # newest first
        about = _approval(a, config.approvals.expire_after_days)
        print(f"{a.id:<5} {shown(a.model)} v{a.version:<4} {a.status:<9} {about}")
    if len(rows) > args.limit:  # the ones waiting longest were left out without a word
        listed = "shown, the newest"
        if args.before_id is not None:
            listed = f"before request {args.before_id} shown"
        say_held_back(
            f"{args.limit} approval requests {listed}", see=next_page(rows[args.limit - 1].id)
        )
    return 0


def _approval(a: ApprovalRow, expire_after_days: float | None) -> str:
    """Who asked for request ``a`` (all of them) and, decided, who decided it and why, as
    the rationale report reads: "<status> by <requester>" credited bob's approval to
    alice, and a request closed unpromoted (stored as rejected) said nothing of why.
    Pending, when it expires (``approvals.expire_after_days``), as the API's
    ``expires_at``: approved after, it is closed unpromoted."""
    asked = ", ".join(shown(name) for name in (a.requested_by, *a.co_requesters))
    rules = f"requested by {asked}; rules: {', '.join(a.rules)}"
    if a.decided_by is None:  # pending
        from tunewatch.store._governance import deadline_of

        deadline = deadline_of(a, expire_after_days)
        return (
            f"({rules})"
            if deadline is None
            else f"({rules}; expires {deadline:%Y-%m-%d %H:%M:%S}Z)"
        )
    about = f"({rules})"
    why = f": {shown(a.decision_reason)}" if a.decision_reason else ""
    return f"by {shown(a.decided_by)} {about}{why}"


def cmd_models(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    store = open_store(config_of(args), create=False)
    try:
        for model in store.list_models():
            print(f"{shown(model.name)}  task={model.task}  features={len(model.feature_names)}")
            versions = store.list_versions(model.name)
            tags = store.tags_of_versions(model.name, [v.version for v in versions])
            for v in versions:
                print(
                    f"  v{v.version:<4} {v.stage:<11} hp={v.hyperparameter_set_id[:12]} "
                    f"sha256={v.artefact_sha256[:12]} created={v.created_at:%Y-%m-%d %H:%M}Z"
                )
                if v.version in tags:  # a line of their own: a value may hold spaces
                    pairs = " ".join(f"{k}={shown(x)}" for k, x in tags[v.version].items())
                    print(f"        tags: {pairs}")
    finally:
        store.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    store = open_store(config_of(args), create=False)
    try:
        # one more: whether older ones exist
        entries = store.audit_log(limit=args.limit + 1, before_id=args.before_id)
        broken = store.verify_audit()
        head = store.audit_log(limit=1)
        # each anchor's entry: the newest at or before its id (another id: gone)
        anchored = [(a, store.audit_log(limit=1, before_id=a[0] + 1)) for a in args.anchor]
    finally:
        store.close()
    held_back = len(entries) > args.limit
    entries = entries[: args.limit]
    for e in reversed(entries):  # oldest of them first, as the chain runs
        # json.dumps escapes what the details (reasons) hold
        details = json.dumps(e.details, sort_keys=True) if e.details else ""
        print(
            f"{e.id:>6}  {e.at:%Y-%m-%d %H:%M:%S}Z  {shown(e.actor)}  {shown(e.action)}  "
            f"{shown(e.target)}  {details}"
        )
    if held_back:
        listed = f"{args.limit} newest audit entries"
        if args.before_id is not None:
            listed = f"{args.limit} audit entries before entry {args.before_id}"
        say_held_back(f"{listed} shown", see=next_page(entries[-1].id))
    held = all([_anchor_holds(entry_id, digest, read) for (entry_id, digest), read in anchored])
    if head:
        print(
            f"audit head: entry {head[0].id}, hash {head[0].hash} (keep it outside this store: "
            f"`tunewatch audit --anchor {head[0].id}:{head[0].hash}` checks later that the log "
            "still holds it as it is now)"
        )
    if broken is not None:
        print(f"audit chain broken ({broken.kind}): {broken.message}")
        return 1
    print("audit chain intact")
    return 0 if held else 1


def _anchor_holds(entry_id: int, digest: str, read: list[AuditEntry]) -> bool:
    """Whether the log still holds entry ``entry_id`` with hash ``digest``, said in one
    line. The chain alone cannot tell: whoever can write the tables can rewrite an entry
    and recompute every hash after it and the head; a hash kept elsewhere does not move."""
    if not read or read[0].id != entry_id:
        print(
            f"audit anchor broken: the log holds no entry {entry_id} (the anchor recorded "
            f"{digest}): entries were removed"
        )
        return False
    if read[0].hash != digest:
        print(
            f"audit anchor broken: entry {entry_id} has hash {read[0].hash}, the anchor "
            f"recorded {digest}: the log was rewritten at or before entry {entry_id}"
        )
        return False
    print(f"audit anchor holds: entry {entry_id}, hash {digest}")
    return True


def cmd_tokens(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    actor = actor_of(args)
    details = {} if getattr(args, "reason", None) is None else {"reason": args.reason}
    # the first token of a new deployment makes its store; listing and revoking need one
    store = open_store(config_of(args), create=args.action == "create")
    try:
        if args.action == "create":
            token = new_token()
            row = store.add_token(
                name=args.name,
                role=check_role(args.role),
                token_hash=hash_token(token),
                actor=actor,
                details=details,
            )
            return _show_token(store, row, token, actor=actor)
        if args.action == "rotate":
            token = new_token()
            old, row = store.rotate_token(
                args.name, token_hash=hash_token(token), actor=actor, details=details
            )
            return _show_token(store, row, token, actor=actor, replaces=old)
        if args.action == "revoke":
            row = store.revoke_token(args.name, actor=actor, details=details)
            print(f"token {row.name!r} revoked")
        else:
            for t in store.list_tokens():  # to the second in UTC, as the audit log shows
                state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M:%S}Z" if t.revoked_at else "active"
                print(
                    f"{shown(t.name):<30} {t.role:<13} created {t.created_at:%Y-%m-%d %H:%M:%S}Z "
                    f"{state}"
                )
    finally:
        store.close()
    return 0


def _show_token(
    store: Store, row: TokenRow, token: str, *, actor: str, replaces: TokenRow | None = None
) -> int:
    """Show the token ``row`` just stored, ``token``, once; one that cannot be shown is
    revoked (audited, by ``actor``) and the command exits 1. It was stored, then printed:
    a print that failed (a full disk, a reader gone, stdout closed) left an active token no
    one held, under a name no later token can take, and exited 2 ("refused, nothing
    changed") or, with stdout closed, 0. ``replaces``: the token a rotation revoked for
    it."""
    try:
        _show_once(token)
    except (OSError, ValueError) as exc:  # ValueError: a closed stream
        why = f"stdout: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        try:
            store.revoke_token(
                row.name, actor=actor, details={"reason": f"it could not be shown ({why})"}
            )
        except TunewatchError as failed:
            print(
                f"tunewatch: error: token {row.name!r} ({row.role}) could not be shown ({why}) "
                f"and is still active: revoking it failed: {failed.message}; revoke it: "
                f"tunewatch tokens revoke {shlex.quote(row.name)}",
                file=sys.stderr,
            )
            return 1
        again = (
            "a revoked token keeps its name: choose another name"
            if replaces is None
            else f"{replaces.name!r} was revoked by the rotation; for another secret run: "
            f"tunewatch tokens rotate {shlex.quote(row.name)}"
        )
        print(
            f"tunewatch: error: token {row.name!r} was revoked because it could not be shown "
            f"({why}); {again}",
            file=sys.stderr,
        )
        return 1
    if replaces is None:
        print(f"token {row.name!r} ({row.role}) created; it is shown only once", file=sys.stderr)
    else:
        print(
            f"token {row.name!r} ({row.role}) replaces {replaces.name!r}, revoked (running "
            "servers refuse it within auth.token_cache_ttl_s seconds); it is shown only once",
            file=sys.stderr,
        )
    return 0


def _show_once(text: str) -> None:
    """Write ``text`` and a newline to stdout, and see it written: past the stream's
    buffer where it has a file descriptor, so that a refused write raises here (not at the
    interpreter's exit, after the command said it was shown) and leaves nothing behind to
    fail again. Raises OSError, or ValueError for a closed stream."""
    stream = sys.stdout
    if stream is None:  # what Python makes of a closed file descriptor 1
        raise OSError(errno.EBADF, "it is closed")
    stream.flush()  # whatever was printed before goes first
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation, both: a stream in memory
        stream.write(f"{text}\n")
        stream.flush()
        return
    data = f"{text}\n".encode()
    while data:
        data = data[os.write(fd, data) :]
