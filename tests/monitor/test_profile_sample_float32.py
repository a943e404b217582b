"""A reference profile keeps a numeric column's sample as float32 when its values are
float32's (a model's features are: they come from float32 inputs), half the bytes, and
every method reads it as the float64 values it was: the verdicts are those it gave
before.

A 1,000-feature model's profile kept 10,000 float64 values a feature: 76 MB cached per
model, more than its float32 reference rows."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.drift import (
    ColumnDriftConfig,
    DriftDetector,
    MethodName,
    NumericSummary,
    ReferenceProfile,
)
from tests.monitor._streams import COLUMN_TYPES, NUMERIC, window

#: Each numeric column's configured method: every method that reads the sample (KS,
#: Wasserstein and its noise floor, Jensen-Shannon's histograms) and PSI's bins.
METHODS: dict[str, MethodName] = {
    "age": "ks",
    "income": "wasserstein",
    "balance": "jensenshannon",
    "tenure": "psi",
    "score": "wasserstein",
    "txn_rate": "ks",
}


def _float32(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its numeric columns as float32: values a float32 input holds."""
    return frame.astype(dict.fromkeys(NUMERIC, np.float32))


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    frame = _float32(window(12_000, rng=np.random.default_rng(3)))
    return ReferenceProfile.build(frame, column_types=COLUMN_TYPES)  # type: ignore[arg-type]


def _verdicts(profile: ReferenceProfile, *, configured: bool) -> list[tuple[Any, ...]]:
    """Each column's verdict on four windows (small and large, unchanged and changed)."""
    rng = np.random.default_rng(11)
    columns = {c: ColumnDriftConfig(method=m) for c, m in METHODS.items()} if configured else {}
    out: list[tuple[Any, ...]] = []
    for n, changed in ((150, False), (150, True), (4000, False), (4000, True)):
        current = _float32(window(n, rng=rng, changed=changed))
        result = DriftDetector(profile, columns=columns).check(current)
        out.extend(
            (n, changed, c.column, c.method, c.statistic, c.p_value, c.drifted)
            for c in result.columns
        )
    return out


def test_a_float32_column_s_sample_is_held_in_four_bytes_a_value() -> None:
    n_features = 40
    x = np.random.default_rng(0).normal(size=(12_000, n_features)).astype(np.float32)
    columns = {f"x{j}": x[:, j] for j in range(n_features)}
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        profile = ReferenceProfile.from_columns(columns, max_sample=10_000, seed=0)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the samples at 4 bytes a value, and the rest of each summary (its bins and moments:
    # 1.1 kB a column); at 8 bytes a value it held 3.2 MB
    bound = 4 * 10_000 * n_features + 2048 * n_features
    assert held - before <= bound, f"held {held - before} bytes, over {bound}"
    first = profile.columns["x0"]
    assert isinstance(first, NumericSummary)
    # the methods read the values as float64, as they were
    assert first.sample.dtype == np.float64 and first.sample.size == 10_000
    assert np.array_equal(first.sample, np.sort(first.sample))
    assert set(first.sample.tolist()) <= set(x[:, 0].astype(np.float64).tolist())


def test_a_column_float32_cannot_hold_keeps_its_float64_values() -> None:
    values = np.random.default_rng(1).normal(size=3000)  # float64: not float32's
    profile = ReferenceProfile.from_columns({"label": values})
    summary = profile.columns["label"]
    assert isinstance(summary, NumericSummary)
    assert np.array_equal(summary.sample, np.sort(values))


def test_the_profile_s_bytes_are_unchanged_by_how_it_holds_its_samples(
    profile: ReferenceProfile,
) -> None:
    loaded = ReferenceProfile.from_bytes(profile.to_bytes())
    assert loaded.to_bytes() == profile.to_bytes()
    for name in NUMERIC:
        a, b = loaded.columns[name], profile.columns[name]
        assert isinstance(a, NumericSummary) and isinstance(b, NumericSummary)
        assert a.sample.dtype == np.float64 and np.array_equal(a.sample, b.sample)


@pytest.mark.parametrize("configured", [True, False], ids=["every-method", "default-methods"])
def test_verdicts_on_a_float32_reference_are_those_of_its_float64_sample(
    profile: ReferenceProfile, configured: bool
) -> None:
    assert _verdicts(profile, configured=configured) == GOLDEN[configured]


#: The verdicts before the samples were held as float32 (float64 samples), recorded.
GOLDEN: dict[bool, list[tuple[Any, ...]]] = {
    True: [
        (150, False, "age", "ks", 0.04293333333333332, 0.9368985412040699, False),
        (150, False, "income", "wasserstein", 0.09738986763266666, None, False),
        (150, False, "balance", "jensenshannon", 0.11771168710122201, None, False),
        (150, False, "tenure", "psi", 0.0399553999927142, None, False),
        (150, False, "score", "wasserstein", 0.21469913168828714, None, True),
        (150, False, "txn_rate", "ks", 0.04620000000000002, 0.8955515936670546, False),
        (150, False, "region", "chisquare", 3.658352737565339, 0.30079754425210986, False),
        (150, False, "channel", "chisquare", 0.8523431648710046, 0.6530042884415246, False),
        (150, True, "age", "ks", 0.23403333333333337, 1.299606047529187e-07, True),
        (150, True, "income", "wasserstein", 0.927233621555162, None, True),
        (150, True, "balance", "jensenshannon", 0.24849778619386848, None, True),
        (150, True, "tenure", "psi", 0.036071695757782414, None, False),
        (150, True, "score", "wasserstein", 0.7428313896650469, None, True),
        (150, True, "txn_rate", "ks", 0.054366666666666674, 0.7531486764433661, False),
        (150, True, "region", "chisquare", 187.97574512229397, 1.670585722518835e-40, True),
        (150, True, "channel", "chisquare", 7.270055682324902, 0.026383199838246173, True),
        (4000, False, "age", "ks", 0.014449999999999963, 0.5845337267009937, False),
        (4000, False, "income", "wasserstein", 0.016089171506020038, None, False),
        (4000, False, "balance", "jensenshannon", 0.02085193854311301, None, False),
        (4000, False, "tenure", "psi", 0.005029086390798477, None, False),
        (4000, False, "score", "wasserstein", 0.01818280016520751, None, False),
        (4000, False, "txn_rate", "ks", 0.01440000000000008, 0.5889814475217974, False),
        (4000, False, "region", "jensenshannon", 0.005971052968525472, None, False),
        (4000, False, "channel", "jensenshannon", 0.013898149874743786, None, False),
        (4000, True, "age", "ks", 0.21154999999999996, 1.1425465094701694e-112, True),
        (4000, True, "income", "wasserstein", 0.7162294339581481, None, True),
        (4000, True, "balance", "jensenshannon", 0.21580987286842435, None, True),
        (4000, True, "tenure", "psi", 0.0024240210951504172, None, False),
        (4000, True, "score", "wasserstein", 0.7112615894348493, None, True),
        (4000, True, "txn_rate", "ks", 0.019550000000000012, 0.22197757049504796, False),
        (4000, True, "region", "jensenshannon", 0.33055424401054234, None, True),
        (4000, True, "channel", "jensenshannon", 0.010467370953602305, None, False),
    ],
    False: [
        (150, False, "age", "ks", 0.04293333333333332, 0.9368985412040699, False),
        (150, False, "income", "ks", 0.07203333333333328, 0.4070636459493613, False),
        (150, False, "balance", "ks", 0.044466666666666654, 0.918863340219457, False),
        (150, False, "tenure", "ks", 0.05703333333333338, 0.6995655530749207, False),
        (150, False, "score", "ks", 0.09026666666666672, 0.16858948383527694, False),
        (150, False, "txn_rate", "ks", 0.04620000000000002, 0.8955515936670546, False),
        (150, False, "region", "chisquare", 3.658352737565339, 0.30079754425210986, False),
        (150, False, "channel", "chisquare", 0.8523431648710046, 0.6530042884415246, False),
        (150, True, "age", "ks", 0.23403333333333337, 1.299606047529187e-07, True),
        (150, True, "income", "ks", 0.35713333333333336, 2.111923768078009e-17, True),
        (150, True, "balance", "ks", 0.31720000000000004, 9.699934787107102e-14, True),
        (150, True, "tenure", "ks", 0.07546666666666668, 0.35064976484795773, False),
        (150, True, "score", "ks", 0.33440000000000003, 2.9414427237581904e-15, True),
        (150, True, "txn_rate", "ks", 0.054366666666666674, 0.7531486764433661, False),
        (150, True, "region", "chisquare", 187.97574512229397, 1.670585722518835e-40, True),
        (150, True, "channel", "chisquare", 7.270055682324902, 0.026383199838246173, True),
        (4000, False, "age", "wasserstein", 0.01710117372503775, None, False),
        (4000, False, "income", "wasserstein", 0.016089171506020038, None, False),
        (4000, False, "balance", "wasserstein", 0.01771164552613348, None, False),
        (4000, False, "tenure", "wasserstein", 0.03362833744171185, None, False),
        (4000, False, "score", "wasserstein", 0.01818280016520751, None, False),
        (4000, False, "txn_rate", "wasserstein", 0.020858429871022693, None, False),
        (4000, False, "region", "jensenshannon", 0.005971052968525472, None, False),
        (4000, False, "channel", "jensenshannon", 0.013898149874743786, None, False),
        (4000, True, "age", "wasserstein", 0.512146800261919, None, True),
        (4000, True, "income", "wasserstein", 0.7162294339581481, None, True),
        (4000, True, "balance", "wasserstein", 0.8284925461959964, None, True),
        (4000, True, "tenure", "wasserstein", 0.037113265667377694, None, False),
        (4000, True, "score", "wasserstein", 0.7112615894348493, None, True),
        (4000, True, "txn_rate", "wasserstein", 0.024733372989327287, None, False),
        (4000, True, "region", "jensenshannon", 0.33055424401054234, None, True),
        (4000, True, "channel", "jensenshannon", 0.010467370953602305, None, False),
    ],
}
