"""A version's failed-run counters (one per known failure code, in its role) and its
model's shadow drops (one per reason) are exported at 0 when the version enters the
line-up, before any run of it fails: Prometheus's ``increase()`` and ``rate()`` cannot
count a series' first sample, so a series born at its first failure hid that failure from
``TunewatchChampionRunsFailing`` (5 failed runs of 90 read as 4: its ``>= 5`` clause
never held) and 14 drops read at a first scrape from every rate. A version that leaves
the line-up has its series removed, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from shadow import DropReason
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

#: the failure codes tunewatch_run_failures_total's help names
RUN_FAILURE_CODES = (
    "run_failed",
    "run_timeout",
    "non_finite_output",
    "output_shape_mismatch",
    "output_out_of_range",
    "unknown_output",
    "unrecordable",
)


def _failures(daemon: Daemon, version: int, role: str) -> dict[str, float | None]:
    return {
        code: daemon.metrics.registry.get_sample_value(
            "tunewatch_run_failures_total",
            {"model": MODEL, "version": str(version), "role": role, "code": code},
        )
        for code in RUN_FAILURE_CODES
    }


def _dropped(daemon: Daemon) -> dict[str, float | None]:
    return {
        reason: daemon.metrics.registry.get_sample_value(
            "tunewatch_shadow_dropped_total", {"model": MODEL, "reason": reason}
        )
        for reason in get_args(DropReason)
    }


def test_the_failure_codes_started_at_zero_are_those_the_counter_s_help_names() -> None:
    from monitor import ServingMetrics
    from tunewatch import _version_series

    help_text = ServingMetrics().run_failures._documentation
    assert all(code in help_text for code in RUN_FAILURE_CODES)
    assert set(getattr(_version_series, "RUN_FAILURE_CODES", ())) == set(RUN_FAILURE_CODES)


def test_a_version_entering_the_lineup_exports_its_failures_and_the_drops_at_zero(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        assert _failures(daemon, 1, "champion") == dict.fromkeys(RUN_FAILURE_CODES)
        daemon.runtime.load(MODEL)
        assert _failures(daemon, 1, "champion") == dict.fromkeys(RUN_FAILURE_CODES, 0.0)
        assert _failures(daemon, 2, "challenger") == dict.fromkeys(RUN_FAILURE_CODES, 0.0)
        # a version's runs are counted in the role it serves in only
        assert set(_failures(daemon, 1, "challenger").values()) == {None}
        assert set(_failures(daemon, 2, "champion").values()) == {None}
        assert _dropped(daemon) == dict.fromkeys(get_args(DropReason), 0.0)
        # the first failure counts one over the zero
        daemon.runtime.series.run_failure(MODEL, 1, "champion", "run_failed").inc()
        assert _failures(daemon, 1, "champion")["run_failed"] == 1.0
    finally:
        daemon.close()


def test_a_version_leaving_the_lineup_takes_its_zero_series_with_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        daemon.runtime.load(MODEL)
        daemon.store.set_stage(MODEL, 2, "retired", actor="test", reason="too slow")
        daemon.runtime.load(MODEL)
        assert set(_failures(daemon, 2, "challenger").values()) == {None}
        assert _failures(daemon, 1, "champion") == dict.fromkeys(RUN_FAILURE_CODES, 0.0)
        # the model's drops are the model's: they stay
        assert _dropped(daemon) == dict.fromkeys(get_args(DropReason), 0.0)
    finally:
        daemon.close()


def test_a_promoted_challenger_is_counted_from_zero_in_its_new_role(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        daemon.runtime.load(MODEL)
        daemon.store.promote(MODEL, 2, actor="test", reason="better")
        daemon.runtime.load(MODEL)
        assert _failures(daemon, 2, "champion") == dict.fromkeys(RUN_FAILURE_CODES, 0.0)
    finally:
        daemon.close()
