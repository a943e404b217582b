"""A stored warm-start plan's `format_version` is an integer from 1 to the version this
tunewatch writes: 0, -3 and `True` were read as plans. And an explore share's note names
its trials with an English ordinal ("every 3th sampled trial")."""

from __future__ import annotations

from typing import Any

import pytest
from retune_data import small_space

from retune import WarmStartError
from retune.warmstart import PLAN_FORMAT_VERSION, ExploreShare, History, WarmStartPlan


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(0, id="zero"),
        pytest.param(-3, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(1.0, id="float"),
        pytest.param("1", id="string"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_plan_format_version_outside_1_to_the_current_is_refused(version: Any) -> None:
    data = WarmStartPlan().to_dict() | {"format_version": version}
    with pytest.raises(WarmStartError) as caught:
        WarmStartPlan.from_dict(data)
    message = str(caught.value)
    assert "`format_version`" in message
    assert f"from 1 to {PLAN_FORMAT_VERSION}" in message
    assert message.endswith(f"got {version!r}")


def test_every_plan_format_version_up_to_the_current_is_read() -> None:
    for version in range(1, PLAN_FORMAT_VERSION + 1):
        data = WarmStartPlan().to_dict() | {"format_version": version}
        assert WarmStartPlan.from_dict(data).format_version == version


@pytest.mark.parametrize(
    ("share", "note"),
    [
        pytest.param(1.0, "every sampled trial explores the full space", id="every"),
        pytest.param(0.5, "every 2nd sampled trial explores the full space", id="2nd"),
        pytest.param(1 / 3, "every 3rd sampled trial explores the full space", id="3rd"),
        pytest.param(0.25, "every 4th sampled trial explores the full space", id="4th"),
        pytest.param(1 / 11, "every 11th sampled trial explores the full space", id="11th"),
        pytest.param(1 / 12, "every 12th sampled trial explores the full space", id="12th"),
        pytest.param(1 / 21, "every 21st sampled trial explores the full space", id="21st"),
        pytest.param(1 / 22, "every 22nd sampled trial explores the full space", id="22nd"),
    ],
)
def test_an_explore_share_note_names_its_trials_with_an_ordinal(share: float, note: str) -> None:
    assert ExploreShare(share=share).plan(History(), small_space()).notes == (note,)
