"""Data drift: a versioned reference profile, per-column methods (one module each) and a
detector applying evidently 0.7's default choices with a dataset-level rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
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
    from monitor.drift._detector import (
        DatasetRule,
        DriftDetector,
        DriftResult,
        benjamini_hochberg,
        sample_rows,
    )
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

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "DriftError": "monitor._errors",
    "ProfileFormatError": "monitor._errors",
    "ColumnDrift": "monitor.drift._base",
    "ColumnDriftConfig": "monitor.drift._base",
    "DriftMethod": "monitor.drift._base",
    "DriftStatus": "monitor.drift._base",
    "MethodName": "monitor.drift._base",
    "PreparedColumn": "monitor.drift._base",
    "prepare_current": "monitor.drift._base",
    "ChiSquare": "monitor.drift._chisquare",
    "DatasetRule": "monitor.drift._detector",
    "DriftDetector": "monitor.drift._detector",
    "DriftResult": "monitor.drift._detector",
    "benjamini_hochberg": "monitor.drift._detector",
    "sample_rows": "monitor.drift._detector",
    "JensenShannon": "monitor.drift._jensenshannon",
    "KolmogorovSmirnov": "monitor.drift._ks",
    "FORMAT_VERSION": "monitor.drift._profile",
    "CategoricalSummary": "monitor.drift._profile",
    "ColumnKind": "monitor.drift._profile",
    "ColumnSummary": "monitor.drift._profile",
    "NumericSummary": "monitor.drift._profile",
    "ReferenceProfile": "monitor.drift._profile",
    "PopulationStability": "monitor.drift._psi",
    "METHODS": "monitor.drift._registry",
    "default_method": "monitor.drift._registry",
    "Wasserstein": "monitor.drift._wasserstein",
    "ZTest": "monitor.drift._ztest",
}

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
    "sample_rows",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
