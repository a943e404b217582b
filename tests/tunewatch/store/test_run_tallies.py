"""Each version's runs per role are counted with their failures, in the transaction that
records the outputs (both backends)."""

from __future__ import annotations

import pytest

from tunewatch.store import RunTally, Store


def test_tallies_add_up_across_commits_and_keep_the_last_failure_code(
    model_store: Store,
) -> None:
    assert model_store.run_tally("m", 2, "challenger") is None
    model_store.write_records(
        [],
        [],
        tallies=[
            RunTally(
                model="m",
                version=2,
                role="challenger",
                runs=3,
                failures=1,
                last_failure="run_timeout",
            ),
            RunTally(
                model="m",
                version=2,
                role="challenger",
                runs=2,
                failures=1,
                last_failure="non_finite_output",
            ),
            RunTally(model="m", version=3, role="challenger", runs=4),
        ],
    )
    model_store.write_records(
        [], [], tallies=[RunTally(model="m", version=2, role="challenger", runs=10)]
    )
    assert model_store.run_tally("m", 2, "challenger") == RunTally(
        model="m",
        version=2,
        role="challenger",
        runs=15,
        failures=2,
        last_failure="non_finite_output",
    )
    assert model_store.run_tally("m", 3, "challenger") == RunTally(
        model="m", version=3, role="challenger", runs=4, failures=0
    )
    assert model_store.run_tally("m", 2, "champion") is None


def test_a_tally_cannot_count_more_failures_than_runs() -> None:
    with pytest.raises(ValueError, match=r"`failures` must be in \[0, runs=1\], got 2"):
        RunTally(model="m", version=2, role="challenger", runs=1, failures=2)
