"""Every stage change governance commits — a promotion, an approval request, an approval's
decision, a rollback — leaves one INFO line in the daemon's (or the CLI's) log naming the
model and version as ``model=… version=…`` (and the approval as ``approval=…``), whoever
asked for it: the API, the CLI, the comparison loop. A refused request is logged by
:func:`~tunewatch._governance.audit_denied`: a 409 (an ordinary conflict) at INFO, a 403
(a caller whose role may not do it) as a WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    copy_daemon,
    feed_better,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
)
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel

LOGGER = "tunewatch._governance"


@pytest.fixture
def made(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, dict[str, str]]]:
    """credit: v1 champion, v2 shadow; loans (regulated): v1 and v2 shadows, no champion;
    and a token per role (``test-<role>``)."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "models": [{"name": "loans", "task": "binary", "regulated": True}],
        },
    )
    for model in trained:
        daemon.registry.register("loans", model.onnx, model.metadata, actor="test")
    yield daemon, tokens
    daemon.close()


@pytest.fixture
def daemon(made: tuple[Daemon, dict[str, str]]) -> Daemon:
    return made[0]


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The governance module's records since the last ``caplog.clear()``."""
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_a_promotion_and_its_rollback_each_log_one_info_line(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    outcome = governance.promote(
        daemon.store, daemon.config, MODEL, 2, actor="alice", reason="won in shadow"
    )
    assert outcome.status == "promoted" and outcome.previous is not None
    [(level, line)] = _lines(caplog)
    assert level == logging.INFO
    assert line.startswith(f"model={MODEL} version=2 promoted (previous=1 ")
    assert line.endswith(" by 'alice': 'won in shadow'")
    caplog.clear()
    restored, rolled = governance.rollback(
        daemon.store, daemon.artefacts, MODEL, actor="alice", reason="worse"
    )
    assert (restored.version, rolled.version) == (1, 2)
    assert _lines(caplog) == [
        (
            logging.INFO,
            f"model={MODEL} version=1 restored by rollback of version=2 by 'alice': 'worse'",
        )
    ]


def test_a_retried_promotion_changes_nothing_and_logs_nothing(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 1, actor="alice", reason="x")
    assert outcome.unchanged
    assert _lines(caplog) == []


def test_an_approval_request_and_its_decisions_each_log_one_info_line(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store, config = daemon.store, daemon.config
    pending = governance.promote(store, config, "loans", 1, actor="alice", reason="first")
    assert pending.approval is not None
    first = pending.approval.id
    [(level, line)] = _lines(caplog)
    assert level == logging.INFO
    assert line.startswith(f"approval={first} model=loans version=1 requested by 'alice' (rules: ")
    assert "regulated" in line and line.endswith(": 'first'")
    caplog.clear()
    again = governance.promote(store, config, "loans", 1, actor="carol", reason="me too")
    assert again.approval is not None and again.approval.id == first
    [(level, line)] = _lines(caplog)
    assert level == logging.INFO
    assert line.startswith(f"approval={first} model=loans version=1 also requested by 'carol' ")
    caplog.clear()
    decided, promoted = governance.decide_approval(
        store, config, first, approver="bob", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None
    assert _lines(caplog) == [
        (
            logging.INFO,
            f"approval={first} model=loans version=1 approved by 'bob' and promoted "
            "(previous=none): 'checked'",
        )
    ]
    caplog.clear()
    second = governance.promote(store, config, "loans", 2, actor="alice", reason="second")
    assert second.approval is not None
    caplog.clear()
    decided, promoted = governance.decide_approval(
        store, config, second.approval.id, approver="bob", approve=False, reason="no"
    )
    assert decided.status == "rejected" and promoted is None
    assert _lines(caplog) == [
        (
            logging.INFO,
            f"approval={second.approval.id} model=loans version=2 rejected by 'bob': 'no'",
        )
    ]


def test_an_approval_closed_because_the_champion_changed_logs_it(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    store, config = daemon.store, daemon.config
    one = governance.promote(store, config, "loans", 1, actor="alice", reason="one")
    two = governance.promote(store, config, "loans", 2, actor="alice", reason="two")
    assert one.approval is not None and two.approval is not None
    governance.decide_approval(
        store, config, one.approval.id, approver="bob", approve=True, reason="ok"
    )
    caplog.set_level(logging.INFO, logger=LOGGER)
    decided, promoted = governance.decide_approval(
        store, config, two.approval.id, approver="bob", approve=True, reason="ok too"
    )
    assert decided.status == "rejected" and promoted is None
    [(level, line)] = _lines(caplog)
    assert level == logging.INFO
    assert line.startswith(
        f"approval={two.approval.id} model=loans version=2 closed unpromoted by 'bob': "
        "'not promoted: the champion changed from none to v1"
    )


def test_a_refused_rollback_logs_no_warning_and_logs_its_conflict_at_info(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(ConflictError, match="no_previous_champion|replaced no"):
        governance.rollback(
            daemon.store, daemon.artefacts, MODEL, actor="alice", reason="x", audit_refusal=True
        )
    [(level, line)] = _lines(caplog)
    assert level == logging.INFO
    assert line.startswith(f"denied rollback of {MODEL} by 'alice' (409 no_previous_champion): ")


def test_the_api_logs_changes_at_info_409_refusals_at_info_and_403_refusals_as_warnings(
    made: tuple[Daemon, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    daemon, tokens = made
    caplog.set_level(logging.INFO, logger=LOGGER)
    with BackgroundServer(daemon.app) as server:
        gov = Running(daemon=daemon, server=server, tokens=tokens)

        def post(path: str, role: str) -> httpx.Response:
            return httpx.post(
                f"{gov.url}{path}", json={"reason": "why"}, headers=gov.auth(role), timeout=30
            )

        refused = post(f"/v1/models/{MODEL}/rollback", "admin")
        assert refused.status_code == 409, refused.text
        forbidden = post(f"/v1/models/{MODEL}/versions/2/promote", "viewer")
        assert forbidden.status_code == 403, forbidden.text
        promoted = post(f"/v1/models/{MODEL}/versions/2/promote", "admin")
        assert promoted.status_code == 200, promoted.text
    lines = _lines(caplog)
    assert [level for level, _ in lines] == [logging.INFO, logging.WARNING, logging.INFO]
    assert lines[0][1].startswith(f"denied rollback of {MODEL} by 'test-admin' (409 ")
    assert lines[1][1].startswith(f"denied promote of {MODEL}/v2 by 'test-viewer' (403 forbidden)")
    assert lines[2][1].startswith(f"model={MODEL} version=2 promoted (previous=1 ")


def test_the_cli_s_promotion_and_rollback_are_logged(
    tmp_path: Path, trained: list[ExampleModel], caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)

    def run(*args: str) -> int:
        return main(["--config", str(config), "--actor", "alice", *args])

    for i in range(2):  # of two datasets: the same one again is a retry (`version_exists`)
        args = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
        assert run(*args, "--dataset-version", f"ds-{i + 1}") == 0
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert run("promote", "credit", "1", "--reason", "first") == 0
    assert run("promote", "credit", "2", "--reason", "second") == 0
    assert run("rollback", "credit", "--reason", "worse") == 0
    lines = _lines(caplog)
    assert [level for level, _ in lines] == [logging.INFO] * 3
    assert lines[0][1] == "model=credit version=1 promoted (previous=none) by 'alice': 'first'"
    assert lines[1][1].startswith("model=credit version=2 promoted (previous=1 ")
    assert lines[2][1] == (
        "model=credit version=1 restored by rollback of version=2 by 'alice': 'worse'"
    )


def test_the_comparison_loop_s_promotion_is_logged(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = copy_daemon(template, tmp_path / "loop")
    try:
        t = traffic(trained, 2000, seed=7)
        loop = runner(d)
        caplog.set_level(logging.INFO, logger=LOGGER)
        for start in range(0, 2000, BATCH):
            feed_better(d, t, start, start + BATCH)
            [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
            if paired.action != "none":
                break
        assert paired.action == "promoted"
        [(level, line)] = _lines(caplog)
        assert level == logging.INFO
        assert line.startswith(f"model={MODEL} version=2 promoted (previous=1 "), line
        assert " by 'tunewatch': 'comparison " in line
    finally:
        d.close()
