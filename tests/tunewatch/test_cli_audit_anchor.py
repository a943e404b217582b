"""``tunewatch audit --anchor ID:HASH``: an entry's hash, recorded outside the store, checks
that the log still holds that entry as it was.

The chain alone cannot tell a rewritten log from an intact one: its hashes are keyed by
nothing but the entries, so whoever can write the tables can rewrite an entry and
recompute every hash after it and the head, and ``tunewatch audit`` said "audit chain
intact". A hash kept elsewhere (a ticket, a log shipped off the host) does not move with
them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._audit import entry_hash
from tunewatch.store._schema import ZERO_HASH


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "models": []}))
    return path


def _run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--actor", "alice", *args])


def _db(config: Path) -> Path:
    return config.parent / "data" / "tunewatch.db"


def _with_three_entries(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Three ``create_token`` entries; their hashes, oldest first."""
    for name in ("ci", "ops", "viewer"):
        assert _run(config, "tokens", "create", name, "--role", "viewer") == 0
    capsys.readouterr()
    with Store.open(f"sqlite:///{_db(config)}") as store:
        return [e.hash for e in reversed(store.audit_log(limit=10))]


def _rewrite_the_log(db: Path, *, entry_id: int, actor: str) -> None:
    """What a person with write access to the tables can do: change entry ``entry_id``'s
    actor, then recompute the hash of every entry from it on and the head, so the chain
    verifies."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        triggers = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('audit_entries', 'audit_head')"
        ).fetchall()
        for (name,) in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("UPDATE audit_entries SET actor = ? WHERE id = ?", (actor, entry_id))
        with Store.open(f"sqlite:///{db}") as store:
            entries = list(reversed(store.audit_log(limit=10)))
        prev = ZERO_HASH
        for e in entries:
            chained = entry_hash(
                prev,
                at=e.at,
                actor=actor if e.id == entry_id else e.actor,
                action=e.action,
                target=e.target,
                details=e.details,
            )
            conn.execute(
                "UPDATE audit_entries SET prev_hash = ?, hash = ? WHERE id = ?",
                (prev, chained, e.id),
            )
            prev = chained
        conn.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_audit_prints_the_head_to_record_as_an_anchor(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = _with_three_entries(config, capsys)
    assert _run(config, "audit") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "audit chain intact"
    assert lines[-2].startswith(f"audit head: entry 3, hash {hashes[2]} (")
    assert f"tunewatch audit --anchor 3:{hashes[2]}" in lines[-2]


def test_an_anchor_the_log_still_holds_passes(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = _with_three_entries(config, capsys)
    assert _run(config, "audit", "--anchor", f"1:{hashes[0]}", "--anchor", f"3:{hashes[2]}") == 0
    out = capsys.readouterr().out
    assert f"audit anchor holds: entry 1, hash {hashes[0]}" in out
    assert f"audit anchor holds: entry 3, hash {hashes[2]}" in out


def test_a_log_rewritten_and_rehashed_verifies_but_fails_its_anchor(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = _with_three_entries(config, capsys)
    _rewrite_the_log(_db(config), entry_id=2, actor="mallory")
    assert _run(config, "audit") == 0  # the chain alone cannot tell
    capsys.readouterr()
    assert _run(config, "audit", "--anchor", f"2:{hashes[1]}") == 1
    out = capsys.readouterr().out
    assert "audit anchor broken: entry 2 has hash" in out
    assert f"the anchor recorded {hashes[1]}" in out
    assert "audit chain intact" in out  # the chain itself still verifies: said so
    # an anchor before the rewritten entry still holds
    assert _run(config, "audit", "--anchor", f"1:{hashes[0]}") == 0


def test_an_anchor_naming_an_entry_the_log_no_longer_holds_fails(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_three_entries(config, capsys)
    assert _run(config, "audit", "--anchor", f"9:{'a' * 64}") == 1
    assert "audit anchor broken: the log holds no entry 9" in capsys.readouterr().out


@pytest.mark.parametrize("anchor", ["3", "3:", "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "G" * 64])
def test_a_malformed_anchor_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str], anchor: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run(config, "audit", "--anchor", anchor)
    assert exit_.value.code == 2
    assert "`anchor` must be ID:HASH" in capsys.readouterr().err
