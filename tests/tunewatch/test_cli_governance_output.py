"""What the governance commands print: listings that say when they hold back rows, and a
token that is never left active unless it was shown."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import break_audit_appends
from tunewatch._auth import hash_token
from tunewatch._cli import main
from tunewatch.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(tmp_path: Path, store_url: str) -> tuple[Path, str]:
    """A config whose store is ``store_url`` (SQLite or PostgreSQL), and that URL."""
    path = tmp_path / "backend.yaml"
    raw = {"data_dir": str(tmp_path / "data"), "store": {"url": store_url}}
    path.write_text(yaml.safe_dump(raw))
    return path, store_url


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    return path, f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"


def run(config: Path, *args: str, actor: str = "alice") -> int:
    return main(["--config", str(config), "--actor", actor, *args])


def _notices(err: str) -> list[str]:
    """The command's own lines on stderr (not the log's)."""
    return [line for line in err.splitlines() if line.startswith("tunewatch:")]


def _request_approvals(url: str, model: str, count: int) -> None:
    with Store.open(url) as store:
        store.ensure_model(name=model, task="binary", feature_names=["x0"], regulated=True)
        for i in range(count):
            v = store.add_version(
                model=model,
                artefact_sha256=f"{model}{i}".encode().hex().ljust(64, "0"),
                hyperparameters={"i": i},
                size_bytes=1,
                actor="bob",
            )
            store.request_approval(
                model, v.version, requested_by="bob", reason="r", rules=["regulated model"]
            )


def _ids(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines()]


def test_approvals_past_the_limit_say_more_exist_and_a_higher_limit_shows_the_oldest(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With 130 pending requests `approvals --status pending` printed the 100 newest and
    nothing else: the requests waiting longest were invisible, with no flag to see them."""
    config, url = sqlite_backend
    assert run(config, "migrate") == 0
    _request_approvals(url, "reg", 130)
    capsys.readouterr()

    assert run(config, "approvals", "--status", "pending") == 0
    captured = capsys.readouterr()
    assert _ids(captured.out) == list(range(130, 30, -1))  # newest first, as the help says
    [notice] = _notices(captured.err)
    assert "100 approval requests shown" in notice and "--before-id 31 lists them" in notice

    # the next page, from the cursor the notice names, down to the oldest with no notice
    assert run(config, "approvals", "--status", "pending", "--before-id", "31") == 0
    captured = capsys.readouterr()
    assert _ids(captured.out) == list(range(30, 0, -1)) and _notices(captured.err) == []
    assert run(config, "approvals", "--limit", "10", "--before-id", "31") == 0
    [notice] = _notices(capsys.readouterr().err)
    assert "10 approval requests before request 31 shown" in notice
    assert "--before-id 21 lists them" in notice

    assert run(config, "approvals", "--status", "pending", "--limit", "200") == 0
    captured = capsys.readouterr()
    assert _ids(captured.out) == list(range(130, 0, -1))  # the oldest, 1, last
    assert _notices(captured.err) == []

    assert run(config, "approvals", "--limit", "130") == 0  # all of them: nothing held back
    captured = capsys.readouterr()
    assert len(_ids(captured.out)) == 130 and _notices(captured.err) == []


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param("0", id="zero"),
        pytest.param("10001", id="past_the_apis_maximum"),
        pytest.param("many", id="not_a_number"),
    ],
)
def test_approvals_limit_is_bounded_as_the_apis(
    sqlite_backend: tuple[Path, str], limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = sqlite_backend
    with pytest.raises(SystemExit) as exited:
        run(config, "approvals", "--limit", limit)
    assert exited.value.code == 2
    assert "`limit` must be an integer in [1, 10000]" in capsys.readouterr().err


@pytest.mark.parametrize("before_id", ["0", "-1", "1_0", "many"])
def test_approvals_before_id_is_an_id(
    sqlite_backend: tuple[Path, str], before_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = sqlite_backend
    with pytest.raises(SystemExit) as exited:
        run(config, "approvals", "--before-id", before_id)
    assert exited.value.code == 2
    assert "`before-id` must be an integer in [1, " in capsys.readouterr().err


def test_approvals_model_filters_and_an_unknown_model_is_an_error(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    assert run(config, "migrate") == 0
    _request_approvals(url, "reg", 2)
    _request_approvals(url, "other", 3)
    capsys.readouterr()

    assert run(config, "approvals", "--model", "other") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["other"] * 3
    assert _ids("\n".join(lines)) == [5, 4, 3]

    assert run(config, "approvals", "--model", "nosuch") == 2
    assert "model 'nosuch' is not registered" in capsys.readouterr().err


def test_audit_past_the_limit_says_older_entries_exist(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = sqlite_backend
    for name in ("a", "b", "c"):  # three create_token entries
        assert run(config, "tokens", "create", name, "--role", "viewer") == 0
    capsys.readouterr()

    assert run(config, "audit", "--limit", "2") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4  # two entries, the head, the chain's verdict
    [notice] = _notices(captured.err)
    assert "2 newest audit entries shown" in notice
    assert notice.endswith("older ones exist: --before-id 2 lists them")  # the oldest shown

    assert run(config, "audit", "--limit", "3") == 0
    assert _notices(capsys.readouterr().err) == []


class _FullDisk(io.TextIOBase):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


class _ReaderGone(io.TextIOBase):
    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def _closed_file() -> io.StringIO:
    stream = io.StringIO()
    stream.close()
    return stream


@pytest.mark.parametrize(
    "stdout",
    [
        pytest.param(_FullDisk, id="a_full_disk"),
        pytest.param(_ReaderGone, id="a_closed_pipe"),
        pytest.param(_closed_file, id="a_closed_file"),
        pytest.param(lambda: None, id="no_stdout"),  # fd 1 closed: Python sets None
    ],
)
def test_a_token_that_cannot_be_shown_is_revoked_and_its_name_stays_taken(
    backend: tuple[Path, str],
    stdout: Callable[[], io.TextIOBase | None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The token was stored, then printed: a failed print left an active admin token no one
    held, with exit 2 ("refused, nothing changed"), or, with stdout closed, exit 0 and
    "it is shown only once"."""
    config, url = backend
    monkeypatch.setattr(sys, "stdout", stdout())
    assert run(config, "tokens", "create", "ci", "--role", "admin", actor="ops") == 1
    monkeypatch.undo()
    [error] = _notices(capsys.readouterr().err)
    assert error.startswith("tunewatch: error: token 'ci' was revoked")
    assert "could not be shown" in error and "choose another name" in error
    with Store.open(url) as store:
        [token] = store.list_tokens()
        assert token.name == "ci" and token.revoked_at is not None
        audit = store.audit_log(limit=10)
    assert [(a.action, a.actor, a.target) for a in audit] == [
        ("revoke_token", "ops", "ci"),
        ("create_token", "ops", "ci"),
    ]
    # a revoked token keeps its name (the audit log names one token per actor)
    assert run(config, "tokens", "create", "ci", "--role", "admin") == 2
    assert "token named 'ci' exists" in capsys.readouterr().err


def test_a_token_neither_shown_nor_revoked_is_reported_active_with_exit_1(
    backend: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The revocation fails too (here: the audit log refuses appends once the token is
    stored): the operator is told the token is active and how to revoke it."""
    config, url = backend

    class BreaksTheAuditThenFails(io.TextIOBase):
        def write(self, text: str) -> int:
            with Store.open(url) as store:
                break_audit_appends(store)
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", BreaksTheAuditThenFails())
    assert run(config, "tokens", "create", "ci", "--role", "admin") == 1
    monkeypatch.undo()
    [error] = _notices(capsys.readouterr().err)
    assert "could not be shown (stdout: No space left on device) and is still active" in error
    assert error.endswith("revoke it: tunewatch tokens revoke ci")
    with Store.open(url) as store:
        [token] = store.list_tokens()
    assert token.revoked_at is None


def test_a_token_shown_is_active_and_is_the_one_printed(
    sqlite_backend: tuple[Path, str], capfd: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    assert run(config, "tokens", "create", "ci", "--role", "admin") == 0
    captured = capfd.readouterr()
    [token] = captured.out.splitlines()
    assert "created; it is shown only once" in captured.err
    with Store.open(url) as store:
        [row] = store.list_tokens()
    assert row.revoked_at is None and row.token_hash == hash_token(token)


@pytest.mark.parametrize(
    "redirect",
    [pytest.param("/dev/full", id="a_full_device"), pytest.param("&-", id="closed")],
)
def test_a_cli_process_that_cannot_show_a_token_revokes_it_and_exits_1(
    sqlite_backend: tuple[Path, str], redirect: str
) -> None:
    """The real process, with stdout buffered as a user's is (no PYTHONUNBUFFERED): a
    buffered token failed at exit, after the command had said it was created."""
    config, url = sqlite_backend
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "tunewatch", "--config", str(config), "--actor", "ops"]
    argv += ["tokens", "create", "ci", "--role", "admin"]
    # the shell redirects the child's stdout; this process writes to no device
    script = f'exec "$@" >{redirect}'
    done = subprocess.run(
        ["sh", "-c", script, "sh", *argv], stderr=subprocess.PIPE, text=True, env=env, check=False
    )
    assert done.returncode == 1, done.stderr
    [error] = _notices(done.stderr)
    assert error.startswith("tunewatch: error: token 'ci' was revoked")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    with Store.open(url) as store:
        [token] = store.list_tokens()
    assert token.revoked_at is not None
