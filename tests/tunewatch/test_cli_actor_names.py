"""``--actor`` (and ``$USER`` without it) names a person in the audit log, held to the
rules a token's name is: not one of the daemon's own actors (``tunewatch``, ``system``,
``scheduler``, ``job:<id>``, case and width ignored), not the bootstrap admin's names or
names reading as them, no space first or last. ``--actor job:1 register`` made the
hand-registered version's report say tuning job 1 registered it, and ``--actor
tunewatch rollback`` read as the daemon's own rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    return path


@pytest.mark.parametrize(
    "actor",
    ["tunewatch", "System", "job:1", "Job：7", "bootstrap-admin", "bootstrap-admin-2",
     "Bootstrap-Admin", "alice ", " alice"],
)  # fmt: skip
def test_an_actor_no_token_could_be_named_is_a_usage_error(
    config: Path, actor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "--actor", actor, "retune", "credit"])
    assert exited.value.code == 2
    assert "--actor" in capsys.readouterr().err
    assert not (config.parent / "data").exists()  # refused before the store opens


def test_a_user_named_as_the_daemon_must_pass_an_actor(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image runs as the user ``tunewatch``: a promotion run there without
    ``--actor`` was audited as the daemon's own."""
    monkeypatch.setenv("USER", "tunewatch")
    assert main(["--config", str(config), "tag", "credit", "1", "ticket=RISK-1"]) == 2
    err = capsys.readouterr().err
    assert "$USER" in err and "pass --actor" in err


def test_a_person_s_actor_is_taken(config: Path) -> None:
    """A rotated token's name is a person's (``alice#2`` is ``alice``)."""
    assert main(["--config", str(config), "--actor", "alice#2", "migrate"]) == 0
