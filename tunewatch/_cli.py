"""The ``tunewatch`` command line: its parser and entry point (the handlers are in
:mod:`tunewatch._commands`)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from monitor import MonitorError
from monitor.objectives import ObjectiveError
from retune import RetuneError
from shadow import ShadowError
from tunewatch._auth import ROLES
from tunewatch._commands import (
    cmd_approvals,
    cmd_audit,
    cmd_backup,
    cmd_cancel,
    cmd_compare,
    cmd_comparisons,
    cmd_decide,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_import,
    cmd_jobs,
    cmd_migrate,
    cmd_models,
    cmd_promote,
    cmd_register,
    cmd_report,
    cmd_retune,
    cmd_rollback,
    cmd_serve,
    cmd_show_evaluations,
    cmd_tokens,
    cmd_worker,
)
from tunewatch._commands._context import actor_argument
from tunewatch._commands._tags import add_tag_parser
from tunewatch._entry import interrupted
from tunewatch._errors import TunewatchError
from tunewatch._thread_deaths import log_thread_deaths
from tunewatch.store import MAX_ID, MAX_REASON_LENGTH

#: The domain packages' exception roots (STYLE #8; objectives keep their own beside
#: monitor's): their messages name the field, the rule and the value, so a command prints
#: them as it does tunewatch's own, one line and exit 2. A ``StatsError`` (shadow's) from
#: a comparison's settings printed a traceback.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    MonitorError,
    ObjectiveError,
    ShadowError,
    RetuneError,
)

#: The commands whose process goes on past a failed store operation, the daemon's: they log
#: the store's warnings (:data:`_STORE_OUTAGE_LOGGER`) as they come.
_RUNNING_ON: tuple[Callable[[argparse.Namespace], int], ...] = (cmd_serve, cmd_worker, cmd_demo)

#: The logger of the store's throttled "database unavailable" warnings.
_STORE_OUTAGE_LOGGER = "tunewatch.store._engine"

_ONE_LINE_ERRORS: tuple[type[Exception], ...] = (
    TunewatchError,
    *DOMAIN_ERRORS,
    OSError,
    json.JSONDecodeError,
)

#: The most rows a listing prints, as the API's ``limit``.
MAX_LIMIT = 10_000
#: The largest evaluation id a ``--before-id`` may name (64-bit, as the API's ``before_id``;
#: audit entries' ids are 32-bit, :data:`MAX_ID`).
MAX_ROW_ID = 2**63 - 1


def _int_in(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` spelt in ASCII digits, else a usage
    error naming both. ``int`` alone also reads ``1_0`` (10), ``+1``, `` 1`` and other
    scripts' digits, which the API refuses: one version had many spellings, and a typo
    named another (``report credit 1_0`` read v10)."""

    def parse(text: str) -> int:
        value = int(text) if text.isascii() and text.isdigit() else None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"`{name}` must be an integer in [{low}, {high}] in ASCII digits, got {text!r}"
            )
        return value

    return parse


def _before_id(p: argparse.ArgumentParser, rows: str, row: str) -> None:
    """A listing's ``--before-id``: the keyset cursor the notice of a page held back by
    ``--limit`` names (``--limit`` alone stopped at 10,000 rows)."""
    p.add_argument(
        "--before-id",
        type=_int_in("before-id", 1, MAX_ID),
        metavar="ID",
        help=f"list the {rows} older than {row} ID: the value the notice of the page "
        f"before names, down to the first {row}",
    )


def _anchor(text: str) -> tuple[int, str]:
    """An argparse type: ``ID:HASH``, an audit entry's id and its SHA-256 in hex (as
    ``tunewatch audit`` prints the head), else a usage error."""
    entry_id, _, digest = text.partition(":")
    digest = digest.lower()
    if (
        not (entry_id.isascii() and entry_id.isdigit() and 1 <= int(entry_id) <= MAX_ID)
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise argparse.ArgumentTypeError(
            "`anchor` must be ID:HASH, an audit entry's id and its 64 hex digits of "
            f"SHA-256 (as `audit head` prints them), got {text!r}"
        )
    return int(entry_id), digest


def _text(name: str) -> Callable[[str], str]:
    """An argparse type: text UTF-8 can encode, else a usage error naming ``name`` (checked
    before the command reads or writes anything). An argument byte the locale cannot
    decode reaches Python as a lone surrogate: no database driver can send it, and a
    stored one could not be written out again (reports, the API's answers)."""

    def parse(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise argparse.ArgumentTypeError(
                f"`{name}` must be text UTF-8 can encode, got {text!r:.60}: a byte the "
                "locale could not decode reaches Python as a lone surrogate"
            ) from exc
        return text

    return parse


def _reason(text: str) -> str:
    """An argparse type: a ``--reason`` the API would take, else a usage error (checked
    before the command writes anything): text UTF-8 can encode, not empty nor whitespace
    only, of at most :data:`MAX_REASON_LENGTH` characters, the length of
    ``approvals.reason`` (PostgreSQL refused a longer one). An empty reason, which the API
    refuses, was recorded in the audit log, and a regulated model promoted on it. It is
    kept as given, surrounding whitespace included."""
    text = _text("--reason")(text)
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "`--reason` must hold a character other than whitespace, got "
            f"{len(text)} character{'' if len(text) == 1 else 's'}"
        )
    if len(text) > MAX_REASON_LENGTH:
        raise argparse.ArgumentTypeError(
            f"`--reason` must be at most {MAX_REASON_LENGTH} characters, got {len(text)}"
        )
    return text


def _sha256(text: str) -> str:
    """An argparse type: a SHA-256 in hex (either case, read as lower case), else a usage
    error (checked before the import reads anything)."""
    digest = text.lower()
    if len(digest) != 64 or not set(digest) <= set("0123456789abcdef"):
        raise argparse.ArgumentTypeError(
            f"`--sha256` must be 64 hexadecimal digits, got {text!r:.80}"
        )
    return digest


#: A model's name: only text is checked (a model named before names could not be paths
#: is still found by it).
_model = _text("model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunewatch",
        description="Score, monitor, compare and re-tune ONNX models in production.",
    )
    parser.add_argument(
        "--config", help="YAML config (default: $TUNEWATCH_CONFIG or built-in defaults)"
    )
    parser.add_argument(
        "--actor",
        type=actor_argument,
        help="who is acting, for the audit log (default: $USER, or `cli` where it is unset)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--host")
    p.add_argument("--port", type=_int_in("port", 0, 65535))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="create or upgrade the store's schema")
    p.add_argument(
        "--to",
        metavar="REVISION",
        help="upgrade or downgrade to this schema revision (one this tunewatch knows) "
        "instead of the newest; a downgrade drops what later revisions added",
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("register", help="register an ONNX file as a new model version")
    p.add_argument("model", type=_model)
    p.add_argument("file")
    p.add_argument("--task", required=True, choices=["binary", "multiclass", "regression"])
    p.add_argument("--features", required=True, help="comma-separated feature names, in order")
    p.add_argument("--hyperparameters", help="JSON object of the pipeline's parameters")
    p.add_argument("--dataset-version")
    p.add_argument("--stage", choices=["shadow", "champion"], default="shadow")
    p.add_argument(
        "--reference",
        help=".npz with `features` (and `labels`): the training window drift is measured against",
    )
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("promote", help="make a version champion, or ask for approval (exit 3)")
    p.add_argument("model", type=_model)
    p.add_argument("version", type=_int_in("version", 1, MAX_ID))
    p.add_argument("--reason", type=_reason, required=True)
    p.add_argument(
        "--champion",
        type=_int_in("champion", 0, MAX_ID),
        help="the champion version the promotion replaces (0: none); refused, nothing "
        "changed and no approval requested, when another serves (another promotion won)",
    )
    p.set_defaults(func=cmd_promote)

    for name, text in (
        ("approve", "approve a pending promotion (not your own)"),
        ("reject", "reject a pending promotion"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("approval", type=_int_in("approval", 1, MAX_ID))
        p.add_argument("--reason", type=_reason, required=True)
        p.set_defaults(func=cmd_decide)

    text = (
        "list approval requests, newest first (a notice on stderr names the --before-id of "
        "the older ones when --limit held them back)"
    )
    p = sub.add_parser("approvals", help=text, description=text)
    p.add_argument("--status", choices=["pending", "approved", "rejected"])
    p.add_argument("--model", type=_text("--model"), help="only this model's requests")
    p.add_argument(
        "--limit",
        type=_int_in("limit", 1, MAX_LIMIT),
        default=100,
        help="the most requests to list, the newest (default 100, as the API's)",
    )
    _before_id(p, "requests", "request")
    p.set_defaults(func=cmd_approvals)

    p = sub.add_parser("rollback", help="restore the champion the current one replaced")
    p.add_argument("model", type=_model)
    p.add_argument("--reason", type=_reason, required=True)
    p.add_argument(
        "--champion",
        type=_int_in("champion", 1, MAX_ID),
        help="the champion version to roll back; refused, nothing changed, when another "
        "serves (a rollback already restored its predecessor); required to roll back a "
        "champion a rollback restored",
    )
    p.set_defaults(func=cmd_rollback)

    text = (
        "evaluate a model now: drift, decay, estimate, labels, telemetry; then its 5 newest "
        "events (a notice on stderr when older ones exist)"
    )
    p = sub.add_parser("evaluate", help=text, description=text)
    p.add_argument("model", type=_model)
    p.set_defaults(func=cmd_evaluate)

    for kind in ("drift", "decay", "estimate", "labels", "telemetry"):
        text = (
            f"show a model's {kind} evaluations, newest first (a notice on stderr when "
            "--limit held older ones back, naming the --before-id that shows them)"
        )
        p = sub.add_parser(kind, help=text, description=text)
        p.add_argument("model", type=_model)
        p.add_argument("--version", type=_int_in("version", 1, MAX_ID))
        p.add_argument(
            "--limit",
            type=_int_in("limit", 1, MAX_LIMIT),
            default=10,
            help="the most evaluations to show, the newest (default 10; at most 10,000, as "
            "the API's)",
        )
        p.add_argument(
            "--before-id",
            type=_int_in("before-id", 1, MAX_ROW_ID),
            metavar="ID",
            help="show the ones listed after evaluation ID, older: the value the notice of "
            "the page before names",
        )
        p.set_defaults(func=cmd_show_evaluations)

    p = sub.add_parser("worker", help="run (or join) a re-tuning job in this process")
    p.add_argument("--job", type=_int_in("job", 1, MAX_ID), required=True)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "retune",
        help="queue a manual re-tuning job for a model",
        description="Queue a manual re-tuning job for a model: exit 0, the outcome on "
        "stdout, when it was queued (or had been). Exit 1, the outcome on stderr "
        "(`retune suppressed: ...`), when the quota on concurrent tuning jobs or the "
        "model's cool-down held it back (a later retune may be queued), or when the "
        "model's triggers configure no retune for `manual`; with --run, also when the job "
        "ran and did not succeed. Exit 2 on a usage error.",
    )
    p.add_argument("model", type=_model)
    p.add_argument("--reason", type=_reason, default="manual")
    p.add_argument("--run", action="store_true", help="run the job in this process now")
    p.set_defaults(func=cmd_retune)

    text = (
        "list re-tuning jobs and their progress, newest first (a notice on stderr names the "
        "--before-id of the older ones when --limit held them back)"
    )
    p = sub.add_parser("jobs", help=text, description=text)
    p.add_argument("--model", type=_text("--model"), help="only this model's jobs")
    p.add_argument(
        "--limit",
        type=_int_in("limit", 1, MAX_LIMIT),
        default=20,
        help="the most jobs to list, the newest (default 20; at most 10,000, as the API's)",
    )
    _before_id(p, "jobs", "job")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "cancel",
        help="cancel a queued or running re-tuning job",
        description="Cancel a queued or running re-tuning job: it ends as `cancelled` at "
        "once, its quota slot free, audited with --actor and --reason; its workers stop "
        "after their running trial and register nothing. Exit 0 when it was cancelled; 1, "
        "nothing changed, when it had finished (said on stderr); 2 for a job that does not "
        "exist or a usage error.",
    )
    p.add_argument("job", type=_int_in("job", 1, MAX_ID))
    p.add_argument("--reason", type=_reason, required=True)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("report", help="write a version's rationale report (Markdown, HTML)")
    p.add_argument("model", type=_model)
    p.add_argument("version", type=_int_in("version", 1, MAX_ID))
    p.add_argument("--print", action="store_true", help="also print the Markdown")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "export",
        help="write a model's versions and config to a bundle; prints its SHA-256, recorded "
        "in the audit log, for `import --sha256`",
    )
    p.add_argument("model", type=_model)
    p.add_argument("path", help="the bundle file to write (a zip)")
    p.add_argument(
        "--version",
        type=_int_in("version", 1, MAX_ID),
        action="append",
        help="a version to export (default: champion)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="register a bundle's versions (champion only if none)")
    p.add_argument("path")
    p.add_argument("--as", dest="name", type=_text("--as"), help="register under this model name")
    p.add_argument("--config-out", help="write the bundle's model config (YAML) here")
    p.add_argument(
        "--sha256",
        type=_sha256,
        metavar="HEX",
        help="the bundle's SHA-256, as `export` printed it and the source's audit log records "
        "it: another file is refused before it is read; required for a model this store "
        "regulates (config or store) or gives safe ranges",
    )
    p.set_defaults(func=cmd_import)

    add_tag_parser(sub, model=_model, version=_int_in("version", 1, MAX_ID))
    p = sub.add_parser("models", help="list models and their versions")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "audit",
        help="print the newest audit entries and verify the chain (exit 1 if broken); a "
        "notice on stderr names the --before-id of the older ones",
    )
    p.add_argument("--limit", type=_int_in("limit", 1, MAX_LIMIT), default=20)
    _before_id(p, "entries", "entry")
    p.add_argument(
        "--anchor",
        type=_anchor,
        action="append",
        default=[],
        metavar="ID:HASH",
        help="check that entry ID still has hash HASH, as an earlier run's `audit head` line "
        "printed it and you kept outside the store (exit 1 if not): a log rewritten with its "
        "hashes recomputed still verifies, but no longer holds that entry as it was; repeatable",
    )
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "backup",
        help="write a consistent copy of the SQLite store, its tuning storage and its "
        "artefacts to a directory, while the daemon serves",
        description="Write a consistent copy of the embedded SQLite store (VACUUM INTO), "
        "its tuning storage when that is a file under data_dir, and its artefacts to "
        "DIR, which then serves as a data_dir: to restore, stop the daemon and start it "
        "with data_dir: DIR (or put its files in the data_dir). Safe while the daemon "
        "serves. Audited by --actor in both stores: backup_snapshot in the copy, "
        "backup in the store. Exit 0 when written; 1 when damaged artefacts were left "
        "out (named on stderr); 2, nothing written, for a DIR that is not empty or lies inside "
        "data_dir, or a PostgreSQL store (back that up with pg_dump).",
    )
    p.add_argument(
        "directory",
        metavar="DIR",
        type=_text("DIR"),
        help="where to write it: a directory that does not exist or is empty, outside data_dir",
    )
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("tokens", help="manage API tokens")
    tsub = p.add_subparsers(dest="action", required=True)
    why = "why, kept in the audit entry's details"
    t = tsub.add_parser("create", help="create a token and print it once")
    t.add_argument("name", type=_text("name"), help="a name to revoke it by, unique for good")
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--reason", type=_reason, help=why)
    t = tsub.add_parser(
        "revoke",
        help="revoke a token by name (audited); running servers refuse it within "
        "auth.token_cache_ttl_s seconds (at least 1); its name stays taken",
    )
    t.add_argument("name", type=_text("name"), help="the name given at create")
    t.add_argument("--reason", type=_reason, help=why)
    t = tsub.add_parser(
        "rotate",
        help="replace a token's secret and print the new one once: NAME is revoked (as by "
        "revoke) and a token of its role stored as NAME#2 (then #3 …), the same person to "
        "the rule that a requester may not decide their own approval; both audited at once",
    )
    t.add_argument("name", type=_text("name"), help="the token's name, its newest after a rotation")
    t.add_argument("--reason", type=_reason, help=why)
    tsub.add_parser("list", help="list every token: name, role, active or revoked (date)")
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser("demo", help="run the example loop on a fresh embedded store")
    p.add_argument("--data-dir", default=".tunewatch-demo")
    p.add_argument("--seed", type=_int_in("seed", 0, 2**32 - 1), default=0)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("compare", help="run a model's comparison loop now and print it")
    p.add_argument("model", type=_model)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "comparisons", help="latest look per challenger, or one challenger's history"
    )
    p.add_argument("model", type=_model)
    p.add_argument(
        "--challenger",
        type=_int_in("challenger", 1, MAX_ID),
        help="show this version's looks, oldest first",
    )
    p.add_argument(
        "--limit",
        type=_int_in("limit", 1, MAX_LIMIT),
        default=1000,
        help="with --challenger: the most looks to show, the newest, printed oldest first "
        "(default 1000; at most 10,000, as the API's; a notice on stderr when older ones "
        "were held back)",
    )
    p.set_defaults(func=cmd_comparisons)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A file name the locale could not decode reaches Python as a lone surrogate, which a
    # strict UTF-8 stdout (any UTF-8 locale but C's) refused: printing the path of a bundle
    # already written failed with a traceback and exit 1. It is printed escaped instead.
    restore = [
        (stream, stream.errors)
        for stream in (sys.stdout, sys.stderr)
        if isinstance(stream, io.TextIOWrapper)
    ]
    for stream, _ in restore:
        stream.reconfigure(errors="backslashreplace")
    try:
        return _run(argv)
    except KeyboardInterrupt:
        # Ctrl-C: a store write in progress was rolled back by its session scope; a
        # traceback from wherever the command was says nothing more.
        return interrupted()
    except BrokenPipeError:
        # The reader went away (`| head`, a pager quit): not the command's failure. Output
        # still buffered goes nowhere, so that the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a pipe its reader cut
    finally:
        for stream, errors in restore:
            stream.reconfigure(errors=errors)


class _UtcFormatter(logging.Formatter):
    """Stamps in UTC, ISO 8601 to the millisecond, marked ``Z``: as the times the messages
    and the CLI's output carry. The host's local time, unmarked, put two clocks on a line
    and repeated its stamps in the hour a fall-back replays."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    log_thread_deaths()  # a daemon thread's death, in this log with its traceback
    if not args.verbose:
        # httpx: a line per HTTP request the demo's client sends, thousands; apscheduler:
        # two per run of the 2 s launcher and the 10 s lease, 100k a day burying the rest;
        # alembic: a line per schema revision, some of them paragraphs (the store logs
        # one line for the whole migration)
        for name in ("httpx", "apscheduler", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # The store's "database unavailable" warning is for a process that goes on past the
    # failure (the daemon answers a request 503 without the driver's text); a command
    # stops and prints the error itself, and printed it twice, the warning first.
    outages = logging.getLogger(_STORE_OUTAGE_LOGGER)
    level = outages.level
    if not args.verbose and args.func not in _RUNNING_ON:
        outages.setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        raise  # main's: the reader went away
    except _ONE_LINE_ERRORS as exc:
        print(failure_line(exc), file=sys.stderr)
        return 2
    finally:
        outages.setLevel(level)  # main runs in-process in tests, and logs to their handler


def failure_line(exc: BaseException) -> str | None:
    """The one line the command prints (and exits 2) for ``exc``: tunewatch's own errors,
    the domain packages' (:data:`DOMAIN_ERRORS`), and a file or JSON that cannot be read;
    ``None`` for any other, a bug whose traceback says where (and a reader gone away,
    which :func:`main` answers)."""
    if isinstance(exc, TunewatchError):
        return f"tunewatch: error: {_one_line(exc.message)}"
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, _ONE_LINE_ERRORS):
        return f"tunewatch: error: {_one_line(str(exc))}"
    return None


def _one_line(message: str) -> str:
    """``message`` on one line: its lines, stripped, joined by "; " (by a space after a
    line that ends in punctuation). A driver's text breaks lines (psycopg's "…refused",
    a newline and a tab, "Is the server running…"), as does a configuration's list of
    errors ("invalid configuration in FILE:", then one indented line per error)."""
    joined = ""
    for line in message.splitlines():
        line = line.strip()
        if not line:
            continue
        if joined:
            joined += " " if joined[-1] in ":;,.!?" else "; "
        joined += line
    return joined


if __name__ == "__main__":
    sys.exit(main())
