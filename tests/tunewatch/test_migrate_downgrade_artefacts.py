"""``tunewatch migrate --to`` below revision 0014 drops the PostgreSQL store's
``artefacts`` table, the only copy of an artefact registered from a host whose
``data_dir`` is gone: the command first keeps every row in this host's cache, verified,
and downgrades nothing when it cannot."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store
from tunewatch.store._migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.postgres

BELOW = "0013"  # the revision before the store kept artefacts
REPORT = b"<html>a drift report no version names</html>"


@pytest.fixture
def hosts(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[str], list[str]]]:
    """``--config`` arguments of two hosts sharing the PostgreSQL store, each with its own
    ``data_dir`` (``tmp_path/a``, ``tmp_path/b``). Leaves the store at the newest
    revision."""
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    monkeypatch.delenv("TUNEWATCH_DATA_DIR", raising=False)
    args = []
    for host in ("a", "b"):
        config = tmp_path / f"{host}.yaml"
        raw = {"data_dir": str(tmp_path / host), "store": {"url": pg_url}}
        config.write_text(yaml.safe_dump(raw))
        args.append(["--config", str(config), "--actor", "alice"])
    yield args[0], args[1]
    assert main([*args[0], "migrate"]) == 0
    assert _revisions(pg_url) == [_head()]


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _revisions(url: str) -> list[str]:
    store = Store(url)  # not Store.open: that migrates
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        store.close()


def _register_from_b_and_lose_b(
    tmp_path: Path, b: list[str], pg_url: str, model: ExampleModel
) -> dict[tuple[str, str], bytes]:
    """Host B registers a champion (and the store keeps a report no version names), then
    B's data_dir goes: the store holds the only copies. Returns them by (SHA-256, suffix)."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(model.onnx)
    features = ",".join(model.metadata.feature_names)
    register = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
    assert main([*b, *register, "--stage", "champion"]) == 0
    with Store.open(pg_url) as store:
        store.put_artefact(REPORT, ".html")
    shutil.rmtree(tmp_path / "b")
    return {
        (hashlib.sha256(model.onnx).hexdigest(), ".onnx"): model.onnx,
        (hashlib.sha256(REPORT).hexdigest(), ".html"): REPORT,
    }


def test_a_downgrade_below_0014_keeps_every_artefact_of_the_store_in_this_host_s_cache(
    tmp_path: Path,
    pg_url: str,
    hosts: tuple[list[str], list[str]],
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The downgrade dropped the table holding the champion's only copy: `export` then
    failed, "the store holds no copy of it"."""
    a, b = hosts
    assert main([*a, "migrate"]) == 0
    stored = _register_from_b_and_lose_b(tmp_path, b, pg_url, trained[0])
    capsys.readouterr()

    assert main([*a, "migrate", "--to", BELOW]) == 0
    assert _revisions(pg_url) == [BELOW]
    assert "kept 2 artefacts of the store in this host's cache" in capsys.readouterr().out
    for (sha, suffix), data in stored.items():
        cached = tmp_path / "a" / "artefacts" / sha[:2] / f"{sha}{suffix}"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
        assert cached.read_bytes() == data

    # back at the newest revision, host A's cache gives the champion to the store again
    assert main([*a, "migrate"]) == 0
    assert main([*a, "export", "credit", str(tmp_path / "bundle.zip")]) == 0
    with Store.open(pg_url) as store:
        onnx_sha = hashlib.sha256(trained[0].onnx).hexdigest()
        assert store.get_artefact(onnx_sha) == trained[0].onnx


@pytest.mark.parametrize("fault", ["a_corrupt_row", "a_cache_that_cannot_be_written"])
def test_a_downgrade_that_cannot_keep_every_artefact_downgrades_nothing(
    tmp_path: Path,
    pg_url: str,
    hosts: tuple[list[str], list[str]],
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    a, b = hosts
    assert main([*a, "migrate"]) == 0
    stored = _register_from_b_and_lose_b(tmp_path, b, pg_url, trained[0])
    onnx_sha = hashlib.sha256(trained[0].onnx).hexdigest()
    if fault == "a_corrupt_row":
        with Store.open(pg_url) as store, store.engine.begin() as conn:
            conn.execute(
                text("UPDATE artefacts SET data = :data WHERE sha256 = :sha"),
                {"data": b"X" + trained[0].onnx[1:], "sha": onnx_sha},
            )
        reason = "1 of 2"
    else:  # a file where host A's cache directory goes
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "artefacts").write_bytes(b"")
        reason = "2 of 2"
    capsys.readouterr()

    assert main([*a, "migrate", "--to", BELOW]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("tunewatch: error: ") and reason in line
    assert ("corrupt" if fault == "a_corrupt_row" else "cannot write artefact") in line
    assert _revisions(pg_url) == [_head()]
    with Store.open(pg_url) as store:
        for sha, suffix in stored:
            assert store.get_artefact(sha, suffix) is not None
