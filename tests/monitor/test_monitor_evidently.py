"""Agreement with evidently 0.7's DataDriftPreset on a small window (2k rows each).

Tolerance: the same per-column verdict on at least 95 % of the columns (here all 8).
The first evidently call pays its ~3 s import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor import DriftError, EvidentlyError, evidently_report, evidently_verdicts
from monitor.drift import ColumnDriftConfig, DriftDetector, ReferenceProfile
from tests.monitor._streams import COLUMN_TYPES, window


@pytest.mark.slow  # ~2 s plus evidently's 3 s import
def test_verdicts_agree_with_evidently_and_degenerate_columns_are_left_out() -> None:
    reference = window(2000, rng=np.random.default_rng(20))
    current = window(2000, rng=np.random.default_rng(21), changed=True)
    current["tenure"] = np.nan  # all-missing: evidently would raise; we leave it out
    ours = DriftDetector(
        ReferenceProfile.build(reference, column_types=COLUMN_TYPES)  # type: ignore[arg-type]
    ).check(current)
    html, theirs = evidently_report(reference, current, column_types=COLUMN_TYPES)  # type: ignore[arg-type]
    assert "<html" in html.lower()
    assert set(theirs) == set(COLUMN_TYPES) - {"tenure"}
    assert ours.column("tenure").status == "insufficient_data"
    agreement = np.mean([ours.column(c).drifted == theirs[c] for c in theirs])
    assert agreement >= 0.95
    assert any(theirs.values()) and not all(theirs.values())


def test_configured_methods_reach_evidently() -> None:
    rng = np.random.default_rng(22)
    reference = window(1500, rng=rng)
    current = window(1500, rng=rng)
    config = {"age": ColumnDriftConfig(method="ks", threshold=0.999)}  # KS p <= 0.999: drift
    _, verdicts = evidently_report(reference, current, columns=config, column_types=COLUMN_TYPES)  # type: ignore[arg-type]
    assert verdicts["age"] is True


def test_no_usable_column_raises_evidently_error() -> None:
    reference = window(100, rng=np.random.default_rng(23))[["age"]]
    with pytest.raises(EvidentlyError, match="no column"):
        evidently_report(reference, reference.assign(age=np.nan))


def _discrete_window(n: int, *, rng: np.random.Generator, flag_share: float) -> pd.DataFrame:
    """A continuous column, a 0/1 float flag and a three-valued float code."""
    return pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "flag": (rng.random(n) < flag_share).astype(np.float64),
            "code": rng.choice(np.array([-1.0, 0.0, 1.0]), n),
        }
    )


def test_numeric_columns_judged_by_z_or_chisquare_are_compared_as_categories() -> None:
    # the default chooser's pick for a numeric flag or code on a small window: evidently
    # allows both tests on categorical columns only, and refused the whole report
    reference = _discrete_window(300, rng=np.random.default_rng(24), flag_share=0.3)
    current = _discrete_window(300, rng=np.random.default_rng(25), flag_share=0.6)
    current[["flag", "code"]] = current[["flag", "code"]].astype(np.float32)
    config = {"flag": ColumnDriftConfig(method="z"), "code": ColumnDriftConfig(method="chisquare")}
    html, verdicts = evidently_report(
        reference, current, columns=config, column_types=dict.fromkeys(reference.columns, "num")
    )
    assert set(verdicts) == {"age", "flag", "code"}
    # 0.3 -> 0.6 of 1.0s is drift; the code's three values keep their shares
    assert verdicts["flag"] is True and verdicts["code"] is False
    assert "Z-test p_value" in html and "chi-square p_value" in html


@pytest.mark.slow  # one report, ~2 s
def test_a_column_name_cannot_close_the_reports_script() -> None:
    # evidently writes column names unescaped into an inline script's JSON: a name
    # holding "</script>" ended that script and started one of its own
    rng = np.random.default_rng(3)
    name = "x</script><script>alert(1)</script><!--"
    reference = pd.DataFrame({name: rng.normal(size=300), "b": rng.normal(size=300)})
    current = pd.DataFrame({name: rng.normal(1.0, size=300), "b": rng.normal(size=300)})
    plain = reference.rename(columns={name: "x"}), current.rename(columns={name: "x"})

    html, verdicts = evidently_report(
        reference, current, columns={name: ColumnDriftConfig(method="ks", threshold=0.05)}
    )
    plain_html, _ = evidently_report(*plain, columns={"x": ColumnDriftConfig(method="ks")})

    assert verdicts == {name: True, "b": False}
    assert name not in html
    assert "alert(1)" in html  # the name is still shown, its "<" made inert
    assert html.lower().count("<script") == plain_html.lower().count("<script")
    assert html.lower().count("</script") == plain_html.lower().count("</script")


@pytest.mark.parametrize("share", [0.0, 2.0, float("nan")], ids=["zero", "two", "nan"])
def test_a_drift_share_outside_0_1_is_refused_naming_it(share: float) -> None:
    """A share of 2.0 ran evidently, whose dataset verdict could never be drifted."""
    frame = pd.DataFrame({"a": np.arange(50.0)})
    with pytest.raises(DriftError, match=r"`drift_share` must be in \(0, 1\]"):
        evidently_verdicts(frame, frame, drift_share=share)
