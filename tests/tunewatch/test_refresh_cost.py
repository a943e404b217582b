"""What the line-up refresh reads: every few seconds in every process, so its work must
not grow with the versions a model has retired (every re-tune leaves one, with kilobytes
of details). It read every version of every model, details included, to compare line-ups:
an idle replica whose 40 models kept 100 retired versions each spent a tenth of a core on
it. It compares against one read of the line-ups' version numbers and artefacts, and
reads versions whole only for a line-up that changed, and then its own versions only.

The reads are counted on the store's engine (``before_cursor_execute``); the rows each
statement fetched are counted by running it again afterwards, against the same data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, logistic_variant, make_daemon
from tests.tunewatch.store_reads import DETAILS, Reads, reads
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store._schema import artefacts, model_versions


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Daemon]:
    """v1 champion, v2 shadow, on each backend, its runtime started."""
    d, _ = make_daemon(tmp_path, trained, store_url=store_url)
    d.runtime.start()
    try:
        yield d
    finally:
        d.runtime.close()
        d.close()


def refresh_reads(d: Daemon) -> tuple[list[str], Reads]:
    """``d.runtime.refresh()``'s answer and what it read."""
    return reads(d.store, d.runtime.refresh)


def retire_history(d: Daemon, n: int = 100) -> None:
    """Give the model ``n`` retired versions, each with a re-tune's details."""
    v1 = d.store.get_version(MODEL, 1)
    for _ in range(n):
        d.store.add_version(
            model=MODEL,
            artefact_sha256=v1.artefact_sha256,
            hyperparameters=v1.hyperparameters,
            size_bytes=v1.size_bytes,
            actor="t",
            details=DETAILS,
            stage="retired",
        )


def _lineup(d: Daemon) -> tuple[int | None, list[int]]:
    lineup = d.runtime.model(MODEL).deployment.lineup
    champion = lineup.champion.version if lineup.champion is not None else None
    return champion, [c.version for c in lineup.challengers]


def test_a_refresh_with_nothing_changed_reads_no_details_however_many_versions_retired(
    daemon: Daemon,
) -> None:
    changed, before = refresh_reads(daemon)
    assert changed == [] and before.details == 0
    retire_history(daemon)
    changed, after = refresh_reads(daemon)
    assert changed == []
    assert after == before  # the same statements, fetching the same rows, no details
    assert _lineup(daemon) == (1, [2])


def test_a_promotion_refresh_reads_the_new_lineup_only_however_many_versions_retired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    daemon.store.promote(MODEL, 2, actor="t", reason="promoted elsewhere")
    changed, before = refresh_reads(daemon)
    assert changed == [MODEL] and _lineup(daemon) == (2, [])
    assert before.details == 1  # the new champion's, loaded; none of the retired v1's
    retire_history(daemon)
    new = daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    daemon.store.promote(MODEL, new.version, actor="t", reason="promoted elsewhere")
    changed, after = refresh_reads(daemon)
    assert changed == [MODEL] and _lineup(daemon) == (new.version, [])
    assert after == before


def test_the_refresh_follows_shadows_retirements_and_rollbacks_made_elsewhere(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    retire_history(daemon, 3)  # v3..v5
    new = daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (1, [2, new.version])
    daemon.store.set_stage(MODEL, 2, "retired", actor="t", reason="retired elsewhere")
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (1, [new.version])
    daemon.store.promote(MODEL, new.version, actor="t", reason="promoted elsewhere")
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (new.version, [])
    daemon.store.rollback(MODEL, actor="t", reason="answering the alert")
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (1, [])
    daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
    assert daemon.runtime.refresh() == ["other"]  # served with no line-up: not ready
    assert daemon.runtime.model("other").deployment.lineup.champion is None
    assert daemon.runtime.refresh() == []


def test_a_shadow_waiting_to_load_again_is_tried_at_once_under_another_artefact(
    daemon: Daemon,
) -> None:
    """A version that would not load waits out its retry time unless the store names
    another artefact for it (a restore): the refresh compares the artefact too."""
    variant = logistic_variant()
    new = daemon.registry.register(MODEL, variant.onnx, variant.metadata, actor="t")
    daemon.artefacts.path(new.artefact_sha256).unlink()
    with daemon.store.engine.begin() as conn:  # nor a copy in the store to read instead
        conn.execute(sa.delete(artefacts).where(artefacts.c.sha256 == new.artefact_sha256))
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (1, [2])
    assert daemon.runtime.refresh() == []  # waiting: not tried every tick
    v2 = daemon.store.get_version(MODEL, 2).artefact_sha256
    with daemon.store.engine.begin() as conn:
        conn.execute(
            sa.update(model_versions)
            .where(model_versions.c.model == MODEL, model_versions.c.version == new.version)
            .values(artefact_sha256=v2)
        )
    assert daemon.runtime.refresh() == [MODEL] and _lineup(daemon) == (1, [2, new.version])
