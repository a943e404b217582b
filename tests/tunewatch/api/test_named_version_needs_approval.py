"""A version other than the champion whose promotion would wait for an approver does not
answer requests naming it (``/v2/models/{m}/versions/{v}/infer``): 409
``approval_required``. Named, a regulated model's shadow version answered any scorer,
even one whose promotion an approver had rejected, and a live split held for the same
rules was undone by naming its challenger, which ``GET /v2/models/{m}`` lists."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch import _governance as governance
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import SafeBound, StoredSafeRanges

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
BODY = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}]}
REGULATED = (
    f"version 2 of {MODEL!r} cannot answer clients until it is promoted: its promotion "
    "waits for an approver (rules: regulated model)"
)

Named = Callable[[int], httpx.Response]


def _daemon(data_dir: Path, **model: object) -> Daemon:
    """A daemon on the store in ``data_dir`` whose config lists the model with ``model``'s
    keys; no scheduler, and a refresh loop that does not wake during a test."""
    raw = {
        "data_dir": str(data_dir),
        "scheduler": {"enabled": False},
        "scoring": {"refresh_s": 3600},
        "models": [{"name": MODEL, "task": "binary", **model}],
    }
    return Daemon(build_config(raw, env={}), env={})


@pytest.fixture
def data_dir(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """A store holding the example model: v1 (logistic) champion, v2 (gradient boosting:
    ``gb_max_depth`` 3) in shadow, registered by a daemon whose config does not regulate
    the model."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    daemon.close()
    return tmp_path


@contextlib.contextmanager
def _serving(daemon: Daemon) -> Iterator[Named]:
    """``daemon`` served over HTTP (started, and closed at the end) and a function sending
    one request that names a version, as a scorer."""
    scorer = new_token()
    daemon.store.add_token(name="scorer", role="scorer", token_hash=hash_token(scorer), actor="t")
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:

        def named(version: int) -> httpx.Response:
            return c.post(
                f"/v2/models/{MODEL}/versions/{version}/infer",
                headers={"Authorization": f"Bearer {scorer}"},
                json=BODY,
            )

        yield named


def _refused(r: httpx.Response, message: str) -> None:
    assert r.status_code == 409, r.text
    assert r.json() == {"error": message, "code": "approval_required"}


def _answered(r: httpx.Response, version: int) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == str(version)


def _refusals(daemon: Daemon) -> float | None:
    return daemon.metrics.registry.get_sample_value(
        "tunewatch_http_errors_total", {"code": "approval_required"}
    )


def _decide_v2(daemon: Daemon, *, approve: bool, reason: str) -> None:
    """bob asks to promote v2 of the regulated model; carol approves or rejects it."""
    pending = governance.promote(
        daemon.store, daemon.config, MODEL, 2, actor="bob", reason="want v2 live"
    )
    assert pending.approval is not None
    governance.decide_approval(
        daemon.store,
        daemon.config,
        pending.approval.id,
        approver="carol",
        approve=approve,
        reason=reason,
    )


def test_a_regulated_models_shadow_version_named_is_refused_and_its_champion_answers(
    data_dir: Path,
) -> None:
    """The reviewer's case: v2's promotion was rejected by an approver, yet a scorer
    naming v2 got its answers. Refused requests are counted, not recorded as events."""
    daemon = _daemon(data_dir, regulated=True)
    with _serving(daemon) as named:
        _decide_v2(daemon, approve=False, reason="not approved for production")
        events = len(daemon.store.list_events(model=MODEL))
        for _ in range(3):
            _refused(named(2), REGULATED)
        _answered(named(1), 1)
        assert _refusals(daemon) == 3
        assert len(daemon.store.list_events(model=MODEL)) == events
        # still listed as in service: it shadows the champion
        assert [c.version for c in daemon.runtime.model(MODEL).deployment.lineup.challengers] == [2]


def test_an_unregulated_models_shadow_version_within_its_safe_ranges_answers(
    data_dir: Path,
) -> None:
    daemon = _daemon(data_dir, safe_ranges={"gb_max_depth": {"low": 1, "high": 8}})
    with _serving(daemon) as named:
        _answered(named(2), 2)
        _answered(named(1), 1)


def test_a_shadow_version_outside_the_configured_safe_ranges_is_refused(
    data_dir: Path,
) -> None:
    daemon = _daemon(data_dir, safe_ranges={"gb_max_depth": {"low": 1, "high": 2}})
    with _serving(daemon) as named:
        outside = "outside safe range: gb_max_depth=3 not in [1.0, 2.0]"
        _refused(named(2), REGULATED.replace("regulated model", outside))
        _answered(named(1), 1)


def test_a_shadow_version_answers_once_the_stored_safe_ranges_are_widened(
    data_dir: Path,
) -> None:
    """Another daemon's config stored ranges that put v2 outside them: refused after this
    daemon's refresh; once that daemon stores wider ones, answered after the next."""
    daemon = _daemon(data_dir)
    store = daemon.store
    narrow = StoredSafeRanges(safe_ranges={"gb_max_depth": SafeBound(low=1, high=2)})
    wide = StoredSafeRanges(safe_ranges={"gb_max_depth": SafeBound(low=1, high=8)})
    with _serving(daemon) as named:
        _answered(named(2), 2)
        store.set_safe_ranges(MODEL, narrow, actor="other-daemon", reason="its config")
        assert daemon.runtime.refresh() == [MODEL]
        r = named(2)
        assert r.status_code == 409, r.text
        assert (
            "outside safe range (stored by the daemon): gb_max_depth=3 not in [1, 2]"
            in r.json()["error"]
        )
        store.set_safe_ranges(MODEL, wide, actor="other-daemon", reason="its config")
        assert daemon.runtime.refresh() == [MODEL]
        _answered(named(2), 2)


def test_a_regulated_models_previous_champion_kept_for_the_rollback_watch_is_refused(
    data_dir: Path,
) -> None:
    """Promoted through an approval, v2 serves and v1 stays in shadow for the rollback
    watch: only the champion answers a regulated model's clients, so v1 named is refused
    (its promotion back would wait for an approver too)."""
    daemon = _daemon(data_dir, regulated=True)
    with _serving(daemon) as named:
        _decide_v2(daemon, approve=True, reason="reviewed")
        daemon.runtime.refresh()
        lineup = daemon.runtime.model(MODEL).deployment.lineup
        assert lineup.champion is not None and lineup.champion.version == 2
        assert [c.version for c in lineup.challengers] == [1]  # kept for the watch
        _answered(named(2), 2)
        _refused(named(1), REGULATED.replace("version 2", "version 1"))


def test_a_held_splits_challenger_named_is_refused(data_dir: Path) -> None:
    """A live split held because its challenger's promotion waits for an approver was
    undone by naming the challenger: both are decided by the same rules."""
    split = {"challenger": 2, "percent": 50, "salt": "s1"}
    daemon = _daemon(data_dir, regulated=True, comparison={"split": split})
    with _serving(daemon) as named:
        assert daemon.runtime.model(MODEL).split is None  # held
        _refused(named(2), REGULATED)


def test_a_refused_version_is_neither_listed_nor_ready_and_an_answering_one_is_both(
    data_dir: Path,
) -> None:
    """``GET /v2/models/{m}`` listed the regulated model's shadow version, and its
    ``ready`` route answered 200, so a client (tritonclient's ``is_model_ready``) picked a
    version whose every request was refused: the listing and readiness read the same
    gate as inference. The version's metadata still answers (its signature is no model
    output)."""
    for regulated, listed in ((False, ["1", "2"]), (True, ["1"])):  # stored regulation stays
        daemon = _daemon(data_dir, regulated=regulated)
        scorer = new_token()
        headers = {"Authorization": f"Bearer {scorer}"}
        daemon.store.add_token(
            name=f"scorer-{regulated}", role="scorer", token_hash=hash_token(scorer), actor="t"
        )
        with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
            meta = c.get(f"/v2/models/{MODEL}", headers=headers)
            assert meta.status_code == 200 and meta.json()["versions"] == listed
            ready = c.get(f"/v2/models/{MODEL}/versions/2/ready")  # a probe: no token
            if regulated:  # the rules (safe ranges, hyperparameters) are not a probe's
                assert ready.status_code == 409 and ready.json() == {
                    "error": f"version 2 of {MODEL!r} answers no requests naming it until it "
                    "is promoted: its promotion waits for an approver",
                    "code": "approval_required",
                }
            else:
                assert ready.status_code == 200, ready.text
            assert c.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 200
            assert c.get(f"/v2/models/{MODEL}/versions/2", headers=headers).status_code == 200
        daemon.close()


def test_the_named_versions_route_documents_approval_required(spec: dict[str, Any]) -> None:
    [post] = spec["paths"]["/v2/models/{model}/versions/{version}/infer"].values()
    assert "`approval_required`" in post["responses"]["409"]["description"]
    [post] = spec["paths"]["/v2/models/{model}/infer"].values()
    assert "`approval_required`" not in post["responses"]["409"]["description"]
