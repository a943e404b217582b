"""One model whose line-up load raises what the runtime did not expect (a ``MemoryError``
reading a large artefact) stops the refresh of that model only: it stopped the refresh of
every model after it, at every tick, so another model's promotion never reached the
replica, while ``tunewatch_lineup_stale`` said 0 and ``/readyz`` 200."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, logistic_variant, make_daemon
from tunewatch._artefacts import ArtefactStore
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._runtime import ScoringRuntime

#: listed before ``MODEL`` by the store's line-ups, which are by name
FIRST = "aaa"


class _Unreadable(ArtefactStore):
    """An artefact store whose reads of the digests in ``failing`` raise ``MemoryError``."""

    def __init__(self, of: ArtefactStore) -> None:
        super().__init__(of.root, store=of.store)
        self.failing: set[str] = set()

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        if sha256 in self.failing:
            raise MemoryError(f"injected: reading {sha256}")
        return super().get(sha256, suffix)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """``MODEL`` with v1 champion and v2 shadow, and :data:`FIRST` with v1 champion."""
    d, _ = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    d.registry.register(FIRST, trained[0].onnx, trained[0].metadata, actor="t", stage="champion")
    yield d
    d.close()


def test_a_model_whose_load_raises_an_unexpected_error_is_marked_stale_and_the_others_refresh(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    artefacts = _Unreadable(daemon.artefacts)
    metrics = ServingMetrics()
    runtime = ScoringRuntime(
        config=daemon.config,
        store=daemon.store,
        artefacts=artefacts,
        metrics=metrics,
        recorder=daemon.recorder,
    )

    def stale(model: str) -> float | None:
        return metrics.registry.get_sample_value("tunewatch_lineup_stale", {"model": model})

    def champion(model: str) -> int | None:
        served = runtime.model(model).deployment.lineup.champion
        return None if served is None else served.version

    runtime.start()
    try:
        assert champion(FIRST) == 1 and champion(MODEL) == 1
        new = logistic_variant()
        shadow = daemon.registry.register(FIRST, new.onnx, new.metadata, actor="t")
        artefacts.failing.add(shadow.artefact_sha256)
        daemon.store.promote(MODEL, 2, actor="other-replica", reason="promoted elsewhere")
        caplog.set_level(logging.ERROR, logger="tunewatch._runtime_lineups")
        assert runtime.refresh() == [MODEL]
        assert champion(MODEL) == 2 and stale(MODEL) == 0
        assert champion(FIRST) == 1 and stale(FIRST) == 1  # served as it was, said stale
        [logged] = [r for r in caplog.records if r.exc_info is not None]
        assert f"model={FIRST}" in logged.getMessage()
        assert logged.exc_info is not None and logged.exc_info[0] is MemoryError
        assert runtime.refresh() == []  # tried again at the next refresh: still failing
        assert stale(FIRST) == 1
        # logged once while it lasts, not a traceback every refresh_s
        assert len([r for r in caplog.records if r.exc_info is not None]) == 1
        artefacts.failing.clear()  # it reads again
        assert runtime.refresh() == [FIRST]
        assert [c.version for c in runtime.model(FIRST).deployment.lineup.challengers] == [2]
        assert stale(FIRST) == 0
    finally:
        runtime.close()
