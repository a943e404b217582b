"""Seeds and bootstrap sizes are refused when the config loads if their consumers cannot
take them: `comparison.bootstrap_resamples: 1` loaded and every comparison then failed
with the stats package's traceback, 100,000 loaded and a look took 1.26 GB of the scoring
process; `comparison.seed: -5` failed every comparison with numpy's "expected
non-negative integer", `tuning.seed: -1` every job with "Seed must be between 0 and
2**32 - 1"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import make_objective
from shadow.stats import PairedSequentialTest
from tunewatch import ConfigError, build_config
from tunewatch._cli import main
from tunewatch.comparison._config import MAX_BOOTSTRAP_RESAMPLES, MAX_SEED, ComparisonConfig
from tunewatch.comparison._looks import new_state

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "configs" / "search_spaces" / "demo.yaml"


def _with(section: str, **settings: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "credit", "task": "binary", section: settings}
    if section == "tuning":
        model["tuning"] = {"search_space": str(SPACE), **settings}
    return {"models": [model]}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            {"bootstrap_resamples": 1},
            r"models\.0\.comparison\.bootstrap_resamples: .*`bootstrap_resamples` must be 0 "
            r"\(no bootstrap interval\) or in \[2, 10000\], got 1",
            id="one-resample",
        ),
        pytest.param(
            {"bootstrap_resamples": 10_001},
            r"`bootstrap_resamples` must be 0 \(no bootstrap interval\) or in \[2, 10000\], "
            r"got 10001",
            id="past-the-bound",
        ),
        pytest.param(
            {"bootstrap_resamples": -1},
            r"`bootstrap_resamples` must be 0 \(no bootstrap interval\) or in \[2, 10000\], "
            r"got -1",
            id="negative-resamples",
        ),
        pytest.param(
            {"seed": -5},
            r"models\.0\.comparison\.seed: .*greater than or equal to 0.*got -5",
            id="negative-comparison-seed",
        ),
        pytest.param(
            {"seed": 2**32},
            r"models\.0\.comparison\.seed: .*less than or equal to 4294967295.*got 4294967296",
            id="comparison-seed-past-32-bits",
        ),
    ],
)
def test_comparison_settings_its_tests_cannot_take_are_refused_at_load(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(_with("comparison", **settings), env={})


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        pytest.param(-1, r"greater than or equal to 0.*got -1", id="negative"),
        pytest.param(2**32, r"less than or equal to 4294967295.*got 4294967296", id="past-32-bits"),
    ],
)
def test_a_tuning_seed_numpy_cannot_take_is_refused_at_load(seed: int, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"models\.0\.tuning\.seed: .*{message}"):
        build_config(_with("tuning", seed=seed), env={})


def test_the_bounds_themselves_load_and_build_the_comparison_and_the_tuning_generator() -> None:
    """Each bound is one its consumer takes: the paired test at the largest bootstrap and
    seed (seed + version), numpy at the largest tuning seed; 0 resamples is no bootstrap."""
    config = build_config(
        {
            "models": [
                {
                    "name": "credit",
                    "task": "binary",
                    "comparison": {
                        "bootstrap_resamples": MAX_BOOTSTRAP_RESAMPLES,
                        "seed": MAX_SEED,
                    },
                    "tuning": {"search_space": str(SPACE), "seed": 2**32 - 1},
                }
            ]
        },
        env={},
    )
    model = config.models[0]
    assert model.tuning.seed == 2**32 - 1
    assert np.random.default_rng(model.tuning.seed).integers(10) >= 0
    objective = make_objective("log_loss")
    state = json.loads(json.dumps(new_state("paired", model.comparison, objective, 1, version=7)))
    assert state["bootstrap"]["resamples"] == MAX_BOOTSTRAP_RESAMPLES
    assert state["config"]["seed"] == MAX_SEED + 7
    assert PairedSequentialTest.from_dict(state).to_dict()["config"]["seed"] == MAX_SEED + 7
    off = new_state("paired", ComparisonConfig(bootstrap_resamples=0), objective, 1, version=1)
    assert off["bootstrap"] is None
    assert ComparisonConfig(bootstrap_resamples=2).bootstrap_resamples == 2


def test_compare_with_one_resample_is_one_error_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: the config's refusal, not a StatsError traceback from the
    first look."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nscheduler: {{enabled: false}}\nmodels:\n"
        "  - {name: credit, task: binary, comparison: {bootstrap_resamples: 1}}\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "compare", "credit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: invalid configuration in "), err
    assert err.rstrip().endswith(
        "models.0.comparison.bootstrap_resamples: Value error, `bootstrap_resamples` must be "
        "0 (no bootstrap interval) or in [2, 10000], got 1"
    ), err
    assert not (tmp_path / "data").exists()
