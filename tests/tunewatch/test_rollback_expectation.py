"""A rollback rolls back the champion it means, or nothing: ``rolled_back`` is final, so a
rollback that lands after another one (the rollback watch's, an operator's retry) must
not roll back the version that other rollback restored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch.comparison._results import ACTOR
from tunewatch.store import VersionRow

WATCH_REASON = "rollback watch: v3's realised loss is worse than v2's"


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """credit: v1 then v2 then v3 promoted; v3 serves."""
    d, tokens = make_daemon(tmp_path, trained)
    d.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="test")  # v3
    d.store.promote(MODEL, 2, actor="alice", reason="v2 won")
    d.store.promote(MODEL, 3, actor="alice", reason="v3 won")
    with BackgroundServer(d.app) as server:
        yield Running(daemon=d, server=server, tokens=tokens)
    d.close()


def _stages(d: Daemon) -> dict[int, str]:
    return {v.version: v.stage for v in d.store.list_versions(MODEL)}


def _rollback_actors(d: Daemon) -> list[str]:
    return [e.actor for e in d.store.audit_log(limit=10, action="rollback")]


def _watch_rolls_back_v3(d: Daemon) -> None:
    governance.rollback(
        d.store, d.artefacts, MODEL, actor=ACTOR, reason=WATCH_REASON, expected_champion=3
    )


def test_a_rollback_that_read_a_champion_another_rollback_replaced_rolls_back_nothing(
    daemon: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carol's rollback read v3 as the champion; the rollback watch rolled v3 back before
    her write. The retry read v2 (restored by the watch) and rolled it back too: a good
    version lost for good, and the model left on v1."""
    d = daemon.daemon
    real = d.store.rollback

    def watch_first(model: str, **kwargs: Any) -> tuple[VersionRow, VersionRow]:
        monkeypatch.setattr(d.store, "rollback", real)  # the watch commits once, first
        _watch_rolls_back_v3(d)
        return real(model, **kwargs)

    monkeypatch.setattr(d.store, "rollback", watch_first)
    with pytest.raises(ConflictError) as err:
        governance.rollback(d.store, d.artefacts, MODEL, actor="carol", reason="v3 is bad")
    assert err.value.code == "champion_changed"
    assert "from v3 to v2" in err.value.message
    assert "nothing was rolled back" in err.value.message
    assert _stages(d) == {1: "retired", 2: "champion", 3: "rolled_back"}
    assert _rollback_actors(d) == [ACTOR]


def test_a_rollback_naming_the_champion_rolls_it_back(daemon: Running) -> None:
    restored, rolled = governance.rollback(
        daemon.daemon.store,
        daemon.daemon.artefacts,
        MODEL,
        actor="carol",
        reason="v3 is bad",
        expected_champion=3,
    )
    assert (restored.version, rolled.version) == (2, 3)


def test_an_api_rollback_naming_a_champion_already_rolled_back_changes_nothing(
    daemon: Running,
) -> None:
    d = daemon.daemon
    _watch_rolls_back_v3(d)
    url = f"{daemon.url}/v1/models/{MODEL}/rollback"
    late = httpx.post(
        url, json={"reason": "v3 is bad", "champion": 3}, headers=daemon.auth("operator")
    )
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "champion_changed"
    assert "from v3 to v2" in late.json()["error"]
    assert _stages(d) == {1: "retired", 2: "champion", 3: "rolled_back"}
    assert _rollback_actors(d) == [ACTOR]

    meant = httpx.post(
        url, json={"reason": "v2 is bad too", "champion": 2}, headers=daemon.auth("operator")
    )
    assert meant.status_code == 200, meant.text
    assert (meant.json()["champion"]["version"], meant.json()["rolled_back"]["version"]) == (1, 2)


def test_an_api_rollback_refuses_a_champion_that_is_not_a_version_number(
    daemon: Running,
) -> None:
    r = httpx.post(
        f"{daemon.url}/v1/models/{MODEL}/rollback",
        json={"reason": "v3 is bad", "champion": 0},
        headers=daemon.auth("operator"),
    )
    assert r.status_code == 400, r.text
    assert "champion" in r.json()["error"]
    assert _stages(daemon.daemon)[3] == "champion"


def test_the_cli_rollback_naming_a_stale_champion_changes_nothing(
    daemon: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = daemon.daemon
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(d.config.data_dir)}))
    cli = ["--config", str(config), "--actor", "carol", "rollback", MODEL, "--reason", "bad"]
    _watch_rolls_back_v3(d)
    assert main([*cli, "--champion", "3"]) == 2
    assert "from v3 to v2" in capsys.readouterr().err
    assert _stages(d) == {1: "retired", 2: "champion", 3: "rolled_back"}
    assert main([*cli, "--champion", "2"]) == 0
    assert "version 1 is champion again; version 2 rolled back" in capsys.readouterr().out


def test_the_cli_rollback_naming_no_champion_keeps_the_one_a_rollback_restored(
    daemon: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run again (its answer lost, or after the rollback watch's), a rollback without
    ``--champion`` rolled back the v2 the first restored, for good; it names the option
    that rolls it back deliberately."""
    d = daemon.daemon
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(d.config.data_dir)}))
    cli = ["--config", str(config), "--actor", "carol", "rollback", MODEL, "--reason", "bad"]
    assert main(cli) == 0
    assert "version 2 is champion again; version 3 rolled back" in capsys.readouterr().out
    assert main(cli) == 2
    err = capsys.readouterr().err
    assert "version 2" in err and "'carol'" in err and "--champion 2" in err, err
    assert _stages(d) == {1: "retired", 2: "champion", 3: "rolled_back"}
    assert [e.details["code"] for e in d.store.audit_log(1, action="denied_rollback")] == [
        "champion_changed"
    ]
    assert main([*cli, "--champion", "2"]) == 0
    assert "version 1 is champion again; version 2 rolled back" in capsys.readouterr().out
