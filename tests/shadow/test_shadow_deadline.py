"""The run breaker: a model whose runs keep passing their deadline is refused at once."""

from __future__ import annotations

import numpy as np
import pytest
from shadow_models import N_FEATURES, looping_model

from shadow import OnnxModel, ShadowError
from shadow._deadline import RunBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_three_timeouts_in_a_row_and_doubles_its_pause() -> None:
    clock = Clock()
    breaker = RunBreaker(pause_s=30.0, max_pause_s=100.0, clock=clock)
    assert [breaker.timed_out(), breaker.timed_out()] == [False, False]
    assert breaker.refusing_for() == 0.0
    assert breaker.timed_out() is True
    assert breaker.refusing_for() == 30.0
    clock.now += 29.5
    assert breaker.refusing_for() == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.refusing_for() == 0.0  # one run may try
    assert breaker.timed_out() is True  # and loops again: a longer pause
    assert breaker.refusing_for() == 60.0
    clock.now += 60
    breaker.timed_out()
    assert breaker.refusing_for() == 100.0  # capped at max_pause_s


def test_a_finished_run_closes_the_breaker_and_resets_count_and_pause() -> None:
    clock = Clock()
    breaker = RunBreaker(pause_s=30.0, clock=clock)
    for _ in range(3):
        breaker.timed_out()
    clock.now += 30
    breaker.finished()
    assert (breaker.consecutive, breaker.refusing_for()) == (0, 0.0)
    # two timeouts between finished runs never open it
    for _ in range(5):
        breaker.timed_out()
        breaker.timed_out()
        breaker.finished()
    assert breaker.refusing_for() == 0.0
    for _ in range(3):
        breaker.timed_out()
    assert breaker.refusing_for() == 30.0  # the first pause again, not a doubled one


def test_breaker_refuses_a_pause_outside_its_bounds() -> None:
    with pytest.raises(ValueError, match=r"`pause_s` must be in \(0, max_pause_s=10"):
        RunBreaker(pause_s=20.0, max_pause_s=10.0)


def test_a_model_that_loops_on_every_row_is_refused_at_once_after_three_timeouts() -> None:
    """A champion that loops on every real row held the event loop ``run_timeout_s``
    on each request, for good: the daemon answered one request per deadline."""
    model = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.1)
    ones = np.ones((1, N_FEATURES), np.float32)
    for _ in range(3):
        with pytest.raises(ShadowError, match="within 0.1 s") as info:
            model.run(ones)
        assert info.value.code == "run_timeout"
    zeros = np.zeros((1, N_FEATURES), np.float32)
    with pytest.raises(ShadowError, match=r"last 3 runs passed the 0.1 s deadline") as info:
        model.run(zeros)  # refused without running: even a row it would answer
    assert info.value.code == "run_timeout" and "not run for another 30 s" in info.value.message


def test_runs_in_a_forked_child_are_stopped_at_their_deadline() -> None:
    """The watchdog thread does not survive a fork: a child's looping run, once the
    parent had started the watchdog, was never stopped."""
    import os
    import signal
    import threading

    model = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.1)
    zeros = np.zeros((1, N_FEATURES), np.float32)
    model.run(zeros)  # starts the parent's watchdog
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the run was stopped
        try:
            model.run(np.ones((1, N_FEATURES), np.float32))
        except ShadowError as exc:
            os._exit(0 if exc.code == "run_timeout" else 1)
        os._exit(2)
    statuses: list[int] = []
    waiter = threading.Thread(target=lambda: statuses.append(os.waitpid(pid, 0)[1]))
    waiter.start()
    waiter.join(10)
    if not statuses:
        os.kill(pid, signal.SIGKILL)
        waiter.join()
        pytest.fail("the forked child's run was not stopped within 10 s")
    assert os.waitstatus_to_exitcode(statuses[0]) == 0


def test_a_run_finishing_while_another_times_out_leaves_the_breaker_consistent() -> None:
    """A run finishing between a timeout's count and its opening reset the count, and
    the timeout then opened the breaker anyway: a working model refused for 30 s ("the
    model's last 0 runs passed…"), its next pause doubled."""
    import threading

    clock = Clock()
    breaker = RunBreaker(pause_s=30.0, clock=clock)
    breaker.timed_out()
    breaker.timed_out()
    finisher = threading.Thread(target=breaker.finished)

    def tick() -> float:  # the third timeout reads the clock: the other run ends now
        finisher.start()
        finisher.join(0.2)  # blocked behind the timeout's lock, as it must be
        return clock.now

    breaker._clock = tick
    assert breaker.timed_out() is True
    finisher.join(5)
    # the finished run came after the opening and closed it: nothing left half-reset
    assert (breaker.consecutive, breaker.open_until, breaker.pause_s) == (0, 0.0, 30.0)
