"""The run-deadline watchdog sleeps while no run is in flight, and still stops runs past
their deadline: it woke every 50 ms from the first scored request on, forever."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from shadow_models import N_FEATURES, looping_model

from shadow import OnnxModel, ShadowError, _deadline


class Options:
    """What the watchdog stops: onnxruntime's ``RunOptions.terminate``, on its own."""

    terminate = False


def _wake_ups(thread: threading.Thread) -> int:
    """How often ``thread`` has blocked (each wait it wakes from is one)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in the thread's status")


def _run_to_its_deadline(model: OnnxModel) -> ShadowError:
    """Run ``model`` on a row it loops on, in a thread (a run never stopped would hold
    the test for good); returns the error it failed with."""
    errors: list[ShadowError] = []

    def run() -> None:
        try:
            model.run(np.ones((1, N_FEATURES), np.float32))
        except ShadowError as exc:
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(10)
    if runner.is_alive():
        pytest.fail("the looping run was not stopped within 10 s")
    assert len(errors) == 1
    return errors[0]


def _idle_wake_ups() -> int:
    """The watchdog's wake-ups over half a second (the observation window, not a wait
    for anything)."""
    watchdog = _deadline._watchdog
    assert watchdog is not None and watchdog.is_alive()
    before = _wake_ups(watchdog)
    threading.Event().wait(0.5)
    return _wake_ups(watchdog) - before


def test_watchdog_does_not_wake_after_the_last_run_ended() -> None:
    options = Options()
    _deadline.end(_deadline.watch(options, 3600.0), options)  # a run, ended: idle now
    # one wake-up may still be on its way (the run's start notified it); 10 at a 50 ms poll
    assert _idle_wake_ups() <= 2


def test_a_run_past_its_deadline_is_still_stopped_after_idle() -> None:
    model = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.1)
    assert _run_to_its_deadline(model).code == "run_timeout"
    assert _idle_wake_ups() <= 2  # nothing in flight: the watchdog waits to be told
    error = _run_to_its_deadline(model)
    assert error.code == "run_timeout" and "within 0.1 s" in error.message


def test_a_run_whose_deadline_comes_before_those_in_flight_is_stopped_at_it() -> None:
    """The watchdog waits for the earliest deadline in flight: a run started later whose
    deadline comes first must wake it sooner."""
    slow = Options()
    token = _deadline.watch(slow, 3600.0)  # the watchdog now waits an hour
    try:
        model = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.1)
        assert _run_to_its_deadline(model).code == "run_timeout"
        assert slow.terminate is False
    finally:
        assert _deadline.end(token, slow) is False
