"""The whole loop in-process (no external binaries): what `make demo` runs, asserted.

History study -> serving -> concept change -> drift over consecutive windows -> a queued
re-tuning job -> a warm-started study in a worker process -> a shadow challenger -> a
paired always-valid comparison -> promotion -> the promoted version's report.

The run is the one the dashboard tests serve too (``tests/demo_run.py``): one demo a test run.
"""

from __future__ import annotations

import re

import pytest

from tests.demo_run import copy_of_demo
from tunewatch._demo import MODEL
from tunewatch.store import Store


@pytest.mark.slow
def test_events_run_in_order_from_drift_to_promotion_and_the_report_exists(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    demo = copy_of_demo(tmp_path_factory, "whole-loop")  # the demo exited 0
    data, out = demo.data_dir, demo.output
    assert "drift detected        : window" in out
    # each job's study is named for it and a random part (stores may share an Optuna storage)
    assert re.search(
        r"warm-started study    : credit-job2-[0-9a-f]{8} from \['credit-job1-[0-9a-f]{8}'\]", out
    ), out

    store = Store(f"sqlite:///{data / 'tunewatch.db'}")
    try:
        events = list(reversed(store.list_events(model=MODEL, limit=500)))
        types = [e.type for e in events]
        drift = types.index("drift_detected")
        retune = next(
            i
            for i, e in enumerate(events)
            if i > drift and e.type == "action_taken" and e.payload["action"] == "retune"
        )
        registered = next(
            i for i, e in enumerate(events) if i > retune and e.type == "challenger_registered"
        )
        better = types.index("challenger_better", registered)
        promoted = next(i for i, e in enumerate(events) if i > better and e.type == "promoted")
        assert drift < retune < registered < better < promoted
        assert events[registered].payload["warm_start"][0] == "combined"
        assert events[better].payload["challenger_version"] == 3
        # v2's paired rollback watch (v1 in shadow, on the changed concept) may decide first
        # and restore v1, which v3 then replaces: the demo said "replaced v2" regardless
        rolled_back = [e for e in events[:promoted] if e.type == "rollback_triggered"]
        previous = 1 if rolled_back else 2
        assert [e.payload["rolled_back"] for e in rolled_back] in ([], [2])
        assert events[promoted].payload == {
            **events[promoted].payload,
            "version": 3,
            "previous": previous,
        }
        assert f"promoted challenger   : v3 replaced v{previous}" in out
        champion = store.champion(MODEL)
        assert champion is not None and champion.version == 3
        job = store.get_job(events[retune].payload["job"])
        assert job.trigger["event"] == "drift_detected" and job.status == "succeeded"
        assert job.worker is not None  # a worker process ran it
        assert store.verify_audit() is None
    finally:
        store.close()
    report = data / "reports" / f"{MODEL}-v3.md"
    assert report.exists() and (data / "reports" / f"{MODEL}-v3.html").exists()
    text = report.read_text()
    assert "drift_detected" in text and "challenger_better" in text and "| promote |" in text
