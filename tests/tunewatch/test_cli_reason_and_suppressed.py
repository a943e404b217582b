"""The ``tunewatch`` command line, run in-process on a real SQLite store: a ``--reason``
the API would refuse (empty, whitespace only), and a ``retune`` the quota or a cool-down
held back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store

MODEL = "credit"


def _config(tmp_path: Path, **model: Any) -> Path:
    path = tmp_path / "tunewatch.yaml"
    raw = {
        "data_dir": str(tmp_path / "data"),
        "models": [{"name": MODEL, "task": "binary", "regulated": True, **model}],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")


def run(config: Path, *args: str, actor: str = "alice") -> int:
    return main(["--config", str(config), "--actor", actor, *args])


@pytest.fixture
def governed(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """A regulated ``credit`` whose v2 replaced v1 as champion, and a pending request
    (alice's) to promote v1 again: every command taking a ``--reason`` would act on it."""
    config = _config(tmp_path)
    features = ",".join(trained[0].metadata.feature_names)
    for i, model in enumerate(trained):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(model.onnx)
        args = ("register", MODEL, str(onnx), "--task", "binary", "--features", features)
        assert run(config, *args) == 0
    for version in ("1", "2"):
        assert (
            run(config, "promote", MODEL, version, "--reason", f"v{version} is better") == 3
        )  # waits for bob
        with _store(tmp_path) as store:
            (pending,) = store.list_approvals(status="pending")
        assert run(config, "approve", str(pending.id), "--reason", "reviewed", actor="bob") == 0
    assert run(config, "promote", MODEL, "1", "--reason", "v1 again") == 3
    return config


def _written(tmp_path: Path) -> dict[str, Any]:
    """What a command could have written: audit entries, approvals, events, jobs and the
    champion."""
    with _store(tmp_path) as store:
        champion = store.champion(MODEL)
        return {
            "audit": [(a.action, a.actor, a.details) for a in store.audit_log(limit=1000)],
            "approvals": [(a.id, a.status) for a in store.list_approvals()],
            "events": [(e.id, e.type) for e in store.list_events(model=MODEL, limit=1000)],
            "jobs": [j.id for j in store.list_jobs()],
            "champion": None if champion is None else champion.version,
        }


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("", id="empty"),
        pytest.param(" ", id="a_space"),
        pytest.param(" \t\n", id="whitespace_only"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["promote", MODEL, "1"], id="promote"),
        pytest.param(["approve", "PENDING"], id="approve"),
        pytest.param(["reject", "PENDING"], id="reject"),
        pytest.param(["rollback", MODEL], id="rollback"),
        pytest.param(["retune", MODEL], id="retune"),
    ],
)
def test_an_empty_or_blank_reason_is_a_usage_error_before_any_write(
    governed: Path,
    tmp_path: Path,
    command: list[str],
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The API refuses an empty reason (422); the command line took it: the audit log
    recorded a request with reason "" and a regulated model was promoted on it."""
    with _store(tmp_path) as store:
        (pending,) = store.list_approvals(status="pending")
    command = [str(pending.id) if arg == "PENDING" else arg for arg in command]
    before = _written(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run(governed, *command, "--reason", reason, actor="bob")
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    length = {0: "0 characters", 1: "1 character", 3: "3 characters"}[len(reason)]
    assert f"`--reason` must hold a character other than whitespace, got {length}\n" in (
        captured.err
    )
    assert _written(tmp_path) == before


def test_a_reason_with_surrounding_whitespace_is_kept_as_given(
    governed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _store(tmp_path) as store:
        (pending,) = store.list_approvals(status="pending")
    assert run(governed, "reject", str(pending.id), "--reason", " not now ", actor="bob") == 0
    with _store(tmp_path) as store:
        (rejected,) = store.list_approvals(status="rejected")
    assert rejected.decision_reason == " not now "


@pytest.mark.parametrize(
    ("model", "tuning", "cause"),
    [
        pytest.param({}, {"max_concurrent_jobs": 1}, "quota: 1 tuning jobs active", id="quota"),
        pytest.param(
            {"triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 60}]},
            {"max_concurrent_jobs": 5},
            "cooling down: job 1",
            id="cooldown",
        ),
    ],
)
def test_a_suppressed_retune_says_so_on_stderr_and_exits_1(
    tmp_path: Path,
    trained: list[ExampleModel],
    model: dict[str, Any],
    tuning: dict[str, Any],
    cause: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It printed `retune suppressed: ...` on stdout, where a script reading the job's
    id would take it for output."""
    config = _config(tmp_path, **model)
    raw = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**raw, "tuning": tuning}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    args = ("register", MODEL, str(onnx), "--task", "binary", "--features", features)
    assert run(config, *args) == 0
    assert run(config, "retune", MODEL, "--reason", "first") == 0
    assert "retune taken (job 1)" in capsys.readouterr().out
    with _store(tmp_path) as store:
        # ended (a queued job 1 answers a second retune as its duplicate), and the quota's
        # one slot held by another model's job
        store.finish_job(1, status="succeeded", result={})
        if cause.startswith("quota"):
            store.ensure_model(name="other", task="binary", feature_names=["x"])
            store.create_job(model="other", kind="retune", trigger={}, spec={})
    assert run(config, "retune", MODEL, "--reason", "second") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("retune suppressed: ") and cause in captured.err
    with _store(tmp_path) as store:
        assert [j.id for j in store.list_jobs(model=MODEL)] == [1]


def test_a_retune_while_the_model_s_job_is_queued_prints_that_job_and_exits_0(
    tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    args = ("register", MODEL, str(onnx), "--task", "binary", "--features", features)
    assert run(config, *args) == 0
    assert run(config, "retune", MODEL, "--reason", "first") == 0
    capsys.readouterr()
    assert run(config, "retune", MODEL, "--reason", "second") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("retune duplicate (job 1): ") and captured.err == ""
    with _store(tmp_path) as store:
        assert [j.id for j in store.list_jobs()] == [1]


def test_retune_help_says_what_exit_1_means(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["retune", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split()).lower()
    assert "exit 1, the outcome on stderr" in text
    assert "quota" in text and "cool-down" in text
