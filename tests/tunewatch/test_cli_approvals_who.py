"""``tunewatch approvals`` names who asked for each request and who decided it (and, a
decided one, why: a request closed unpromoted is stored as rejected, and its reason says
so), as the rationale report does."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    raw = {
        "data_dir": str(tmp_path / "data"),
        "models": [{"name": "credit", "task": "binary", "regulated": True}],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def run(config: Path, *args: str, actor: str = "alice") -> int:
    return main(["--config", str(config), "--actor", actor, *args])


def _listed(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[int, str]:
    """`approvals`' lines by request id, each without its id."""
    capsys.readouterr()
    assert run(config, "approvals", actor="viewer") == 0
    lines = capsys.readouterr().out.splitlines()
    return {int(line.split()[0]): " ".join(line.split()[1:]) for line in lines}


def test_approvals_name_the_requester_and_the_decider(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """alice asked, bob approved request 1 and carol rejected request 3: the listing read
    "approved by alice" and "rejected by alice" — the requester deciding her own request,
    which the same-person rule forbids — and named neither bob nor carol."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    for i in range(3):  # of three datasets: the same one again is a retry (`version_exists`)
        register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
        assert run(config, *register, "--dataset-version", f"ds-{i + 1}") == 0
    assert run(config, "promote", "credit", "1", "--reason", "first") == 3  # request 1
    assert run(config, "promote", "credit", "3", "--reason", "also first") == 3  # request 2
    assert run(config, "approve", "1", "--reason", "reviewed", actor="bob") == 0
    # request 2 was made with no champion, v1 is champion now: closed unpromoted
    assert run(config, "approve", "2", "--reason", "ok", actor="bob") == 1
    assert run(config, "promote", "credit", "2", "--reason", "second") == 3  # request 3
    assert run(config, "reject", "3", "--reason", "not convinced", actor="carol") == 0
    assert run(config, "promote", "credit", "3", "--reason", "third") == 3  # request 4
    listed = _listed(config, capsys)
    expires = listed[4].removeprefix(
        "credit v3 pending (requested by alice; rules: regulated model"
    )
    assert re.fullmatch(r"; expires \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\)", expires), expires
    assert listed == {
        4: f"credit v3 pending (requested by alice; rules: regulated model{expires}",
        3: "credit v2 rejected by carol (requested by alice; rules: regulated model): "
        "not convinced",
        2: "credit v3 rejected by bob (requested by alice; rules: regulated model): "
        "not promoted: the champion changed from none to v1 since the request (ok)",
        1: "credit v1 approved by bob (requested by alice; rules: regulated model): reviewed",
    }
    decided = " ".join(listed.values())
    assert "approved by alice" not in decided and "rejected by alice" not in decided


def test_approvals_name_everyone_who_asked_for_a_pending_request(
    config: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """A second person asking for the same promotion while it is pending is one of its
    requesters (neither may approve it): the listing names both."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert run(config, *register) == 0
    assert run(config, "promote", "credit", "1", "--reason", "first") == 3
    assert run(config, "promote", "credit", "1", "--reason", "me too", actor="dave") == 3
    [listed] = _listed(config, capsys).items()
    assert listed[0] == 1
    assert listed[1].startswith(
        "credit v1 pending (requested by alice, dave; rules: regulated model; expires "
    )


@pytest.mark.parametrize("days", [7, None], ids=["weekly", "never"])
def test_approvals_say_when_a_pending_request_expires(
    tmp_path: Path,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
    days: int | None,
) -> None:
    """A pending request's line ends with when it expires (``approvals.expire_after_days``;
    approved after, it is closed unpromoted), to the second in UTC, as the API's
    ``expires_at``; nothing when requests never expire."""
    config = tmp_path / "tunewatch.yaml"
    raw = {
        "data_dir": str(tmp_path / "data"),
        "approvals": {"expire_after_days": days},
        "models": [{"name": "credit", "task": "binary", "regulated": True}],
    }
    config.write_text(yaml.safe_dump(raw))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert run(config, *register) == 0
    assert run(config, "promote", "credit", "1", "--reason", "first") == 3
    store = Store(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
    try:
        [request] = store.list_approvals()
    finally:
        store.close()
    expiry = ""
    if days is not None:
        expiry = f"; expires {request.created_at + timedelta(days=days):%Y-%m-%d %H:%M:%S}Z"
    assert _listed(config, capsys) == {
        1: f"credit v1 pending (requested by alice; rules: regulated model{expiry})"
    }
