"""A rollback the watch decided and could not do because the previous champion's
artefact no longer read back (``artefact_unavailable``) was final: the watch recorded
``rollback_failed``, retired the version it kept in shadow, and no later run tried again
once the artefact was restored (three runs and 1,800 labelled requests later the worse
champion still served). It is retried now, the version kept in shadow meanwhile, with
one ``rollback_failed`` event."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_watch import _decide_worse, _watch
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def test_a_rollback_refused_for_a_missing_artefact_is_retried_once_it_is_restored(
    daemon: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    loop = runner(daemon)
    _decide_worse(daemon, trained, loop)  # v2 promoted, v1 in shadow, worse labels waiting
    artefact = daemon.artefacts.path(daemon.store.get_version(MODEL, 1).artefact_sha256)
    aside = tmp_path / "v1.onnx"
    shutil.move(artefact, aside)
    for _ in range(2):  # decided, then retried while the artefact is still missing
        watch = _watch(loop)
        assert watch is not None and watch.action == "rollback_failed", watch
        [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert test.status == "decided" and test.outcome is None  # not final
        assert daemon.store.get_version(MODEL, 1).stage == "shadow"  # kept for the retry
        assert loop._rollback_watch.held(MODEL) == {1}
    [event] = daemon.store.list_events(model=MODEL, type="rollback_failed")  # stored once
    assert event.payload["code"] == "artefact_unavailable"
    assert event.payload["test_id"] == test.id
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    shutil.move(aside, artefact)
    watch = _watch(loop)
    assert watch is not None and watch.action == "rolled_back", watch
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == "rolled_back"
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.outcome == {"action": "rolled_back", "restored": 1}
    assert len(daemon.store.list_events(model=MODEL, type="rollback_triggered")) == 1
    assert _watch(loop) is None  # done once
