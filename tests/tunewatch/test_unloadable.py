"""When the refresh tries again a shadow version whose artefact would not load."""

from __future__ import annotations

import pytest

from tunewatch._unloadable import Unloadable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_failure_doubles_the_wait_up_to_the_cap() -> None:
    clock = Clock()
    unloadable = Unloadable(clock=clock, first_s=30.0, max_s=100.0)
    waits = []
    for _ in range(4):
        waits.append(unloadable.failed("m", 2, "aa"))
        clock.now += waits[-1]  # tried again when due
    assert waits == [30.0, 60.0, 100.0, 100.0]
    unloadable.failed("m", 2, "aa")
    assert unloadable.waiting("m", 2, "aa")
    clock.now += 99.9
    assert unloadable.waiting("m", 2, "aa")
    clock.now += 0.1
    assert not unloadable.waiting("m", 2, "aa")


def test_another_artefact_is_tried_at_once_and_starts_the_count_again() -> None:
    unloadable = Unloadable(clock=Clock())
    unloadable.failed("m", 2, "aa")
    unloadable.failed("m", 2, "aa")
    assert not unloadable.waiting("m", 2, "bb")
    assert unloadable.failed("m", 2, "bb") == 30.0


def test_a_load_or_a_version_leaving_shadow_clears_the_failure() -> None:
    unloadable = Unloadable(clock=Clock())
    for version in (2, 3, 4):
        unloadable.failed("m", version, "aa")
    unloadable.failed("other", 2, "aa")
    assert unloadable.count("m") == 3
    unloadable.loaded("m", 2)
    assert not unloadable.waiting("m", 2, "aa")
    unloadable.forget("m", keep={4})
    assert unloadable.count("m") == 1 and unloadable.waiting("m", 4, "aa")
    assert unloadable.count("other") == 1


@pytest.mark.parametrize(
    ("first_s", "max_s"), [(0.0, 10.0), (20.0, 10.0)], ids=["zero", "above-cap"]
)
def test_waits_out_of_order_are_refused(first_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="first_s"):
        Unloadable(first_s=first_s, max_s=max_s)


def test_a_failure_before_the_retry_time_keeps_the_wait_it_had() -> None:
    """Any reload of the model (a registration, a promotion) tries its versions that
    would not load: such a failure before the retry time doubled the wait each time."""
    clock = Clock()
    unloadable = Unloadable(clock=clock, first_s=30.0, max_s=3600.0)
    assert unloadable.failed("m", 2, "aa") == 30.0
    clock.now += 10.0
    assert unloadable.failed("m", 2, "aa") == 20.0
    assert unloadable.failed("m", 2, "aa") == 20.0
    clock.now += 20.0
    assert unloadable.failed("m", 2, "aa") == 60.0
