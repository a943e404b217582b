"""The domain packages' errors (monitor, shadow, retune: each has one root) are the
command line's own errors, one line and exit 2, as tunewatch's: `compare` with a setting
the paired test refused printed the StatsError's traceback (`bootstrap_resamples: 1`,
refused since when the config loads; no command path is known to raise one now)."""

from __future__ import annotations

import json

import pytest

from monitor import DriftError, MonitorError
from monitor.objectives import ObjectiveError
from retune import CVError, RetuneError, StudyError
from shadow import ShadowError, VersionNotLoadedError
from shadow.stats import StatsError
from tunewatch._cli import DOMAIN_ERRORS, failure_line
from tunewatch._errors import ConfigError, TunewatchError

MESSAGE = "`bootstrap_resamples` must be an integer >= 2, got 1"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(StatsError(MESSAGE), id="shadow-stats"),
        pytest.param(ShadowError(MESSAGE, code="x"), id="shadow-root"),
        pytest.param(DriftError(MESSAGE), id="monitor-drift"),
        pytest.param(MonitorError(MESSAGE), id="monitor-root"),
        pytest.param(ObjectiveError(MESSAGE), id="monitor-objectives"),
        pytest.param(CVError(MESSAGE), id="retune-cv"),
        pytest.param(RetuneError(MESSAGE), id="retune-root"),
        pytest.param(TunewatchError(MESSAGE), id="tunewatch"),
        pytest.param(ConfigError(MESSAGE), id="tunewatch-config"),
    ],
)
def test_a_domain_error_is_one_line_naming_its_message(error: Exception) -> None:
    assert failure_line(error) == f"tunewatch: error: {MESSAGE}"


def test_an_error_carrying_ids_reads_as_its_message() -> None:
    assert failure_line(VersionNotLoadedError("credit", 3)) == (
        "tunewatch: error: model 'credit' has no loaded version 3"
    )
    assert failure_line(StudyError("storage refused", study_name="credit-7")) == (
        "tunewatch: error: study 'credit-7': storage refused"
    )


def test_each_packages_root_is_handled() -> None:
    assert set(DOMAIN_ERRORS) >= {MonitorError, ObjectiveError, ShadowError, RetuneError}


def test_os_and_json_errors_keep_their_line() -> None:
    assert failure_line(FileNotFoundError(2, "No such file or directory", "x.onnx")) == (
        "tunewatch: error: [Errno 2] No such file or directory: 'x.onnx'"
    )
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        assert failure_line(exc) == f"tunewatch: error: {exc}"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RuntimeError("bug"), id="runtime"),
        pytest.param(ValueError("bug"), id="value"),
        pytest.param(KeyError("bug"), id="key"),
        pytest.param(BrokenPipeError(32, "Broken pipe"), id="broken-pipe"),
    ],
)
def test_other_errors_keep_their_traceback(error: Exception) -> None:
    """A bug's traceback says where; a reader gone away is main's (exit 141)."""
    assert failure_line(error) is None
