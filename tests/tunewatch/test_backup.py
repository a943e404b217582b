"""``tunewatch backup DIR``: a consistent copy of the embedded store, its tuning storage and
its artefacts, taken while the daemon records requests, and usable as a ``data_dir``.

A ``cp -r`` of a live data directory (SQLite in WAL mode) gave corrupt copies under
recording load: ``integrity_check`` errors, foreign-key violations, acknowledged requests
missing."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import optuna
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._artefacts import ArtefactStore
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._backup_partial import publish
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import TunewatchError
from tunewatch._example import ExampleModel

#: Requests the load sends in all, from each of ``CLIENTS`` threads; the backup starts
#: once ``BEFORE`` of them were acknowledged, the rest are sent while it runs and after.
CLIENTS = 4
PER_CLIENT = 75
BEFORE = 100
ROWS = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)


@dataclass
class Taken:
    """A backup taken under load, and what the load had acknowledged when it began."""

    data_dir: Path
    backup: Path
    acknowledged_before: frozenset[str]
    acknowledged: frozenset[str]
    exit_code: int
    out: str  # what the command printed
    answer: list[float]  # the champion's answer to ``ROWS`` before the backup


def _config(path: Path, data_dir: Path, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({"data_dir": str(data_dir), **extra}))
    return path


def _infer(request_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "inputs": [
            {
                "name": "input",
                "shape": list(ROWS.shape),
                "datatype": "FP32",
                "data": ROWS.ravel().tolist(),
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def _tuning_storage(data_dir: Path) -> None:
    """A study in the default tuning storage (``optuna.db`` under ``data_dir``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{data_dir / 'optuna.db'}", study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    # and one the leader archived (tuning.archive_after_days) to the default archive
    archived = optuna.create_study(
        storage=f"sqlite:///{data_dir / 'optuna-archive.db'}", study_name="old"
    )
    archived.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)


@pytest.fixture(scope="module")
def taken(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taken]:
    """``tunewatch backup`` run while ``CLIENTS`` threads send requests to a daemon."""
    base = tmp_path_factory.mktemp("backup")
    data_dir = base / "data"
    daemon, tokens = make_daemon(data_dir, trained)
    _tuning_storage(data_dir)
    config = _config(base / "tunewatch.yaml", data_dir)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    failures: list[str] = []

    def client(k: int, url: str) -> None:
        headers = {"Authorization": f"Bearer {tokens['scorer']}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            for n in range(PER_CLIENT):
                r = c.post(f"/v2/models/{MODEL}/infer", json=_infer(f"b{k}-{n}"))
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                with lock:
                    acked.append(f"b{k}-{n}")
                    if len(acked) >= BEFORE:
                        enough.set()

    try:
        with BackgroundServer(daemon.app) as server:
            with httpx.Client(base_url=server.url) as c:
                r = c.post(
                    f"/v2/models/{MODEL}/infer",
                    json=_infer(),
                    headers={"Authorization": f"Bearer {tokens['scorer']}"},
                )
                assert r.status_code == 200, r.text
                answer = r.json()["outputs"][-1]["data"]
            threads = [
                threading.Thread(target=client, args=(k, server.url)) for k in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            assert enough.wait(60), failures[:3]
            with lock:
                before = frozenset(acked)
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    code = main(["--config", str(config), "backup", str(base / "copy")])
            finally:  # the load ends before the daemon does
                for t in threads:
                    t.join(120)
    finally:
        daemon.close()
    assert not failures, failures[:3]
    yield Taken(
        data_dir=data_dir,
        backup=base / "copy",
        acknowledged_before=before,
        acknowledged=frozenset(acked),
        exit_code=code,
        out=out.getvalue(),
        answer=answer,
    )


def test_backup_under_recording_load_is_consistent_and_holds_every_acknowledged_request(
    taken: Taken,
) -> None:
    assert taken.exit_code == 0
    assert len(taken.acknowledged) > len(taken.acknowledged_before)  # the load went on
    with sqlite3.connect(f"{(taken.backup / 'tunewatch.db').as_uri()}?mode=ro", uri=True) as c:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
        stored = {r[0] for r in c.execute("SELECT request_id FROM requests")}
    assert taken.acknowledged_before <= stored
    assert {r for r in stored if r.startswith("b")} <= taken.acknowledged


def test_backup_holds_the_tuning_storage_and_every_artefact_owner_only(taken: Taken) -> None:
    for path in [taken.backup, *taken.backup.rglob("*")]:  # before anything opens them
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    live = sorted(p.relative_to(taken.data_dir) for p in (taken.data_dir / "artefacts").rglob("*"))
    copied = sorted(p.relative_to(taken.backup) for p in (taken.backup / "artefacts").rglob("*"))
    files = [p for p in copied if (taken.backup / p).is_file()]
    assert copied == live and len(files) >= 3  # two ONNX files and a reference snapshot
    said = " ".join(taken.out.split())
    assert "tunewatch.db" in said and "optuna.db" in said, taken.out
    assert f"artefacts/ {len(files)} files" in said, taken.out
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{taken.backup / 'optuna.db'}")
    assert len(study.trials) == 2
    # the archived studies too: warm start and the dashboard read them there
    assert "optuna-archive.db" in said, taken.out
    archive = f"sqlite:///{taken.backup / 'optuna-archive.db'}"
    assert len(optuna.load_study(study_name="old", storage=archive).trials) == 3


def test_backup_directory_opens_as_a_data_dir_serving_the_champion_with_its_audit_chain(
    taken: Taken, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path / "restored.yaml", taken.backup)
    capsys.readouterr()
    assert main(["--config", str(config), "audit"]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    daemon = Daemon(build_config({"data_dir": str(taken.backup)}, env={}), env={})
    try:
        champion = daemon.store.champion(MODEL)
        assert champion is not None and champion.version == 1
        ArtefactStore(taken.backup / "artefacts").get(champion.artefact_sha256)
        token = new_token()
        daemon.store.add_token(
            name="restored", role="scorer", token_hash=hash_token(token), actor="t"
        )
        with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
            r = c.post(
                f"/v2/models/{MODEL}/infer",
                json=_infer(),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == "1"
            assert r.json()["outputs"][-1]["data"] == taken.answer
    finally:
        daemon.close()


# -- refusals: exit 2, one line, nothing written -----------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A config whose data_dir holds a (small) store."""
    data_dir = tmp_path / "data"
    config = _config(tmp_path / "tunewatch.yaml", data_dir)
    assert main(["--config", str(config), "migrate"]) == 0
    return config


def _refused(config: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["--config", str(config), "backup", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("tunewatch: error: "), err
    return err


def test_backup_refuses_a_directory_that_is_not_empty(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "full"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    err = _refused(live, target, capsys)
    assert "not empty" in err and str(target) in err
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_backup_refuses_a_directory_inside_the_data_dir(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "data" / "backups" / "today"
    err = _refused(live, target, capsys)
    assert "inside the data_dir" in err
    assert not (tmp_path / "data" / "backups").exists()


def test_backup_refuses_a_postgresql_store_naming_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(
        tmp_path / "pg.yaml",
        tmp_path / "data",
        store={"url": "postgresql+psycopg://postgres:secret@127.0.0.1:5432/test"},
    )
    target = tmp_path / "copy"
    err = _refused(config, target, capsys)
    assert "pg_dump" in err and "secret" not in err
    assert not target.exists()


def test_backup_refuses_a_store_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path / "tunewatch.yaml", tmp_path / "nowhere")
    err = _refused(config, tmp_path / "copy", capsys)
    assert "no store at" in err
    assert not (tmp_path / "copy").exists() and not (tmp_path / "nowhere").exists()


def test_backup_leaves_out_a_damaged_artefact_saying_so_and_exits_1(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    daemon, _ = make_daemon(data_dir, trained)
    try:
        damaged = daemon.artefacts.path(daemon.store.champion(MODEL).artefact_sha256)  # type: ignore[union-attr]
    finally:
        daemon.close()
    damaged.write_bytes(damaged.read_bytes()[:100])
    config = _config(tmp_path / "tunewatch.yaml", data_dir)
    capsys.readouterr()
    assert main(["--config", str(config), "backup", str(tmp_path / "copy")]) == 1
    out, err = capsys.readouterr()
    assert damaged.name in err and "corrupt" in err
    assert not (tmp_path / "copy" / damaged.relative_to(data_dir)).exists()
    assert (tmp_path / "copy" / "tunewatch.db").exists() and "tunewatch.db" in out


def test_backup_that_fails_part_way_is_removed(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "optuna.db").write_text("not a database")
    err = _refused(live, tmp_path / "copy", capsys)
    assert "optuna.db" in err and "the partial backup was removed" in err
    assert not (tmp_path / "copy").exists()


def test_backup_copies_a_tuning_journal_up_to_its_last_complete_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optuna appends a line per operation and reads a journal as its complete lines: one
    being appended is left out of the copy, as Optuna's reader leaves it."""
    journal = tmp_path / "data" / "tuning" / "journal.log"
    config = _config(
        tmp_path / "tunewatch.yaml", tmp_path / "data", tuning={"storage_url": str(journal)}
    )
    assert main(["--config", str(config), "migrate"]) == 0
    journal.parent.mkdir()
    journal.write_bytes(b'{"op_code":0}\n{"op_code":1}\n{"op_code":4,"par')
    capsys.readouterr()
    assert main(["--config", str(config), "backup", str(tmp_path / "copy")]) == 0
    copied = tmp_path / "copy" / "tuning" / "journal.log"
    assert copied.read_bytes() == b'{"op_code":0}\n{"op_code":1}\n'
    assert f"tuning.storage_url naming {copied}" in capsys.readouterr().out


def test_backup_into_an_empty_directory_makes_it_owner_only(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "empty"
    target.mkdir(mode=0o755)
    capsys.readouterr()
    assert main(["--config", str(live), "backup", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.iterdir()) == ["tunewatch.db"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- restore after a crash ---------------------------------------------------------------


def _restore_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("restore: "))


#: What SQLite keeps beside a database, which a crash (kill -9) leaves in the data_dir.
CRASH_LEFTOVERS = ("-wal", "-shm", "-journal")


def test_backup_restore_line_names_the_files_a_crash_leaves_to_delete_first(
    taken: Taken, tmp_path: Path
) -> None:
    """A daemon killed (kill -9) leaves the store's write-ahead log in its data_dir; copied
    in beside a backup's store, it is replayed onto the copy: ``integrity_check`` failed and
    the daemon would not start. Deleted first, as the restore line says, the copy opens as
    it was written."""
    line = _restore_line(taken.out)
    for database in ("tunewatch.db", "optuna.db"):
        for leftover in CRASH_LEFTOVERS:
            assert f"{database}{leftover}" in line, line
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy2(taken.data_dir / "tunewatch.db", crashed / "tunewatch.db")
    conn = sqlite3.connect(crashed / "tunewatch.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE written_before_the_crash (x)")
        conn.execute("INSERT INTO written_before_the_crash VALUES (randomblob(100000))")
        kept = {s: (crashed / f"tunewatch.db{s}").read_bytes() for s in ("-wal", "-shm")}
    finally:
        conn.close()  # checkpoints and deletes the log: a killed daemon leaves it
    for suffix, data in kept.items():
        (crashed / f"tunewatch.db{suffix}").write_bytes(data)
    for leftover in CRASH_LEFTOVERS:
        (crashed / f"tunewatch.db{leftover}").unlink(missing_ok=True)
    shutil.copy2(taken.backup / "tunewatch.db", crashed / "tunewatch.db")
    uri = f"{(crashed / 'tunewatch.db').as_uri()}?mode=ro"
    with (
        sqlite3.connect(uri, uri=True) as c,
        sqlite3.connect(f"{(taken.backup / 'tunewatch.db').as_uri()}?mode=ro", uri=True) as b,
    ):
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count = "SELECT count(*) FROM requests"
        assert c.execute(count).fetchone() == b.execute(count).fetchone()


def _follow_restore_line(line: str, *, data_dir: Path, backup: Path) -> None:
    """Do what the restore line's second way says: delete the files it names (a name
    without a folder is the data_dir's), then copy the backup's files where it says."""
    said = re.search(
        r", or delete (.+?) (?:from its data_dir )?\(a crash leaves them there, and SQLite "
        r"would replay them onto the copies\), then copy (.+)$",
        line,
    )
    assert said is not None, line
    for name in re.split(r", | and ", said[1]):
        (data_dir / name).unlink(missing_ok=True)  # an absolute name stays as it is
    if said[2] == "these files into it":
        shutil.copytree(backup, data_dir, dirs_exist_ok=True)
        return
    copies, _, rest = said[2].partition(", and the other files into its data_dir ")
    moved = dict(copy.split(" to ", 1) for copy in copies.split(", "))
    for name, path in moved.items():
        shutil.copy2(backup / name, path)
    if rest:
        assert Path(rest) == data_dir.resolve(), line
        for entry in backup.iterdir():
            if entry.name in moved:
                continue
            if entry.is_dir():
                shutil.copytree(entry, data_dir / entry.name, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, data_dir / entry.name)


def _crash_leftovers(database: Path) -> None:
    """Leave beside ``database`` the write-ahead log and its index a daemon killed (kill -9)
    leaves, holding a write made after the backup: SQLite replays it onto whatever file
    then has the database's name."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE written_before_the_crash (x)")
        conn.execute("INSERT INTO written_before_the_crash VALUES (randomblob(100000))")
        kept = {s: Path(f"{database}{s}").read_bytes() for s in ("-wal", "-shm")}
    finally:
        conn.close()  # checkpoints and deletes the log: a killed daemon leaves it
    for suffix, data in kept.items():
        Path(f"{database}{suffix}").write_bytes(data)


def test_backup_restore_line_restores_a_store_configured_outside_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With `store.url` naming a file outside data_dir the daemon opens that file, not
    data_dir/tunewatch.db: the restore line names its leftovers and copies the store's copy
    to it (copied into the data_dir as before, it was never opened)."""
    data_dir, store = tmp_path / "data", tmp_path / "disk" / "tw.db"
    store.parent.mkdir()
    data_dir.mkdir()
    config = _config(tmp_path / "tunewatch.yaml", data_dir, store={"url": f"sqlite:///{store}"})
    assert main(["--config", str(config), "migrate"]) == 0
    _tuning_storage(data_dir)
    capsys.readouterr()
    assert main(["--config", str(config), "tokens", "create", "kept", "--role", "admin"]) == 0
    kept = capsys.readouterr().out.strip()
    assert main(["--config", str(config), "backup", str(tmp_path / "copy")]) == 0
    line = _restore_line(capsys.readouterr().out)
    for leftover in CRASH_LEFTOVERS:
        assert f"{store}{leftover}" in line and f"{data_dir / 'optuna.db'}{leftover}" in line
    assert main(["--config", str(config), "tokens", "create", "later", "--role", "admin"]) == 0
    later = capsys.readouterr().out.strip()
    _crash_leftovers(store)
    _follow_restore_line(line, data_dir=data_dir, backup=tmp_path / "copy")
    with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as c:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    daemon = Daemon(build_config(yaml.safe_load(config.read_text()), env={}), env={})
    try:
        assert daemon.store.token_by_hash(hash_token(kept)) is not None
        assert daemon.store.token_by_hash(hash_token(later)) is None  # written after it
    finally:
        daemon.close()
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{data_dir / 'optuna.db'}")
    assert len(study.trials) == 2


# -- a backup stopped part way -----------------------------------------------------------

#: ``tunewatch backup`` in a process that may write no file past ``argv[1]`` bytes
#: (RLIMIT_FSIZE): a write past it fails with EFBIG, "File too large", as one on a full
#: disk fails with ENOSPC; or, ``argv[2] == "kill"``, the kernel kills the process
#: (SIGXFSZ), which no handler sees: a backup stopped at a known point, as SIGTERM or
#: kill -9 stop one.
_LIMITED = """
import resource, signal, sys
limit, action = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
signal.signal(signal.SIGXFSZ, signal.SIG_DFL if action == "kill" else signal.SIG_IGN)
from tunewatch._cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[3:]))
"""
LIMIT = 1 << 20  # past the store's copy (~300 kB)


@dataclass(frozen=True)
class Ran:
    """How a backup process ended: its id, exit code (``-signal`` when killed), output."""

    pid: int
    returncode: int
    out: str
    err: str


def _limited_backup(config: Path, target: Path, *, action: str) -> Ran:
    with subprocess.Popen(
        [sys.executable, "-c", _LIMITED, str(LIMIT), action]
        + ["--config", str(config), "backup", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    ) as proc:
        out, err = proc.communicate(timeout=120)
    return Ran(pid=proc.pid, returncode=proc.returncode, out=out, err=err)


@pytest.mark.parametrize("existing", ["absent", "empty"])
def test_backup_stopped_part_way_leaves_no_backup_only_its_owner_only_partial_sibling(
    live: Path, tmp_path: Path, existing: str
) -> None:
    """Killed while it copies the tuning storage (past the store), the backup has written
    nothing at DIR: it is built beside it and renamed onto it once complete."""
    data_dir = tmp_path / "data"
    _tuning_storage(data_dir)
    with sqlite3.connect(data_dir / "optuna.db") as c:  # larger than the process may write
        c.execute("CREATE TABLE padding (x)")
        c.execute("INSERT INTO padding VALUES (randomblob(?))", (3 * LIMIT,))
    target = tmp_path / "copy"
    if existing == "empty":
        target.mkdir(mode=0o755)
    ran = _limited_backup(live, target, action="kill")
    assert ran.returncode == -signal.SIGXFSZ, ran
    if existing == "empty":
        assert list(target.iterdir()) == [] and stat.S_IMODE(target.stat().st_mode) == 0o755
    else:
        assert not target.exists()
    (partial,) = (p for p in tmp_path.iterdir() if p.name.startswith(".copy.partial-"))
    assert (partial / "tunewatch.db").is_file() and (partial / "optuna.db").is_file()
    for path in [partial, *partial.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_backup_names_a_partial_left_beside_dir_which_a_process_of_its_id_left(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Process ids repeat (a container's backup is pid 1 at each run): a partial directory
    named by one was taken for this backup's own and refused, or a running backup's deleted.
    A backup's partial is named uniquely instead, and one that completes names each other
    partial beside DIR, which it leaves (another backup may be writing it)."""
    left = tmp_path / f".copy.partial-{os.getpid()}"
    left.mkdir(mode=0o700)
    (left / "tunewatch.db").write_bytes(b"part of a copy")
    capsys.readouterr()
    assert main(["--config", str(live), "backup", str(tmp_path / "copy")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if str(left) in line]
    assert len(warnings) == 1 and warnings[0].startswith("tunewatch: warning: "), err
    assert "stopped part way, or one still running: delete it once none runs" in warnings[0]
    assert (left / "tunewatch.db").read_bytes() == b"part of a copy"
    assert (tmp_path / "copy" / "tunewatch.db").is_file()


#: ``tunewatch backup`` in a process of its own, as cron or systemd runs it.
_BACKUP = "import sys; from tunewatch._cli import main; sys.exit(main(sys.argv[1:]))"


#: :data:`_BACKUP` whose artefact copy reads the FIFO ``TUNEWATCH_TEST_HOLD`` names before
#: each artefact: held mid-copy until the test writes it. (A FIFO in an artefact's place
#: held it before artefacts were checked to be regular files; it is refused now.)
_BACKUP_HELD = (
    "import os, sys\n"
    "from tunewatch import _backup_artefacts\n"
    "from tunewatch._cli import main\n"
    "class Held(_backup_artefacts.ArtefactStore):\n"
    "    def get(self, *args, **kwargs):\n"
    "        with open(os.environ['TUNEWATCH_TEST_HOLD'], 'rb') as fifo:\n"
    "            fifo.read()\n"
    "        return super().get(*args, **kwargs)\n"
    "_backup_artefacts.ArtefactStore = Held\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_backup_stopped_by_sigterm_removes_its_partial_and_exits_143(
    live: Path, tmp_path: Path
) -> None:
    """SIGTERM (``timeout``, a container stop, systemd) stops a backup as Ctrl-C does: what
    it wrote is removed, and it exits 143 (128 + SIGTERM, as a shell reports a process
    SIGTERM ended). It is sent while the backup copies an artefact, held by a FIFO this
    test writes: the backup cannot complete before the signal."""
    artefact = tmp_path / "data" / "artefacts" / "ab" / f"ab{'0' * 62}.onnx"
    artefact.parent.mkdir(parents=True)
    artefact.write_bytes(b"onnx")  # the one artefact to copy
    fifo = tmp_path / "hold.fifo"
    os.mkfifo(fifo)
    target = tmp_path / "copy"
    opened = threading.Event()
    done = threading.Event()

    def writer() -> None:
        with fifo.open("wb"):  # returns once the backup opened it to read
            opened.set()
            done.wait(120)

    thread = threading.Thread(target=writer)
    thread.start()
    with subprocess.Popen(
        [sys.executable, "-c", _BACKUP_HELD, "--config", str(live), "backup", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TUNEWATCH_TEST_HOLD": str(fifo)},
    ) as proc:
        try:
            assert opened.wait(120), "the backup never read the artefact"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        finally:
            done.set()
            if not opened.is_set():  # releases the writer
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            thread.join(120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
    assert out == "", out
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_backup_of_a_named_pipe_in_an_artefact_s_place_fails_naming_it(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What is no regular file is no artefact: a backup reading a FIFO in one's place
    waited for a writer for good; it is refused, unread, and left out of the backup, which
    says so and exits 1, as for a damaged artefact."""
    name = f"ab{'0' * 62}.onnx"
    fifo = tmp_path / "data" / "artefacts" / "ab" / name
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    assert main(["--config", str(live), "backup", str(tmp_path / "copy")]) == 1
    err = capsys.readouterr().err
    assert "not a regular file but a named pipe" in err, err
    assert not (tmp_path / "copy" / "artefacts" / "ab" / name).exists()


# -- DIR a mount point -------------------------------------------------------------------


def test_backup_refuses_a_mount_point_before_writing(
    live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(live, Path("/proc"), capsys)
    assert "/proc is a mount point" in err and "/proc/tunewatch-backup" in err, err


def test_backup_that_cannot_be_renamed_onto_dir_across_filesystems_says_it_is_a_mount_point(
    tmp_path: Path,
) -> None:
    """An empty bind mount on the backup's own filesystem passes ``os.path.ismount``, and
    renaming the complete backup onto it fails (EBUSY), as a rename across filesystems
    does (EXDEV): here a real one, onto /proc."""
    assert os.stat("/proc").st_dev != os.stat(tmp_path).st_dev
    partial = tmp_path / ".copy.partial-x"
    partial.mkdir()
    (partial / "tunewatch.db").write_bytes(b"a complete copy")
    target = Path("/proc/tunewatch-backup")
    with pytest.raises(TunewatchError) as raised:
        publish(target, partial, target)
    message = raised.value.message
    assert "Errno" not in message and "Invalid cross-device link" in message, message
    assert f"{target} is a mount point" in message and "name a directory inside it" in message
    assert message.endswith("the partial backup was removed"), message
    assert not partial.exists() and not target.exists()


# -- artefacts ---------------------------------------------------------------------------


def test_backup_copies_the_files_of_an_artefact_folder_linked_from_another_disk(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator moved an artefact folder to another disk and linked it back: the daemon
    reads through the link, and the backup copies the files (not the link)."""
    data_dir = tmp_path / "data"
    daemon, _ = make_daemon(data_dir, trained)
    try:
        champion = daemon.artefacts.path(daemon.store.champion(MODEL).artefact_sha256)  # type: ignore[union-attr]
    finally:
        daemon.close()
    moved = tmp_path / "other-disk" / champion.parent.name
    moved.parent.mkdir()
    champion.parent.rename(moved)
    champion.parent.symlink_to(os.path.relpath(moved, champion.parent.parent))
    config = _config(tmp_path / "tunewatch.yaml", data_dir)
    capsys.readouterr()
    assert main(["--config", str(config), "backup", str(tmp_path / "copy")]) == 0
    copied = tmp_path / "copy" / champion.relative_to(data_dir)
    assert copied.read_bytes() == (moved / champion.name).read_bytes()
    assert [p for p in (tmp_path / "copy").rglob("*") if p.is_symlink()] == []


def test_backup_names_each_artefact_its_store_names_but_the_data_dir_lacks_and_exits_1(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    daemon, _ = make_daemon(data_dir, trained)
    try:
        champion = daemon.store.champion(MODEL)
        assert champion is not None
        reference = daemon.artefacts.path(champion.details["reference_sha256"], ".npz")
        report = daemon.artefacts.put(b"<html>drift</html>", ".html")
        daemon.store.add_evaluation(
            model=MODEL,
            version=champion.version,
            kind="drift_report",
            status="ok",
            window_start=None,
            window_end=datetime.now(UTC),
            payload={"evaluation": 1, "sha256": report},
        )
        onnx = daemon.artefacts.path(champion.artefact_sha256)
        report_file = daemon.artefacts.path(report, ".html")
    finally:
        daemon.close()
    reference.unlink()
    report_file.unlink()
    config = _config(tmp_path / "tunewatch.yaml", data_dir)
    capsys.readouterr()
    assert main(["--config", str(config), "backup", str(tmp_path / "copy")]) == 1
    out, err = capsys.readouterr()
    missing = [line for line in err.splitlines() if "missing" in line]
    assert len(missing) == 2, err
    assert reference.name in err and f"{MODEL} version {champion.version}" in err
    assert report_file.name in err and "drift report" in err
    assert (tmp_path / "copy" / onnx.relative_to(data_dir)).is_file()
    assert (tmp_path / "copy" / "tunewatch.db").is_file() and "tunewatch.db" in out


# -- filesystem errors: exit 2, one line naming DIR, the part and the file ---------------


def test_backup_that_cannot_write_an_artefact_names_it_and_is_removed(
    live: Path, tmp_path: Path
) -> None:
    big = ArtefactStore(tmp_path / "data" / "artefacts").put(os.urandom(2 * LIMIT), ".onnx")
    target = tmp_path / "copy"
    ran = _limited_backup(live, target, action="fail")
    out, err = ran.out, ran.err
    assert ran.returncode == 2 and out == "", err
    assert err.count("\n") == 1 and "Errno" not in err, err
    assert err.startswith(f"tunewatch: error: cannot write the backup {target}: "), err
    assert f"artefacts/{big[:2]}/{big}.onnx" in err and "File too large" in err
    assert err.rstrip().endswith("the partial backup was removed"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "tunewatch.yaml"]


def test_backup_refuses_a_directory_under_a_file(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("mine")
    err = _refused(live, tmp_path / "afile" / "copy", capsys)
    assert "Errno" not in err and f"{tmp_path / 'afile'} is a file" in err, err
    assert "nothing was written" in err
