"""``tunewatch tag MODEL VERSION KEY=VALUE ... [--delete KEY ...]``: set and delete a
version's tags from the command line, each change audited under the CLI's actor; a tag
outside the convention is a usage error before the store is opened. ``tunewatch models``
shows each version's tags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch._report import report_stem
from tunewatch.store import Store


@pytest.fixture
def config(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """credit: v1, a shadow."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    args = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert run(path, *args) == 0
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--actor", "alice", *args])


def _store(config: Path) -> Store:
    return Store.open(f"sqlite:///{config.parent / 'data' / 'tunewatch.db'}")


def test_tags_set_from_the_command_line_are_stored_and_audited_by_the_actor(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(config, "tag", "credit", "1", "ticket=RISK-123", "validation=passed") == 0
    out = capsys.readouterr().out
    assert "credit v1: set ticket=RISK-123" in out and "credit v1: set validation=passed" in out
    with _store(config) as store:
        tags = store.version_tags("credit", 1)
        entries = store.audit_log(limit=10, action="set_tag")
    assert [(t.key, t.value, t.set_by) for t in tags] == [
        ("ticket", "RISK-123", "alice"),
        ("validation", "passed", "alice"),
    ]
    assert {(e.actor, e.target) for e in entries} == {("alice", "credit/v1")}


def test_a_value_may_hold_an_equals_sign_and_be_empty(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "tag", "credit", "1", "query=a=b", "note=") == 0
    with _store(config) as store:
        assert {t.key: t.value for t in store.version_tags("credit", 1)} == {
            "note": "",
            "query": "a=b",
        }


def test_delete_removes_tags_and_a_missing_one_is_an_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "tag", "credit", "1", "ticket=RISK-1", "owner=risk") == 0
    capsys.readouterr()
    assert run(config, "tag", "credit", "1", "--delete", "ticket", "owner") == 0
    assert "credit v1: deleted ticket (was RISK-1)" in capsys.readouterr().out
    assert run(config, "tag", "credit", "1", "--delete", "ticket") == 2
    assert "has no tag 'ticket'" in capsys.readouterr().err
    with _store(config) as store:
        assert store.version_tags("credit", 1) == []
        assert [e.actor for e in store.audit_log(limit=10, action="delete_tag")] == ["alice"] * 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("ok=1", "ticket"), "KEY=VALUE"),
        (("ok=1", "Ticket=x"), "[a-z0-9._/-]"),
        (("ok=1", "tunewatch.owner=x"), "reserved"),
        (("ok=1", "ticket=a\tb"), "printable"),
        (("ok=1", "--delete", "Bad"), "[a-z0-9._/-]"),
        ((), "KEY=VALUE or --delete KEY"),
    ],
    ids=["no-equals", "upper-case", "reserved", "tab", "delete-bad-key", "nothing"],
)
def test_a_tag_outside_the_convention_is_a_usage_error_and_nothing_is_written(
    config: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], says: str
) -> None:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(config, "tag", "credit", "1", *args)
    assert info.value.code == 2
    assert says in capsys.readouterr().err
    with _store(config) as store:
        assert store.version_tags("credit", 1) == []


def test_tags_of_a_missing_version_are_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "tag", "credit", "7", "ticket=x") == 2
    assert "has no version 7" in capsys.readouterr().err


def test_models_lists_each_version_s_tags(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "tag", "credit", "1", "ticket=RISK-1", "validation=passed") == 0
    capsys.readouterr()
    assert run(config, "models") == 0
    listing = capsys.readouterr().out
    assert "tags: ticket=RISK-1 validation=passed" in listing


def test_a_tag_change_from_the_command_line_rewrites_the_version_s_report_file(
    config: Path,
) -> None:
    report = config.parent / "data" / "reports" / f"{report_stem('credit', 1)}.md"
    assert run(config, "tag", "credit", "1", "ticket=RISK-123") == 0
    assert "| ticket | RISK-123 | alice |" in report.read_text()
    assert run(config, "tag", "credit", "1", "--delete", "ticket") == 0
    assert "RISK-123" not in report.read_text()
