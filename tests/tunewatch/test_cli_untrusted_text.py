"""What the CLI prints of text a person or a client stored (a reason sent to the API, a
job's trigger, a model named before names had to be printable) cannot write terminal
escape sequences or start a line of its own: a cancel reason such as
``why\\x1b]0;pwned\\x07\\x1b[2K\\r\\n3 credit succeeded 12/12 trials manual -> v9`` set the
terminal's title, erased the row and forged a succeeded job below it in ``jobs``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert

from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._schema import models

MODEL = "credit"
FORGED = "3     credit           succeeded  12/12 trials   manual -> v9"
HOSTILE = f"why\x1b]0;pwned\x07\x1b[2K\r\n{FORGED}"


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    url = f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"
    assert main(["--config", str(path), "migrate"]) == 0
    with Store.open(url) as store:
        store.ensure_model(name=MODEL, task="binary", feature_names=["x0"])
    return path, url


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--actor", "alice", *args])


def _lines(out: str) -> list[str]:
    """``out``'s lines, each checked to hold no control character: no escape sequence,
    no carriage return, no line of its own started by stored text."""
    lines = out.splitlines()
    for line in lines:
        assert all(ch >= " " and ch != "\x7f" for ch in line), repr(line)
    return lines


def test_jobs_shows_a_cancel_reason_sent_through_the_api_escaped_on_its_row(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    with Store.open(url) as store:
        job, _ = store.create_job(model=MODEL, kind="retune", trigger={"event": "manual"}, spec={})
        store.cancel_job(job.id, actor="bob", reason=HOSTILE)  # as POST /v1/jobs/{id}/cancel
    capsys.readouterr()

    assert run(config, "jobs") == 0
    [row] = _lines(capsys.readouterr().out)
    assert row.startswith(f"{job.id} ") and "cancelled" in row
    assert r"why\x1b]0;pwned\x07\x1b[2K\r\n3" in row  # the reason, readable and on its row


def test_jobs_shows_a_trigger_a_failure_and_an_old_model_name_escaped(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A job's trigger event and error, and a model name stored before names had to be
    printable, each stay on the job's row."""
    config, url = sqlite_backend
    old_name = "old\x1b[31m\nname"
    with Store.open(url) as store:
        with store.engine.begin() as conn:  # a row from before the name rule
            conn.execute(
                insert(models).values(
                    name=old_name,
                    task="binary",
                    feature_names=["x0"],
                    regulated=False,
                    created_at=datetime(2024, 1, 1, tzinfo=UTC),
                )
            )
        triggered, _ = store.create_job(
            model=MODEL, kind="retune", trigger={"event": f"e\x1b[2K\r{FORGED}"}, spec={}
        )
        failed, _ = store.create_job(
            model=old_name, kind="retune", trigger={"event": "manual"}, spec={}
        )
        store.finish_job(failed.id, status="failed", error=f"boom\n{FORGED}", replacing=("queued",))
    capsys.readouterr()

    assert run(config, "jobs") == 0
    rows = _lines(capsys.readouterr().out)
    assert [int(row.split()[0]) for row in rows] == [failed.id, triggered.id]
    assert repr(old_name) in rows[0] and repr(f"boom\n{FORGED}") in rows[0]
    assert repr(f"e\x1b[2K\r{FORGED}") in rows[1]


def test_cancel_shows_the_reason_it_stored_escaped(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    with Store.open(url) as store:
        job, _ = store.create_job(model=MODEL, kind="retune", trigger={"event": "manual"}, spec={})
    capsys.readouterr()

    assert run(config, "cancel", str(job.id), "--reason", HOSTILE) == 0
    [line] = _lines(capsys.readouterr().out)
    assert line.startswith(f"job {job.id} ") and r"\x1b[2K\r\n3" in line


def test_models_shows_a_model_name_from_before_the_name_rule_escaped(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    old_name = "old\x1b[31m\r\nforged  task=binary"
    with Store.open(url) as store, store.engine.begin() as conn:  # from before the rule
        conn.execute(
            insert(models).values(
                name=old_name,
                task="binary",
                feature_names=["x0"],
                regulated=False,
                created_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
    capsys.readouterr()

    assert run(config, "models") == 0
    listed = _lines(capsys.readouterr().out)
    assert [line.split()[0] for line in listed] == [MODEL, repr(old_name).split()[0]]
