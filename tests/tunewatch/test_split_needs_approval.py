"""A live split whose challenger's promotion would wait for an approver is not served:
the challenger stays in shadow, and the hold is logged and recorded once."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

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

SPLIT = {"challenger": 2, "percent": 50, "salt": "s1"}
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
HELD = "live split not served"


def _daemon(data_dir: Path, **model: object) -> Daemon:
    """A daemon on the store in ``data_dir`` whose config lists the model with ``model``'s
    keys and the live split; no scheduler, and a refresh loop that does not wake during a
    test (each test refreshes when it means to)."""
    raw = {
        "data_dir": str(data_dir),
        "scheduler": {"enabled": False},
        "scoring": {"refresh_s": 3600},
        "models": [{"name": MODEL, "task": "binary", "comparison": {"split": SPLIT}, **model}],
    }
    return Daemon(build_config(raw, env={}), env={})


@pytest.fixture
def data_dir(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """A store holding the example model: v1 (logistic) champion, v2 (gradient boosting:
    ``gb_max_depth`` 3) in shadow, registered by a daemon whose config neither regulates
    the model nor splits it."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    daemon.close()
    return tmp_path


@contextlib.contextmanager
def _serving(daemon: Daemon) -> Iterator[Callable[[], Counter[str]]]:
    """``daemon`` served over HTTP (started, and closed at the end) and a function
    counting which version answered each of 40 customers, one request each."""
    scorer = new_token()
    daemon.store.add_token(name="scorer", role="scorer", token_hash=hash_token(scorer), actor="t")
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:

        def answers() -> Counter[str]:
            seen: Counter[str] = Counter()
            for k in range(40):
                r = c.post(
                    f"/v2/models/{MODEL}/infer",
                    headers={"Authorization": f"Bearer {scorer}"},
                    json={
                        "parameters": {"unit_key": f"customer-{k}"},
                        "inputs": [
                            {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}
                        ],
                    },
                )
                assert r.status_code == 200, r.text
                seen[r.json()["model_version"]] += 1
            return seen

        yield answers


def _held(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if HELD in r.getMessage()]


def test_a_regulated_models_split_challenger_answers_nobody_and_is_recorded_once(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: the daemon restarted with a config that regulates the model
    and splits half its customers to v2, whose promotion by bob waits for an approver;
    the split served v2 to 17 of 40 customers, nothing recorded."""
    caplog.set_level(logging.INFO)
    daemon = _daemon(data_dir, regulated=True)
    with _serving(daemon) as answers:
        pending = governance.promote(
            daemon.store, daemon.config, MODEL, 2, actor="bob", reason="want v2 live"
        )
        assert pending.status == "pending_approval"
        assert answers() == {"1": 40}
        served = daemon.runtime.model(MODEL)
        assert served.split is None
        assert [c.version for c in served.deployment.lineup.challengers] == [2]  # shadowing
        for _ in range(3):  # later builds: neither logged nor recorded again
            daemon.runtime.refresh()
            daemon.runtime.load(MODEL)
        assert _held(caplog) == [
            f"model={MODEL} version=2: live split not served: promoting it needs an approver "
            "(rules: regulated model); promote it through an approval instead"
        ]
        [warning] = [r for r in caplog.records if HELD in r.getMessage()]
        assert warning.levelno == logging.WARNING
        [event] = daemon.store.list_events(model=MODEL, type="split_not_served")
        assert event.payload["version"] == 2 and event.payload["rules"] == ["regulated model"]
        assert (event.payload["percent"], event.payload["salt"]) == (50, "s1")
    again = _daemon(data_dir, regulated=True)  # a restart: held still, not recorded again
    try:
        again.start()
        assert again.runtime.model(MODEL).split is None
        assert len(again.store.list_events(model=MODEL, type="split_not_served")) == 1
    finally:
        again.close()


def test_a_serving_split_stops_at_the_next_build_once_the_model_is_regulated(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process's config regulates the model (its registry marks the store's
    flag): this daemon's refresh stops serving the split, as a restart with
    ``regulated: true`` does (above)."""
    caplog.set_level(logging.INFO)
    daemon = _daemon(data_dir)
    with _serving(daemon) as answers:
        before = answers()
        assert before["2"] > 0 and before["1"] > 0  # unregulated: the split serves
        assert daemon.store.regulate_model(MODEL, actor="alice", reason="audit finding")
        assert daemon.runtime.refresh() == [MODEL]
        assert daemon.runtime.model(MODEL).split is None
        assert answers() == {"1": 40}
        assert len(_held(caplog)) == 1
        [event] = daemon.store.list_events(model=MODEL, type="split_not_served")
        assert event.payload["rules"] == ["regulated model"]


def test_a_held_split_serves_again_once_its_rules_no_longer_need_an_approver(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The safe ranges another daemon's config stored put v2 (``gb_max_depth`` 3) outside
    them; once that daemon stores wider ones the split serves at the next build."""
    caplog.set_level(logging.INFO)
    daemon = _daemon(data_dir)
    store = daemon.store
    narrow = StoredSafeRanges(safe_ranges={"gb_max_depth": SafeBound(low=1, high=2)})
    wide = StoredSafeRanges(safe_ranges={"gb_max_depth": SafeBound(low=1, high=8)})
    try:
        daemon.start()
        assert daemon.runtime.model(MODEL).split is not None  # its own config: no rule
        store.set_safe_ranges(MODEL, narrow, actor="other-daemon", reason="its config")
        assert daemon.runtime.refresh() == [MODEL]
        assert daemon.runtime.model(MODEL).split is None
        [message] = _held(caplog)
        assert "outside safe range (stored by the daemon): gb_max_depth=3 not in [1, 2]" in message
        [event] = store.list_events(model=MODEL, type="split_not_served")
        store.set_safe_ranges(MODEL, wide, actor="other-daemon", reason="its config")
        assert daemon.runtime.refresh() == [MODEL]
        split = daemon.runtime.model(MODEL).split
        assert split is not None and split.challenger == 2
        [resumed] = store.list_events(model=MODEL, type="split_served")
        assert resumed.payload["version"] == 2 and resumed.payload["held"] == event.id
        assert daemon.runtime.refresh() == []
        # narrowed again: a new hold, logged and recorded again
        store.set_safe_ranges(MODEL, narrow, actor="other-daemon", reason="its config")
        assert daemon.runtime.refresh() == [MODEL]
        assert daemon.runtime.model(MODEL).split is None
        assert len(store.list_events(model=MODEL, type="split_not_served")) == 2
        assert len(store.list_events(model=MODEL, type="split_served")) == 1
        assert len(_held(caplog)) == 2
    finally:
        daemon.close()


def test_a_held_splits_challenger_is_compared_as_a_shadow_not_as_the_split(
    data_dir: Path,
) -> None:
    """While the split is held its challenger shadows the champion: the comparison loop
    gives it the paired test of a shadow. Counted as the split's it had none (the split
    test's units were never recorded), however long the hold."""
    from tunewatch._split import SplitConfig
    from tunewatch.comparison._split_window import splitting
    from tunewatch.store._comparisons import ComparisonStore

    split = SplitConfig(**SPLIT)  # type: ignore[arg-type]
    for regulated, splits in ((False, True), (True, False)):
        daemon = _daemon(data_dir, regulated=regulated)
        try:
            comparisons = ComparisonStore(daemon.store)
            held = splitting(daemon.store, comparisons, MODEL, split, config=daemon.config)
            assert held is splits, regulated
        finally:
            daemon.close()
