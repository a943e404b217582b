"""An artefact directory that cannot take a write — full, read-only — is the store being
unavailable: ``StoreUnavailableError``, answered 503 ``store_unavailable`` with the
store's fixed message, its path and the system's reason in one log line.

It was a bare ``StoreError``: a 500 ``store_error`` whose message showed the server's
path to any caller registering a version, reading a drift report or re-tuning.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.tmpfs import filled, mounted_tmpfs
from tunewatch._artefacts import ArtefactStore
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._example import ExampleModel

DATA = b"onnx-bytes" * 1000  # 10 kB: past a 4 kB tmpfs

#: how a tmpfs is mounted to refuse a write, and the errno it refuses it with
REFUSING = {"full": (("size=4k",), "ENOSPC"), "read-only": (("ro",), "EROFS")}
#: what is in the place of the shard directory (``root/<aa>``) the write goes to: a link
#: to a disk not mounted, a regular file (a 500 "[Errno 17] File exists" before)
NOT_A_SHARD = {
    "a dangling link": "is not a directory: its link target {target} is missing",
    "a regular file": "is not a directory: a regular file is in its place",
}


@contextmanager
def _refusing(tmp_path: Path, how: str) -> Iterator[tuple[Path, list[str]]]:
    """An artefact directory refusing ``DATA``'s write ``how`` (one of :data:`REFUSING` or
    :data:`NOT_A_SHARD`), and what the error's message and its log line must name."""
    if how in REFUSING:
        options, errno_name = REFUSING[how]
        with mounted_tmpfs(tmp_path / "artefacts", *options) as root:
            yield root, [str(root), errno_name]
        return
    root = tmp_path / "artefacts"
    root.mkdir()
    shard = root / hashlib.sha256(DATA).hexdigest()[:2]
    target = tmp_path / "disk-not-mounted" / shard.name
    if how == "a dangling link":
        shard.symlink_to(target)
    else:
        shard.write_bytes(b"x")
    yield root, [str(shard), NOT_A_SHARD[how].format(target=target)]


@pytest.mark.parametrize("how", [*REFUSING, *NOT_A_SHARD])
def test_put_into_a_directory_refusing_writes_is_store_unavailable_logged_once(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _refusing(tmp_path, how) as (root, named):
        store = ArtefactStore(root)
        caplog.set_level(logging.WARNING, logger="tunewatch")
        with pytest.raises(StoreUnavailableError) as raised:
            store.put(DATA)
        assert raised.value.code == "store_unavailable"
        # the path and the system's reason, for the daemon's log and the CLI
        assert all(n in raised.value.message for n in named), raised.value.message
        logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert all(n in logged[0].getMessage() for n in named)
        assert logged[0].exc_info is None  # an expected condition: no traceback
        leftovers = [p.name for p in root.rglob(".tmp-*")]
        assert leftovers == []  # no temporary file left behind by the failed write


#: Puts ``DATA`` into the artefact directory argv[1] under a file-size limit of argv[2]
#: bytes (``ulimit -f``), ``SIGXFSZ`` ignored: the write past it fails with ``EFBIG``.
#: Prints the error raised as JSON.
_PUT_UNDER_A_SIZE_LIMIT = f"""
import json, resource, signal, sys
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import StoreError, StoreUnavailableError

DATA = {DATA!r}

store = ArtefactStore(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
try:
    store.put(DATA)
except StoreError as exc:
    unavailable = isinstance(exc, StoreUnavailableError)
    print(json.dumps({{"unavailable": unavailable, "code": exc.code, "message": exc.message}}))
"""


def test_put_past_the_file_size_limit_is_store_unavailable_leaving_no_temporary(
    tmp_path: Path,
) -> None:
    """The file-size limit (``ulimit -f``) was a 500 ``store_error``, logged with a
    traceback, where the same limit on the SQLite store answers 503 ``store_unavailable``."""
    root = tmp_path / "artefacts"
    ran = subprocess.run(
        [sys.executable, "-c", _PUT_UNDER_A_SIZE_LIMIT, str(root), str(len(DATA) // 2)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    raised = json.loads(ran.stdout)
    assert raised["unavailable"], raised
    assert raised["code"] == "store_unavailable"
    assert str(root) in raised["message"] and "EFBIG" in raised["message"], raised
    assert [p.name for p in root.rglob("*") if p.is_file()] == []  # no temporary left


def test_put_failing_for_another_reason_stays_a_store_error(tmp_path: Path) -> None:
    """Not the directory's condition (a directory where the file belongs): unchanged."""
    store = ArtefactStore(tmp_path)
    (store.path(hashlib.sha256(DATA).hexdigest()) / "in-the-way").mkdir(parents=True)
    with pytest.raises(StoreError) as raised:
        store.put(DATA)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert raised.value.code == "store_error"


@pytest.fixture
def full_artefacts(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A daemon serving over loopback whose artefact directory is a full tmpfs: its URL,
    an operator token and that directory."""
    config = build_config({"data_dir": str(tmp_path / "data")}, env={})
    with mounted_tmpfs(config.artefact_dir, "size=4k") as root:
        filled(root)
        daemon = Daemon(config, env={})
        try:
            token = new_token()
            daemon.store.add_token(
                name="operator", role="operator", token_hash=hash_token(token), actor="test"
            )
            with BackgroundServer(daemon.app) as server:
                yield server.url, token, root
        finally:
            daemon.close()


def test_registering_a_version_into_a_full_artefact_directory_answers_503_without_its_path(
    full_artefacts: tuple[str, str, Path],
    trained: list[ExampleModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, token, root = full_artefacts
    model = trained[0]
    caplog.set_level(logging.WARNING, logger="tunewatch")
    response = httpx.post(
        f"{url}/v1/models/{MODEL}/versions",
        json={
            "onnx_base64": base64.b64encode(model.onnx).decode(),
            "task": model.metadata.task,
            "feature_names": list(model.metadata.feature_names),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": "the store is unavailable; retry later",
        "code": "store_unavailable",
    }
    for private in (str(root), "Errno", "ENOSPC", "No space"):
        assert private not in response.text
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(root) in m and "ENOSPC" in m for m in logged), logged


def test_the_dashboard_s_drift_report_page_in_a_full_artefact_directory_shows_no_path(
    tmp_path: Path,
) -> None:
    """The dashboard rendered the error's own message: the API answered the fixed one,
    the report page showed a viewer the artefact directory and the errno."""
    from tests.dashboard.scenario import session_cookie
    from tests.tunewatch.conftest import Clock, feed
    from tests.tunewatch.test_evaluation import WINDOW, _champion_daemon
    from tunewatch._example import example_models

    d = _champion_daemon(example_models(seed=0, n_rows=1500), tmp_path, {"window_rows": WINDOW})
    clock = Clock()
    d.evaluator.clock = clock
    feed(d, clock, 0, WINDOW, shift=1.0, seed=100)
    drift = next(r for r in d.evaluator.evaluate(MODEL) if r.kind == "drift")
    token = new_token()
    d.store.add_token(name="viewer", role="viewer", token_hash=hash_token(token), actor="test")
    try:
        with BackgroundServer(d.app) as server:
            cookie = session_cookie(server.url, token)
            with mounted_tmpfs(Path(d.config.artefact_dir), "size=4k") as root:
                filled(root)
                page = httpx.get(
                    f"{server.url}/dashboard/models/{MODEL}/drift/{drift.id}/report",
                    cookies=cookie,
                    timeout=120,
                )
    finally:
        d.close()
    assert page.status_code == 503
    assert "the store is unavailable; retry later" in page.text
    assert str(root) not in page.text and "ENOSPC" not in page.text
