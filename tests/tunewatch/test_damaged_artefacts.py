"""A version whose artefact cannot be read back intact (missing, damaged, unreadable) or
loaded is never put in service — every stage change that would serve it is refused
before it commits — and a champion in that state never blocks replacing it."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, logistic_variant, make_daemon
from tests.tunewatch.test_promotion_signature import _config, _copy
from tunewatch import _governance as governance
from tunewatch._artefacts import ArtefactStore
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError, NotFoundError, StoreError
from tunewatch._example import ExampleModel
from tunewatch._runtime import ScoringRuntime
from tunewatch._unloadable import CHAMPION_RETRY_MAX_S, RETRY_FIRST_S

#: what is at a version's artefact path instead: missing, truncated, a directory; a sparse
#: file far past what an ONNX file can hold (it was read whole: a MemoryError stopped
#: the start), a named pipe (its read waited for a writer for good), a link to /dev/zero
#: (read until a MemoryError)
DAMAGES = [
    "missing",
    "truncated",
    "a directory",
    "oversized",
    "a named pipe",
    "a link to /dev/zero",
]
#: a sparse size far past protobuf's 2 GiB and any memory: it takes no disk space
SPARSE_BYTES = 2**40
INFER = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}


@pytest.fixture(scope="module")
def template(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A data directory holding v1 (champion) and v2 (shadow), and its tokens."""
    path = tmp_path_factory.mktemp("damaged")
    d, tokens = make_daemon(path, trained)
    d.close()
    return path, tokens


@pytest.fixture
def daemon(template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Daemon]:
    d = _copy(template, tmp_path)
    yield d
    d.close()


def damage(d: Daemon, version: int, how: str, model: str = MODEL) -> Path:
    """Put ``how`` (one of :data:`DAMAGES`) in ``version``'s artefact's place."""
    path = d.artefacts.path(d.store.get_version(model, version).artefact_sha256)
    in_place(path, how)
    return path


def in_place(path: Path, how: str) -> None:
    """Put ``how`` (one of :data:`DAMAGES`) in the place of the artefact file ``path``: a
    directory is unreadable as a file even by root, which the tests run as."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "oversized":
        os.truncate(path, SPARSE_BYTES)
    else:
        path.unlink()
        if how == "a directory":
            path.mkdir()
        elif how == "a named pipe":
            os.mkfifo(path)
        elif how == "a link to /dev/zero":
            path.symlink_to("/dev/zero")


def _auth(template: tuple[Path, dict[str, str]], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {template[1][role]}"}


def _stages(d: Daemon) -> dict[int, str]:
    return {v.version: v.stage for v in d.store.list_versions(MODEL)}


def _served(d: Daemon) -> int | None:
    champion = d.runtime.model(MODEL).deployment.lineup.champion
    return None if champion is None else champion.version


# -- a damaged champion does not block its replacement ---------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_champion_does_not_block_promoting_a_healthy_shadow(
    daemon: Daemon, template: tuple[Path, dict[str, str]], how: str
) -> None:
    """A truncated champion artefact made promoting the healthy shadow a 500
    ``store_error``: the signature check tolerated only a missing file."""
    damage(daemon, 1, how)
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        assert _served(daemon) is None  # the champion cannot load after a restart
        r = c.post(
            f"/v1/models/{MODEL}/versions/2/promote",
            json={"reason": "replace the damaged champion"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["champion"]["version"] == 2
        infer = c.post(f"/v2/models/{MODEL}/infer", json=INFER, headers=_auth(template, "scorer"))
        assert infer.status_code == 200 and infer.json()["model_version"] == "2"
    assert _stages(daemon) == {1: "retired", 2: "champion"}


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_champion_does_not_block_registering_a_version(
    daemon: Daemon, template: tuple[Path, dict[str, str]], how: str
) -> None:
    """Registration read the champion's artefact to check the new version's input: a
    damaged one made it a 500 ``store_error``, a missing one a 404."""
    damage(daemon, 1, how)
    new = logistic_variant()
    body = {
        "task": new.metadata.task,
        "feature_names": list(new.metadata.feature_names),
        "onnx_base64": base64.b64encode(new.onnx).decode(),
    }
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(f"/v1/models/{MODEL}/versions", json=body, headers=_auth(template, "admin"))
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 3
        r = c.post(
            f"/v1/models/{MODEL}/versions/3/promote",
            json={"reason": "the new one"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 200, r.text
        assert _served(daemon) == 3


# -- a version that cannot be read is not put in service --------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_promoting_a_version_whose_artefact_cannot_be_read_commits_nothing(
    daemon: Daemon, template: tuple[Path, dict[str, str]], how: str
) -> None:
    """The promotion committed, then the load failed: the API answered an error (404 for
    a missing file) for a change that stood, this process kept serving the retired
    version, and after a restart no version was served at all."""
    daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="parked")
    damage(daemon, 2, how)
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(
            f"/v1/models/{MODEL}/versions/2/promote",
            json={"reason": "go"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "artefact_unavailable"
        assert "version 2" in r.json()["error"]
        assert _served(daemon) == 1
    assert _stages(daemon) == {1: "champion", 2: "retired"}
    assert daemon.store.audit_log(limit=10, action="promote") == []


def test_a_first_champion_whose_artefact_cannot_be_read_is_not_promoted(
    daemon: Daemon, trained: list[ExampleModel], template: tuple[Path, dict[str, str]]
) -> None:
    """With no champion to check a signature against, nothing read the version before
    the store made it the champion."""
    daemon.registry.register("fresh", trained[0].onnx, trained[0].metadata, actor="t")
    damage(daemon, 1, "truncated", model="fresh")
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(
            "/v1/models/fresh/versions/1/promote",
            json={"reason": "first"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "artefact_unavailable"
    assert daemon.store.champion("fresh") is None


def test_promoting_a_version_onnxruntime_cannot_load_commits_nothing(
    daemon: Daemon, template: tuple[Path, dict[str, str]]
) -> None:
    """Bytes intact under their hash that do not load (stored past the registry's check)
    are refused as unavailable, not a 422 from the signature check."""
    sha = daemon.artefacts.put(b"not an onnx file")
    daemon.store.add_version(
        model=MODEL,
        artefact_sha256=sha,
        hyperparameters={},
        size_bytes=16,
        actor="t",
        stage="retired",
    )
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(
            f"/v1/models/{MODEL}/versions/3/promote",
            json={"reason": "go"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "artefact_unavailable"
    assert daemon.store.champion(MODEL).version == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("how", DAMAGES)
def test_rolling_back_to_a_version_whose_artefact_cannot_be_read_commits_nothing(
    daemon: Daemon, template: tuple[Path, dict[str, str]], how: str
) -> None:
    """The rollback committed, then the load failed (500): the store named v1 champion
    and v2 rolled back — final — while this process served v2, and a restart served
    nothing."""
    daemon.store.promote(MODEL, 2, actor="t", reason="v2 wins")
    damage(daemon, 1, how)
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        assert _served(daemon) == 2
        r = c.post(
            f"/v1/models/{MODEL}/rollback",
            json={"reason": "v2 degrades"},
            headers=_auth(template, "operator"),
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "artefact_unavailable"
        assert "version 1" in r.json()["error"]
        assert _served(daemon) == 2
    assert _stages(daemon) == {1: "retired", 2: "champion"}
    assert daemon.store.audit_log(limit=10, action="rollback") == []


def test_a_rollback_still_restores_a_readable_champion(daemon: Daemon) -> None:
    daemon.store.promote(MODEL, 2, actor="t", reason="v2 wins")
    restored, rolled = governance.rollback(
        daemon.store, daemon.artefacts, MODEL, actor="ops", reason="v2 degrades"
    )
    assert (restored.version, rolled.version) == (1, 2)
    with pytest.raises(ConflictError) as err:  # nothing left to roll back to
        governance.rollback(daemon.store, daemon.artefacts, MODEL, actor="ops", reason="again")
    assert err.value.code == "no_previous_champion"


def test_a_rollback_expecting_its_champion_checks_what_it_restores(daemon: Daemon) -> None:
    """The rollback watch's call: it names the champion it watched."""
    daemon.store.promote(MODEL, 2, actor="t", reason="v2 wins")
    damage(daemon, 1, "truncated")
    with pytest.raises(ConflictError) as err:
        governance.rollback(
            daemon.store, daemon.artefacts, MODEL, actor="w", reason="worse", expected_champion=2
        )
    assert err.value.code == "artefact_unavailable"
    with pytest.raises(ConflictError) as err:  # another champion: the store's answer
        governance.rollback(
            daemon.store, daemon.artefacts, MODEL, actor="w", reason="worse", expected_champion=1
        )
    assert err.value.code == "champion_changed"
    assert _stages(daemon) == {1: "retired", 2: "champion"}


def test_the_cli_refuses_to_promote_or_roll_back_to_an_unreadable_version(
    daemon: Daemon,
    trained: list[ExampleModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path / "data")))
    cli = ["--config", str(config), "--actor", "ops"]
    daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="parked")
    damage(daemon, 2, "truncated")
    assert main([*cli, "promote", MODEL, "2", "--reason", "go"]) == 2
    assert "version 2" in capsys.readouterr().err
    assert _stages(daemon) == {1: "champion", 2: "retired"}
    daemon.artefacts.put(trained[1].onnx)  # v2's file repaired: promoted
    assert main([*cli, "promote", MODEL, "2", "--reason", "go"]) == 0
    damage(daemon, 1, "missing")
    assert main([*cli, "rollback", MODEL, "--reason", "back"]) == 2
    assert "version 1" in capsys.readouterr().err
    assert _stages(daemon) == {1: "shadow", 2: "champion"}  # kept by the promotion, for the watch


@pytest.fixture
def regulated(template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Daemon]:
    d = _copy(template, tmp_path, models=[{"name": MODEL, "task": "binary", "regulated": True}])
    yield d
    d.close()


def test_an_approval_of_an_unreadable_version_does_not_promote_it(regulated: Daemon) -> None:
    approval = regulated.store.request_approval(
        MODEL, 2, requested_by="ops", reason="r", rules=["regulated model"], expected_champion=1
    )
    damage(regulated, 2, "truncated")
    with pytest.raises(ConflictError) as err:
        governance.decide_approval(
            regulated.store, regulated.config, approval.id, approver="bob", approve=True, reason="x"
        )
    assert err.value.code == "artefact_unavailable"
    assert regulated.store.get_approval(approval.id).status == "pending"
    assert regulated.store.champion(MODEL).version == 1  # type: ignore[union-attr]


def test_a_regulated_model_opens_no_approval_for_an_unreadable_version(
    regulated: Daemon,
) -> None:
    damage(regulated, 2, "missing")
    with pytest.raises(ConflictError) as err:
        governance.promote(regulated.store, regulated.config, MODEL, 2, actor="ops", reason="r")
    assert err.value.code == "artefact_unavailable"
    assert regulated.store.list_approvals(model=MODEL) == []


# -- an artefact that exists but cannot be read -----------------------------------------


def test_an_artefact_that_cannot_be_read_is_a_store_error_naming_its_path(tmp_path: Path) -> None:
    """``IsADirectoryError`` (``PermissionError``, ``EIO`` alike) escaped raw: the runtime's
    per-model handling, which catches ``StoreError``, did not apply."""
    artefacts = ArtefactStore(tmp_path)
    sha = artefacts.put(b"onnx-bytes")
    path = artefacts.path(sha)
    path.unlink()
    path.mkdir()
    with pytest.raises(StoreError) as err:
        artefacts.get(sha)
    assert not isinstance(err.value, NotFoundError)
    assert str(path) in err.value.message and "Is a directory" in err.value.message


#: what is in an artefact's place instead of a regular file within the limit (as
#: :func:`in_place` puts it), and what its message says
NOT_AN_ARTEFACT = {
    "oversized": f"holds {SPARSE_BYTES} bytes, more than an ONNX file can (1000: protobuf's",
    "a named pipe": "not a regular file but a named pipe",
    "a link to /dev/zero": "not a regular file but a character device",
}


@pytest.mark.parametrize("how", list(NOT_AN_ARTEFACT))
def test_what_is_no_regular_file_or_past_the_limit_is_damaged_and_not_read(
    tmp_path: Path, how: str
) -> None:
    """``get`` read whatever was there whole: a sparse file or ``/dev/zero`` until a
    MemoryError, a named pipe waiting for a writer for good."""
    artefacts = ArtefactStore(tmp_path, max_bytes=1000)
    sha = artefacts.put(b"onnx-bytes")
    path = artefacts.path(sha)
    in_place(path, how)
    with pytest.raises(StoreError) as err:
        artefacts.get(sha)
    assert not isinstance(err.value, NotFoundError)
    assert str(path) in err.value.message and NOT_AN_ARTEFACT[how] in err.value.message


def test_only_onnx_files_are_bounded_by_what_an_onnx_file_can_hold(tmp_path: Path) -> None:
    """A tuned version's reference (its whole training window) may be larger than the
    uploads' limit, and the daemon wrote it itself: read whole, not refused as damaged."""
    artefacts = ArtefactStore(tmp_path, max_bytes=1000)
    data = bytes(range(256)) * 8
    assert artefacts.get(artefacts.put(data, ".npz"), ".npz") == data
    with pytest.raises(StoreError, match="more than an ONNX file can \\(1000"):
        artefacts.get(artefacts.put(data))


def test_a_file_outgrowing_its_size_while_read_is_read_no_further(tmp_path: Path) -> None:
    """A file growing while read (``/proc``'s files say they hold 0 bytes and hold more)
    is read no further than its size when opened."""
    artefacts = ArtefactStore(tmp_path)
    sha = artefacts.put(b"onnx-bytes")
    path = artefacts.path(sha)
    path.unlink()
    path.symlink_to("/proc/self/status")
    with pytest.raises(StoreError) as err:
        artefacts.get(sha)
    grew = "it grew past its 0 bytes while read"
    assert err.value.message == f"artefact {sha} at {path} is damaged: {grew}"


@pytest.mark.parametrize("how", list(NOT_AN_ARTEFACT))
def test_put_replaces_what_is_no_regular_file_in_the_artefact_s_place(
    tmp_path: Path, how: str
) -> None:
    """``put`` read what was in the file's place to see whether it held the bytes: a
    named pipe waited for a writer, /dev/zero was read for good."""
    artefacts = ArtefactStore(tmp_path)
    sha = artefacts.put(b"onnx-bytes")
    path = artefacts.path(sha)
    in_place(path, how)
    assert artefacts.put(b"onnx-bytes") == sha
    assert path.is_file() and not path.is_symlink()
    assert artefacts.get(sha) == b"onnx-bytes"


def test_a_champion_larger_than_the_upload_limit_is_still_served(daemon: Daemon) -> None:
    """``server.max_artefact_bytes`` limits what an upload registers, not what serves: a
    daemon started with it lowered below its champion's size (or a tuned version's, which
    no upload limit checked) refused the champion as damaged and served nothing."""
    size = daemon.store.get_version(MODEL, 1).size_bytes
    config = daemon.config
    lowered = config.model_copy(
        update={"server": config.server.model_copy(update={"max_artefact_bytes": size - 1})}
    )
    restarted = Daemon(lowered, env={})
    try:
        restarted.runtime.start()
        served = restarted.runtime.model(MODEL)
        x = np.zeros((1, 8), np.float32)
        assert restarted.runtime.score(served, x).version.version == 1
    finally:
        restarted.runtime.close()
        restarted.close()


@pytest.mark.parametrize("how", ["a directory", "oversized", "a named pipe", "a link to /dev/zero"])
def test_an_unreadable_shadow_artefact_stops_neither_refresh_nor_start(
    daemon: Daemon, trained: list[ExampleModel], how: str
) -> None:
    """One shadow artefact that could not be read stopped ``refresh()`` for every model
    after it, and ``start()`` after a restart (a MemoryError, or waiting for good, for
    what is no regular file or one larger than an ONNX file can be)."""
    store, runtime = daemon.store, daemon.runtime
    daemon.registry.register(
        "other", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
    )
    runtime.start()
    try:
        new = logistic_variant()
        v3 = daemon.registry.register(MODEL, new.onnx, new.metadata, actor="t")
        damage(daemon, v3.version, how)
        daemon.registry.register("other", trained[1].onnx, trained[1].metadata, actor="t")
        store.promote("other", 2, actor="t", reason="promoted elsewhere")
        assert set(runtime.refresh()) == {MODEL, "other"}
        lineup = runtime.model(MODEL).deployment.lineup
        assert [c.version for c in lineup.challengers] == [2]  # v3 is not shadowed
        assert runtime.model("other").deployment.lineup.champion.version == 2  # type: ignore[union-attr]
    finally:
        runtime.close()
    restarted = Daemon(daemon.config, env={})
    try:
        restarted.runtime.start()
        served = restarted.runtime.model(MODEL)
        x = np.zeros((1, 8), np.float32)
        assert restarted.runtime.score(served, x).version.version == 1
        assert restarted.runtime.ready
    finally:
        restarted.runtime.close()
        restarted.close()


def test_a_refused_approval_leaves_no_session_of_its_version_open(
    regulated: Daemon, template: tuple[Path, dict[str, str]]
) -> None:
    """The check before an approval opened the version's session in the serving runtime
    and kept it for the load to follow; refused (``same_person``), the session of a
    version no line-up takes stayed open, a whole model's memory, until another load."""
    regulated.store.set_stage(MODEL, 2, "retired", actor="ops", reason="out of the lineup")
    regulated.runtime.load(MODEL)
    retired = regulated.store.get_version(MODEL, 2).artefact_sha256
    assert retired not in regulated.runtime._sessions
    admin = _auth(template, "admin")
    with BackgroundServer(regulated.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(f"/v1/models/{MODEL}/versions/2/promote", json={"reason": "r"}, headers=admin)
        assert r.status_code == 202, r.text
        approval = r.json()["approval"]["id"]
        r = c.post(f"/v1/approvals/{approval}/approve", json={"reason": "r"}, headers=admin)
        assert r.status_code == 409 and r.json()["code"] == "same_person", r.text
    assert retired not in regulated.runtime._sessions


def promote_a_damaged_version(d: Daemon) -> None:
    """Register a version, damage its artefact and make it champion in the store, as a
    process whose checks passed before the damage would (a race, or another host)."""
    new = logistic_variant()
    version = d.registry.register(MODEL, new.onnx, new.metadata, actor="t").version
    damage(d, version, "truncated")
    d.store.promote(MODEL, version, actor="t", reason="promoted elsewhere")


def test_a_shadow_version_that_would_not_load_is_tried_again_until_it_loads(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A version that once failed to load stayed out of shadow on that replica for good
    (until some other change reloaded its model), and only the log said so."""
    now = [0.0]
    metrics = ServingMetrics()
    runtime = ScoringRuntime(
        config=daemon.config,
        store=daemon.store,
        artefacts=daemon.artefacts,
        metrics=metrics,
        recorder=daemon.recorder,
        clock=lambda: now[0],
    )
    path = daemon.artefacts.path(daemon.store.get_version(MODEL, 2).artefact_sha256)
    kept = path.read_bytes()
    damage(daemon, 2, "missing")
    caplog.set_level(logging.ERROR, logger="tunewatch._runtime")
    runtime.start()
    try:

        def shadowed() -> list[int]:
            return [c.version for c in runtime.model(MODEL).deployment.lineup.challengers]

        def stale() -> float | None:
            return metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL})

        assert shadowed() == [] and stale() == 1
        tries = len(caplog.records)
        runtime.refresh()
        assert len(caplog.records) == tries  # not tried (nor logged) again every tick
        now[0] += RETRY_FIRST_S
        runtime.refresh()  # tried again: still missing, it waits twice as long
        assert len(caplog.records) > tries and shadowed() == [] and stale() == 1
        path.write_bytes(kept)  # the artefact is back
        now[0] += RETRY_FIRST_S
        assert runtime.refresh() == []
        now[0] += RETRY_FIRST_S
        assert runtime.refresh() == [MODEL]
        assert shadowed() == [2] and stale() == 0
    finally:
        runtime.close()


def test_a_champion_that_would_not_load_is_tried_again_with_backoff_not_every_tick(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A champion whose artefact would not load was loaded again (and an ERROR logged)
    on every refresh, 720 times an hour at the default ``refresh_s``; it now waits as a
    shadow version does, up to :data:`CHAMPION_RETRY_MAX_S`, and is served once it loads."""
    now = [0.0]
    metrics = ServingMetrics()
    runtime = ScoringRuntime(
        config=daemon.config,
        store=daemon.store,
        artefacts=daemon.artefacts,
        metrics=metrics,
        recorder=daemon.recorder,
        clock=lambda: now[0],
    )
    caplog.set_level(logging.ERROR, logger="tunewatch._runtime_lineups")
    runtime.start()
    try:
        new = logistic_variant()
        version = daemon.registry.register(MODEL, new.onnx, new.metadata, actor="t").version
        path = damage(daemon, version, "truncated")
        daemon.store.promote(MODEL, version, actor="t", reason="promoted elsewhere")

        def served() -> int | None:
            champion = runtime.model(MODEL).deployment.lineup.champion
            return None if champion is None else champion.version

        def stale() -> float | None:
            return metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL})

        assert runtime.refresh() == [] and served() == 1 and stale() == 1
        tries = len(caplog.records)
        for _ in range(5):
            runtime.refresh()
        assert len(caplog.records) == tries  # not loaded (nor logged) again every tick
        waited = 0.0
        for _ in range(12):  # the wait doubles, and stops growing at the cap
            now[0] += CHAMPION_RETRY_MAX_S
            waited += CHAMPION_RETRY_MAX_S
            runtime.refresh()
        assert len(caplog.records) == tries + 12 and served() == 1 and stale() == 1
        path.write_bytes(new.onnx)  # the artefact is back
        assert runtime.refresh() == []
        now[0] += CHAMPION_RETRY_MAX_S
        assert runtime.refresh() == [MODEL] and served() == version and stale() == 0
    finally:
        runtime.close()


def test_a_champion_that_would_not_load_marks_the_lineup_stale(daemon: Daemon) -> None:
    metrics = daemon.metrics
    runtime = daemon.runtime
    runtime.start()
    try:
        assert metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL}) == 0
        promote_a_damaged_version(daemon)
        assert runtime.refresh() == []  # it serves the line-up it had
        assert _served(daemon) == 1
        assert metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL}) == 1
    finally:
        runtime.close()


def test_a_lineup_change_whose_champion_would_not_load_is_served_stale_not_raised(
    daemon: Daemon,
) -> None:
    """After the comparison loop promoted (committed), loading the new line-up raised
    into the loop's step; now it serves the line-up it had, says so, and the refresh
    tries again."""
    daemon.runtime.start()
    try:
        promote_a_damaged_version(daemon)
        daemon._lineup_changed(MODEL)
        assert _served(daemon) == 1
        stale = daemon.metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL})
        assert stale == 1
    finally:
        daemon.runtime.close()


def _stale(d: Daemon) -> float | None:
    return d.metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": MODEL})


def test_a_version_that_would_not_load_leaving_shadow_elsewhere_clears_the_stale_mark(
    daemon: Daemon,
) -> None:
    """The refresh skips a model whose served line-up is the store's, so the mark of a
    version retired elsewhere (the leader's rollback watch) stayed 1 for good."""
    damage(daemon, 2, "missing")
    daemon.runtime.start()
    try:
        assert _stale(daemon) == 1
        daemon.store.set_stage(MODEL, 2, "retired", actor="cli", reason="retired elsewhere")
        daemon.runtime.refresh()
        assert _stale(daemon) == 0
    finally:
        daemon.runtime.close()


def test_the_store_returning_to_the_served_champion_clears_the_stale_mark(daemon: Daemon) -> None:
    """A new champion would not load here (1); rolled back to the one served, the line-up
    is the store's again, which the skipped refresh never said."""
    daemon.runtime.start()
    try:
        promote_a_damaged_version(daemon)
        daemon.runtime.refresh()
        assert _served(daemon) == 1 and _stale(daemon) == 1
        daemon.store.rollback(MODEL, actor="op", reason="answering the alert")
        daemon.runtime.refresh()
        assert _served(daemon) == 1 and _stale(daemon) == 0
    finally:
        daemon.runtime.close()
