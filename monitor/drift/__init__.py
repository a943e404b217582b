"""Data drift: a versioned reference profile, per-column methods (one module each) and a
detector applying evidently 0.7's default choices with a dataset-level rule."""

from __future__ import annotations

from monitor._errors import DriftError, ProfileFormatError
from monitor.drift._base import (
    ColumnDrift,
    ColumnDriftConfig,
    DriftMethod,
    DriftStatus,
    MethodName,
    PreparedColumn,
    prepare_current,
)
from monitor.drift._chisquare import ChiSquare
from monitor.drift._detector import DatasetRule, DriftDetector, DriftResult, benjamini_hochberg
from monitor.drift._jensenshannon import JensenShannon
from monitor.drift._ks import KolmogorovSmirnov
from monitor.drift._profile import (
    FORMAT_VERSION,
    CategoricalSummary,
    ColumnKind,
    ColumnSummary,
    NumericSummary,
    ReferenceProfile,
)
from monitor.drift._psi import PopulationStability
from monitor.drift._registry import METHODS, default_method
from monitor.drift._wasserstein import Wasserstein
from monitor.drift._ztest import ZTest

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "CategoricalSummary",
    "ChiSquare",
    "ColumnDrift",
    "ColumnDriftConfig",
    "ColumnKind",
    "ColumnSummary",
    "DatasetRule",
    "DriftDetector",
    "DriftError",
    "DriftMethod",
    "DriftResult",
    "DriftStatus",
    "JensenShannon",
    "KolmogorovSmirnov",
    "MethodName",
    "NumericSummary",
    "PopulationStability",
    "PreparedColumn",
    "ProfileFormatError",
    "ReferenceProfile",
    "Wasserstein",
    "ZTest",
    "benjamini_hochberg",
    "default_method",
    "prepare_current",
]
