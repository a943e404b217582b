"""The ``tunewatch`` command line, run in-process against a real store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import break_audit_appends
from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import MAX_REASON_LENGTH, Store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "models": [{"name": "credit", "task": "binary", "regulated": True}],
            }
        )
    )
    return path


def _make_store(config: Path) -> None:
    """The store the daemon of ``config`` would have made (a command that reads one
    refuses a store that does not exist)."""
    Store.open(_store_url(config)).close()


def run(config: Path, *args: str, actor: str = "alice") -> int:
    return main(["--config", str(config), "--actor", actor, *args])


def _register(config: Path, tmp_path: Path, model: ExampleModel) -> None:
    """Register ``model`` as a shadow version of ``credit`` through the CLI."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(model.onnx)
    features = ",".join(model.metadata.feature_names)
    assert (
        run(config, "register", "credit", str(onnx), "--task", "binary", "--features", features)
        == 0
    )


def test_register_promote_approve_rollback_round_trip(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    features = ",".join(trained[0].metadata.feature_names)
    for i, model in enumerate(trained):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(model.onnx)
        ref = tmp_path / f"m{i}.npz"
        assert model.reference is not None
        ref.write_bytes(model.reference.to_bytes())
        assert (
            run(
                config,
                "register",
                "credit",
                str(onnx),
                "--task",
                "binary",
                "--features",
                features,
                "--hyperparameters",
                json.dumps({"i": i}),
                "--reference",
                str(ref),
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "registered credit version 1 (shadow)" in out
    assert "registered credit version 2 (shadow)" in out

    assert run(config, "promote", "credit", "1", "--reason", "the first champion") == 3
    assert "waits for an approver (request 1): regulated model" in capsys.readouterr().out
    assert run(config, "approve", "1", "--reason", "reviewed", actor="bob") == 0
    assert "credit version 1 is champion" in capsys.readouterr().out
    assert run(config, "promote", "credit", "2", "--reason", "won the A/B test") == 3
    out = capsys.readouterr().out
    assert "waits for an approver (request 2): regulated model" in out
    assert run(config, "approve", "2", "--reason", "mine") == 2  # alice asked: refused
    assert "another person must decide it" in capsys.readouterr().err
    assert run(config, "approve", "2", "--reason", "reviewed", actor="bob") == 0
    assert "credit version 2 is champion" in capsys.readouterr().out

    assert run(config, "rollback", "credit", "--reason", "worse") == 0
    assert "version 1 is champion again; version 2 rolled back" in capsys.readouterr().out
    assert run(config, "models") == 0
    listing = capsys.readouterr().out
    assert "v1    champion" in listing and "v2    rolled_back" in listing


def test_a_regulated_model_s_champion_cannot_be_registered_around_an_approver(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    args = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert run(config, *args, "--stage", "champion") == 2
    err = capsys.readouterr().err
    assert "cannot be registered as the champion of 'credit'" in err and "regulated model" in err
    assert run(config, "models") == 0
    assert "credit" not in capsys.readouterr().out  # nothing was registered


def test_an_approval_that_promotes_nothing_fails_with_the_reason(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    for i in range(2):  # of two datasets: the same one again is a retry (`version_exists`)
        register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
        assert run(config, *register, "--dataset-version", f"ds-{i + 1}") == 0
    assert run(config, "promote", "credit", "1", "--reason", "first") == 3  # request 1
    assert run(config, "promote", "credit", "2", "--reason", "also first") == 3  # request 2
    assert run(config, "approve", "1", "--reason", "ok", actor="bob") == 0
    capsys.readouterr()
    # request 2 was made when there was no champion; version 1 is champion now
    assert run(config, "approve", "2", "--reason", "ok", actor="bob") == 1
    captured = capsys.readouterr()
    # bob approved: the request was closed unpromoted, not rejected by him
    assert "approval 2 closed unpromoted by bob (stored as rejected)" in captured.out
    assert (
        "tunewatch: error: credit version 2 was not promoted: the champion changed from none "
        "to v1 since the request (ok)" in captured.err
    )
    assert run(config, "reject", "1", "--reason", "late", actor="carol") == 2  # already decided


def test_integer_arguments_out_of_their_range_are_usage_errors(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "99999999999999999999"  # past SQLite's integers: OverflowError tracebacks
    cases = [
        ("promote", "credit", huge, "--reason", "x"),
        ("promote", "credit", "0", "--reason", "x"),
        ("approve", huge, "--reason", "x"),
        ("worker", "--job", huge),
        ("report", "credit", huge),
        ("drift", "credit", "--version", huge),
        ("drift", "credit", "--limit", "-1"),
        ("jobs", "--limit", "-5"),
        ("comparisons", "credit", "--challenger", huge),
        ("export", "credit", "out.zip", "--version", "-3"),
        ("serve", "--port", "99999"),  # was served on 99999 mod 65536
        ("demo", "--seed", "-1"),
    ]
    for args in cases:
        with pytest.raises(SystemExit) as exited:
            run(config, *args)
        assert exited.value.code == 2, args
        err = capsys.readouterr().err
        assert "must be an integer in [" in err and "Traceback" not in err, (args, err)
    with pytest.raises(SystemExit):
        run(config, "promote", "credit", "two", "--reason", "x")
    err = capsys.readouterr().err
    assert "`version` must be an integer in [1, 2147483647] in ASCII digits, got 'two'" in err


def test_tokens_are_printed_once_and_revocable(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "tokens", "create", "ci", "--role", "scorer") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("tw_") and "shown only once" in captured.err
    assert run(config, "tokens", "list") == 0
    out = capsys.readouterr().out
    # to the second, in UTC, as the audit log: an auditor matches them (dates only were shown)
    assert re.search(r"ci +scorer +created \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ +active", out), out
    assert run(config, "tokens", "revoke", "ci") == 0
    assert run(config, "tokens", "list") == 0
    out = capsys.readouterr().out
    assert re.search(r"created \S+ \S+Z +revoked \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", out), out
    assert run(config, "tokens", "revoke", "nobody") == 2


@pytest.fixture
def backend(tmp_path: Path, store_url: str) -> tuple[Path, str]:
    """A config whose store is ``store_url`` (SQLite or PostgreSQL), and that URL."""
    path = tmp_path / "backend.yaml"
    raw = {"data_dir": str(tmp_path / "data"), "store": {"url": store_url}}
    path.write_text(yaml.safe_dump(raw))
    return path, store_url


@pytest.mark.parametrize(
    "actor",
    [
        pytest.param("a" * 201, id="longer_than_the_audit_column"),
        pytest.param("ops\nadmin", id="a_newline"),
        pytest.param("ops\x00", id="a_nul"),
        pytest.param("ops\udcff", id="a_lone_surrogate"),  # an undecodable argv byte
    ],
)
def test_an_actor_the_audit_log_cannot_hold_is_a_usage_error_before_any_write(
    backend: tuple[Path, str], actor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit_entries.actor` is VARCHAR(200): on PostgreSQL a longer --actor failed the
    audit append after the token was stored (active, unaudited, never printed)."""
    config, url = backend
    with pytest.raises(SystemExit) as exited:
        run(config, "tokens", "create", "ops", "--role", "admin", actor=actor)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert "`--actor` must be 1 to 200 printable characters" in captured.err
    with Store.open(url) as store:
        assert store.list_tokens() == [] and store.audit_log() == []


@pytest.mark.parametrize(
    ("reason", "refusal"),
    [
        # `--reason $'ok \xff'` reaches Python as a lone surrogate (argv decoding keeps an
        # undecodable byte so); it was stored, and every report quoting it failed to write
        pytest.param("ok \udcff", "`--reason` must be text UTF-8 can encode", id="not-utf8"),
        # the API takes reasons up to MAX_REASON_LENGTH characters (`approvals.reason` is
        # VARCHAR(2000)); the command line took any length, and on PostgreSQL a long
        # promotion reason failed the approval request
        pytest.param(
            "r" * (MAX_REASON_LENGTH + 1),
            f"`--reason` must be at most {MAX_REASON_LENGTH} characters, "
            f"got {MAX_REASON_LENGTH + 1}",
            id="too-long",
        ),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["promote", "credit", "2"], id="promote"),
        pytest.param(["approve", "1"], id="approve"),
        pytest.param(["reject", "1"], id="reject"),
        pytest.param(["rollback", "credit"], id="rollback"),
        pytest.param(["retune", "credit"], id="retune"),
    ],
)
def test_a_reason_the_store_cannot_keep_is_a_usage_error_before_any_write(
    backend: tuple[Path, str],
    command: list[str],
    reason: str,
    refusal: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, url = backend
    with pytest.raises(SystemExit) as exited:
        run(config, *command, "--reason", reason)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert refusal in captured.err
    with Store.open(url) as store:
        assert store.audit_log() == [] and store.list_jobs() == []


def test_a_reason_of_the_longest_length_is_taken(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    _register(config, tmp_path, trained[0])
    words = "r" * MAX_REASON_LENGTH
    assert run(config, "promote", "credit", "1", "--reason", words) == 3
    assert "waits for an approver (request 1)" in capsys.readouterr().out
    with _store(config) as store:
        assert store.get_approval(1).reason == words


def test_a_reason_with_a_byte_the_locale_cannot_decode_is_refused_from_the_shell(
    backend: tuple[Path, str],
) -> None:
    """The real path: the shell passes `$'ok \\xff'` as bytes, Python decodes argv with
    surrogateescape."""
    config, url = backend
    argv = [sys.executable.encode(), b"-m", b"tunewatch._cli", b"--config", bytes(config)]
    argv += [b"--actor", b"ops", b"promote", b"credit", b"2", b"--reason", b"ok \xff"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert b"`--reason` must be text UTF-8 can encode" in done.stderr
    with Store.open(url) as store:
        assert store.audit_log() == []


def test_a_user_name_the_audit_log_cannot_hold_must_be_replaced_with_actor(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("USER", "u" * 201)
    assert main(["--config", str(config), "tokens", "create", "ops", "--role", "admin"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "$USER must be 1 to 200 printable characters" in captured.err
    assert "pass --actor" in captured.err
    with Store.open(_store_url(config)) as store:
        assert store.list_tokens() == []


def test_a_token_whose_audit_append_fails_is_neither_stored_nor_printed(
    backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = backend
    assert run(config, "tokens", "create", "old", "--role", "admin") == 0
    with Store.open(url) as store:
        break_audit_appends(store)
    capsys.readouterr()
    assert run(config, "tokens", "create", "new", "--role", "admin") == 2
    assert run(config, "tokens", "revoke", "old") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    with Store.open(url) as store:
        assert [(t.name, t.revoked_at) for t in store.list_tokens()] == [("old", None)]


def test_config_errors_are_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {prot: 1}\n")
    assert main(["--config", str(bad), "models"]) == 2
    err = capsys.readouterr().err
    assert "server.prot" in err and "Traceback" not in err


def _store_url(config: Path) -> str:
    return f"sqlite:///{config.parent / 'data' / 'tunewatch.db'}"


def _store(config: Path) -> Store:
    return Store(_store_url(config))


def test_a_token_name_is_never_reused_and_a_revocation_is_recorded_once(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names are the actors in the audit log: a revoked token keeps its name. Reusing one
    printed a raw UNIQUE-constraint error; revoking twice appended a second audit entry."""
    assert run(config, "tokens", "create", "ci", "--role", "scorer") == 0
    assert run(config, "tokens", "revoke", "ci") == 0
    capsys.readouterr()
    assert run(config, "tokens", "create", "ci", "--role", "scorer") == 2
    err = capsys.readouterr().err
    assert "token named 'ci' exists" in err and "UNIQUE" not in err
    assert run(config, "tokens", "revoke", "ci") == 2
    assert "already revoked" in capsys.readouterr().err
    with _store(config) as store:
        audit = store.audit_log(limit=100)
    assert [a.action for a in audit].count("revoke_token") == 1


def test_retune_of_an_unknown_model_records_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It stored `manual` and `action_suppressed` events for a model that does not exist
    and printed a foreign-key error."""
    _make_store(config)
    assert run(config, "retune", "nosuch", "--reason", "try") == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "FOREIGN KEY" not in err
    with _store(config) as store:
        assert store.list_events(model="nosuch", limit=10) == []


def test_a_model_the_config_regulates_is_stored_regulated_when_first_registered(
    config: Path, tmp_path: Path, trained: list[ExampleModel]
) -> None:
    # The store's flag is what a replica whose config does not list the model goes by.
    _register(config, tmp_path, trained[0])
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
    try:
        assert store.get_model("credit").regulated
    finally:
        store.close()


def test_the_audit_command_lists_entries_and_fails_on_a_broken_chain(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An auditor with the store's credentials checks the chain without a daemon."""
    assert run(config, "tokens", "create", "ci", "--role", "viewer") == 0
    capsys.readouterr()
    assert run(config, "audit") == 0
    out = capsys.readouterr().out
    assert 'alice  create_token  ci  {"role": "viewer"}' in out
    assert out.rstrip().endswith("audit chain intact")
    with Store.open(_store_url(config)) as store:
        break_audit_appends(store)
    assert run(config, "audit", "--limit", "1") == 1
    captured = capsys.readouterr()
    assert "audit chain broken (head)" in captured.out


@pytest.mark.parametrize(
    ("spoil", "where"),
    [
        pytest.param("features", "`feature_names[7]`", id="feature_name"),
        pytest.param("hyperparameters", "`hyperparameters.C`", id="hyperparameter"),
    ],
)
def test_register_refuses_a_lone_surrogate_in_features_or_hyperparameters(
    config: Path,
    tmp_path: Path,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
    spoil: str,
    where: str,
) -> None:
    """`--features $'...,x7\xff'` (an argv byte no codec decodes) or a JSON `\udcff` was
    stored; the API then answered 500 for every read of the model, the model list
    included."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    names = list(trained[0].metadata.feature_names)
    if spoil == "features":
        names[-1] += "\udcff"
    hyperparameters = '{"C": "\\udcff"}' if spoil == "hyperparameters" else "{}"
    assert (
        run(
            config,
            "register",
            "credit",
            str(onnx),
            "--task",
            "binary",
            "--features",
            ",".join(names),
            "--hyperparameters",
            hyperparameters,
        )
        == 2
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert f"{where} must be text UTF-8 can encode" in captured.err
    with _store(config) as store:
        assert store.list_models() == []


_UNDECODABLE = "bad\udcff"  # an argv byte the locale cannot decode reaches Python so


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        pytest.param(["tokens", "create", _UNDECODABLE, "--role", "viewer"], "name", id="create"),
        pytest.param(["tokens", "revoke", _UNDECODABLE], "name", id="revoke"),
        pytest.param(["drift", _UNDECODABLE], "model", id="drift"),
        pytest.param(["telemetry", _UNDECODABLE], "model", id="telemetry"),
        pytest.param(["jobs", "--model", _UNDECODABLE], "--model", id="jobs"),
        pytest.param(["evaluate", _UNDECODABLE], "model", id="evaluate"),
        pytest.param(["promote", _UNDECODABLE, "2", "--reason", "r"], "model", id="promote"),
        pytest.param(["rollback", _UNDECODABLE, "--reason", "r"], "model", id="rollback"),
        pytest.param(["retune", _UNDECODABLE], "model", id="retune"),
        pytest.param(["report", _UNDECODABLE, "1"], "model", id="report"),
        pytest.param(["export", _UNDECODABLE, "b.zip"], "model", id="export"),
        pytest.param(["import", "b.zip", "--as", _UNDECODABLE], "--as", id="import"),
        pytest.param(["compare", _UNDECODABLE], "model", id="compare"),
        pytest.param(["comparisons", _UNDECODABLE], "model", id="comparisons"),
    ],
)
def test_undecodable_name_argument_is_a_usage_error(
    config: Path, command: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch tokens create $'bad\\xff'` (and a model named so to drift, jobs --model
    …) ended in a UnicodeEncodeError traceback and exit 1 when the name reached the
    database driver."""
    with pytest.raises(SystemExit) as exited:
        run(config, *command)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert f"`{flag}` must be text UTF-8 can encode, got 'bad\\udcff'" in captured.err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("garbage", "SQLAlchemy cannot parse as a URL", id="unparseable"),
        pytest.param("mysql://x@h/db", "got backend 'mysql'", id="mysql"),
        pytest.param("postgresql://u:secret@h:port/db", "cannot parse as a URL", id="bad_port"),
        # drivers that are not installed ended in a ModuleNotFoundError traceback
        pytest.param("postgresql+asyncpg://u:secret@h/db", "driver 'asyncpg'", id="asyncpg"),
        pytest.param("sqlite+pysqlcipher:///x.db", "driver 'pysqlcipher'", id="pysqlcipher"),
    ],
)
def test_a_store_url_that_is_not_a_sqlite_or_postgresql_url_is_one_line_naming_the_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    expected: str,
) -> None:
    """`TUNEWATCH_STORE_URL=garbage` ended in SQLAlchemy's ArgumentError, a mysql URL in a
    plain ValueError: tracebacks and exit 1."""
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    monkeypatch.setenv("TUNEWATCH_STORE_URL", url)
    assert main(["--config", str(path), "models"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    [line] = captured.err.splitlines()
    assert line.startswith("tunewatch: error: `store.url` (or TUNEWATCH_STORE_URL) must be")
    assert expected in line and "secret" not in line


def test_the_audit_command_cannot_be_made_to_print_a_forged_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token named `ops\\n    99  … alice  promote  credit/v2` (stored before names
    followed the actor rule) acted as that actor: `tunewatch audit` printed its name as
    is, and a second line that read as alice's promotion."""
    forged = "ops\n    99  2026-01-01 00:00:00  alice  promote  credit/v2"
    with Store.open(_store_url(config)) as store:
        store.append_audit(actor=forged, action="promote", target=forged, details={})
    assert run(config, "audit") == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 3  # the entry, the head to anchor, the chain's verdict
    assert repr(forged) in out.splitlines()[0]


@pytest.mark.parametrize(
    "command",
    [
        *(pytest.param([kind, "nosuch"], id=kind) for kind in ("drift", "decay", "telemetry")),
        pytest.param(["jobs", "--model", "nosuch"], id="jobs"),
    ],
)
def test_show_evaluations_of_unknown_model_exits_2(
    config: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch drift nosuch` said "no drift evaluations of nosuch yet" and `jobs
    --model nosuch` printed nothing, both exit 0, while evaluate, compare, promote and
    export said the model is not registered and exited 2."""
    _make_store(config)
    assert run(config, *command) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tunewatch: error: model 'nosuch' is not registered" in captured.err


def test_the_commands_package_exports_exactly_the_parser_s_handlers() -> None:
    """`tunewatch._commands` is a front over one module per concern: what it lists is what
    the parser dispatches to, no more and no less."""
    import argparse

    import tunewatch._commands as commands
    from tunewatch._cli import build_parser

    def handlers(parser: argparse.ArgumentParser) -> set[str]:
        found = {parser.get_default("func").__name__} if parser.get_default("func") else set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= handlers(sub)
        return found

    assert handlers(build_parser()) == set(commands.__all__)
    assert all(getattr(commands, name).__name__ == name for name in commands.__all__)


def test_register_refuses_hyperparameters_nested_too_deeply_without_a_traceback(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--hyperparameters` of 100,000 `[` raised RecursionError: a traceback, exit 1."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    names = ",".join(trained[0].metadata.feature_names)
    code = run(
        config, "register", "credit", str(onnx), "--task", "binary", "--features", names,
        "--hyperparameters", "[" * 100_000,
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "--hyperparameters" in captured.err and "nested too deeply" in captured.err
    assert not (tmp_path / "data").exists()  # read before the store is opened


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{bad", "--hyperparameters must be a JSON object, got text that is not JSON: "),
        ("[1]", "--hyperparameters must be a JSON object, got an array: [1]"),
        # as the API refuses them (400 duplicate_key, invalid_json): json kept the last C
        ('{"C": 1.0, "C": 100.0}', "--hyperparameters holds the key 'C' twice"),
        ('{"C": NaN}', "--hyperparameters must be JSON, and NaN is not (finite numbers only)"),
        # a traceback (ValueError past 4,300 digits), and the API's 400 beyond a float
        ('{"C": ' + "1" * 4301 + "}", "--hyperparameters holds a number of too many digits"),
        ('{"C": 1' + "0" * 400 + "}", "--hyperparameters holds an integer of 401 digits"),
    ],
    ids=["not-json", "array", "duplicate-key", "nan", "too-many-digits", "beyond-a-float"],
)
def test_register_names_hyperparameters_that_are_not_a_json_object_before_opening_the_store(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    """`{bad` printed only json's "Expecting property name enclosed in double quotes",
    after the store had been opened (and created)."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read")
    code = run(
        config, "register", "credit", str(onnx), "--task", "binary", "--features", "a",
        "--hyperparameters", value,
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.startswith(f"tunewatch: error: {message}")
    assert not (tmp_path / "data").exists()


def test_register_reads_a_wide_integer_as_the_api_does(
    config: Path, tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """An integer beyond 64 bits reads as the nearest float, as the API reads it (as in
    JavaScript): the CLI kept it exact, and the same JSON text was another set."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    names = ",".join(trained[0].metadata.feature_names)
    code = run(
        config, "register", "credit", str(onnx), "--task", "binary", "--features", names,
        "--hyperparameters", '{"seed": 18446744073709551616, "small": 18446744073709551615}',
    )  # fmt: skip
    assert code == 0
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as store:
        recorded = store.get_version("credit", 1).hyperparameters
    assert recorded == {"seed": 1.8446744073709552e19, "small": 18446744073709551615}
    assert type(recorded["seed"]) is float and type(recorded["small"]) is int


def test_promote_approve_and_rollback_write_the_versions_reports_as_the_api_does(
    config: Path, tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """The API rewrote `<data_dir>/reports/<model>-v<version>.*` at each promotion,
    approval and rollback; the CLI wrote none, so the files kept an older story."""
    reports = tmp_path / "data" / "reports"
    features = ",".join(trained[0].metadata.feature_names)
    for i, model in enumerate(trained):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(model.onnx)
        assert run(config, "register", "credit", str(onnx), "--task", "binary",
                   "--features", features) == 0  # fmt: skip
    assert run(config, "promote", "credit", "1", "--reason", "first") == 3  # waits
    assert not reports.exists()
    assert run(config, "approve", "1", "--reason", "reviewed", actor="bob") == 0
    assert "promote" in (reports / "credit-v1.md").read_text(encoding="utf-8")
    assert run(config, "promote", "credit", "2", "--reason", "better") == 3
    assert run(config, "approve", "2", "--reason", "reviewed", actor="bob") == 0
    assert (reports / "credit-v2.html").exists()
    assert run(config, "rollback", "credit", "--reason", "worse") == 0
    for version in (1, 2):
        text = (reports / f"credit-v{version}.md").read_text(encoding="utf-8")
        assert "rollback (v2 rolled back, v1 restored)" in text, version


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_evaluate_and_compare_refuse_a_config_task_other_than_the_stored_one(
    command: str,
    config: Path,
    tmp_path: Path,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A config listing a binary model as regression made `evaluate` and `compare` end in
    a traceback (the config's objective against the stored task): they check the stored
    models as the daemon does when it starts."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert run(config, *register) == 0
    regression = tmp_path / "regression.yaml"
    regression.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "models": [{"name": "credit", "task": "regression"}],
            }
        )
    )
    capsys.readouterr()
    assert run(regression, command, "credit") == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: models.0.task:") and "'binary'" in err


def test_show_evaluations_of_a_version_names_it_and_refuses_an_unknown_one(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch drift credit --version 99` said "no drift evaluations of credit yet",
    exit 0, for a version that does not exist (and so for every version)."""
    _register(config, tmp_path, trained[0])
    capsys.readouterr()
    assert run(config, "drift", "credit", "--version", "1") == 0
    assert capsys.readouterr().out == "no drift evaluations of credit version 1 yet\n"
    assert run(config, "drift", "credit", "--version", "99") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tunewatch: error: model 'credit' has no version 99" in captured.err


@pytest.mark.parametrize("name", ["apscheduler", "alembic"])
def test_routine_library_lines_are_left_out_unless_verbose(config: Path, name: str) -> None:
    """`tunewatch serve` logged two apscheduler lines per run of the 2 s launcher and the
    10 s lease at INFO: about 100k lines a day burying the daemon's own; and alembic a
    line per schema revision, some of them paragraphs, on every new store (the store logs
    one line for the whole migration)."""
    import logging

    library = logging.getLogger(name)
    _make_store(config)
    try:
        assert run(config, "models") == 0
        assert library.level == logging.WARNING
        library.setLevel(logging.NOTSET)
        assert main(["--config", str(config), "-v", "models"]) == 0
        assert library.level == logging.NOTSET
    finally:
        library.setLevel(logging.NOTSET)


def test_python_dash_m_tunewatch_is_the_command() -> None:
    """``python -m tunewatch`` said "No module named tunewatch.__main__"."""
    done = subprocess.run(
        [sys.executable, "-m", "tunewatch", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tunewatch" in done.stdout
