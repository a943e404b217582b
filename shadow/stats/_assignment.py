"""Sticky assignment of units to the arms of a live split, and the sample-ratio check.

Assignment hashes ``salt`` and the unit key with BLAKE2b (stable across processes and
Python versions, unlike :func:`hash`), so a unit sees the same arm on every request and
every replica. A new ``salt`` reshuffles units for a new experiment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from scipy import stats as sps

from shadow.stats._errors import StatsError
from shadow.stats._validation import check_alpha

Arm = Literal["champion", "challenger"]

_BUCKETS = 2**64


def assignment_bucket(unit_key: str, *, salt: str) -> float:
    """The unit's position in ``[0, 1)``, uniform over units and fixed for a salt."""
    digest = hashlib.blake2b(
        unit_key.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")[:64]
    ).digest()
    return int.from_bytes(digest, "big") / _BUCKETS


def assign(unit_key: str, *, salt: str, percent: float) -> Arm:
    """``"challenger"`` for ``percent`` % of units (by hash), ``"champion"`` for the rest."""
    if not 0.0 <= percent <= 100.0:
        raise StatsError(f"`percent` must be in [0, 100], got {percent!r}")
    if not salt:
        raise StatsError("`salt` must be a non-empty string (one per experiment)")
    if len(salt.encode("utf-8")) > 64:
        raise StatsError(f"`salt` must be at most 64 bytes, got {len(salt.encode('utf-8'))}")
    bucket = assignment_bucket(unit_key, salt=salt)
    return "challenger" if bucket < percent / 100.0 else "champion"


@dataclass(frozen=True)
class SRMResult:
    """Chi-square goodness of fit of the observed split to the expected share."""

    chi2: float
    p_value: float
    mismatch: bool
    observed_share: float
    expected_share: float


def srm_check(
    n_control: int, n_treatment: int, expected_share: float, *, alpha: float = 0.001
) -> SRMResult:
    """Sample-ratio-mismatch check; ``expected_share`` is the treatment's expected share.

    A mismatch means assignment or logging is broken and the A/B result should not be
    trusted (Fabijan et al. 2019, "Diagnosing sample ratio mismatch"). The strict default
    ``alpha`` keeps false alarms rare when the check runs at every look.
    """
    check_alpha(alpha)
    if not 0.0 < expected_share < 1.0:
        raise StatsError(f"`expected_share` must be in (0, 1), got {expected_share!r}")
    if n_control < 0 or n_treatment < 0 or n_control + n_treatment == 0:
        raise StatsError(
            f"counts must be nonnegative with a positive total, got {n_control} and {n_treatment}"
        )
    total = n_control + n_treatment
    expected_t = total * expected_share
    expected_c = total - expected_t
    chi2 = (n_treatment - expected_t) ** 2 / expected_t + (n_control - expected_c) ** 2 / expected_c
    p = float(sps.chi2.sf(chi2, df=1))
    return SRMResult(
        chi2=float(chi2),
        p_value=p,
        mismatch=p < alpha,
        observed_share=n_treatment / total,
        expected_share=float(expected_share),
    )
