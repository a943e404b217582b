"""What "good" means and what changed: objectives, drift, decay, telemetry, metrics.

Drift lives in :mod:`monitor.drift` (also re-exported here). evidently is imported only
inside :func:`evidently_report` / :func:`evidently_verdicts`, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from monitor._cbpe import CBPE, Calibration, CBPEMetric, Estimate
    from monitor._decay import (
        DecayEstimator,
        DecayResult,
        DecayStatus,
        WindowValue,
        realised_windows,
        window_value,
    )
    from monitor._errors import (
        DriftError,
        EstimationError,
        MonitorError,
        ProfileFormatError,
    )
    from monitor._evidently import EvidentlyError, evidently_report, evidently_verdicts
    from monitor._metrics import CONTENT_TYPE_LATEST, LATENCY_BUCKETS, ServingMetrics
    from monitor._telemetry import (
        CorrelationReport,
        CostPrediction,
        HyperparameterCorrelation,
        HyperparameterTelemetry,
        HyperparameterValue,
        LatencySummary,
        ServingCostModel,
    )
    from monitor.drift import (
        ColumnDrift,
        ColumnDriftConfig,
        DatasetRule,
        DriftDetector,
        DriftResult,
        ReferenceProfile,
    )

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "CBPE": "monitor._cbpe",
    "Calibration": "monitor._cbpe",
    "CBPEMetric": "monitor._cbpe",
    "Estimate": "monitor._cbpe",
    "DecayEstimator": "monitor._decay",
    "DecayResult": "monitor._decay",
    "DecayStatus": "monitor._decay",
    "WindowValue": "monitor._decay",
    "realised_windows": "monitor._decay",
    "window_value": "monitor._decay",
    "DriftError": "monitor._errors",
    "EstimationError": "monitor._errors",
    "MonitorError": "monitor._errors",
    "ProfileFormatError": "monitor._errors",
    "EvidentlyError": "monitor._evidently",
    "evidently_report": "monitor._evidently",
    "evidently_verdicts": "monitor._evidently",
    "CONTENT_TYPE_LATEST": "monitor._metrics",
    "LATENCY_BUCKETS": "monitor._metrics",
    "ServingMetrics": "monitor._metrics",
    "CorrelationReport": "monitor._telemetry",
    "CostPrediction": "monitor._telemetry",
    "HyperparameterCorrelation": "monitor._telemetry",
    "HyperparameterTelemetry": "monitor._telemetry",
    "HyperparameterValue": "monitor._telemetry",
    "LatencySummary": "monitor._telemetry",
    "ServingCostModel": "monitor._telemetry",
    "ColumnDrift": "monitor.drift",
    "ColumnDriftConfig": "monitor.drift",
    "DatasetRule": "monitor.drift",
    "DriftDetector": "monitor.drift",
    "DriftResult": "monitor.drift",
    "ReferenceProfile": "monitor.drift",
}

__all__ = [
    "CBPE",
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "CBPEMetric",
    "Calibration",
    "ColumnDrift",
    "ColumnDriftConfig",
    "CorrelationReport",
    "CostPrediction",
    "DatasetRule",
    "DecayEstimator",
    "DecayResult",
    "DecayStatus",
    "DriftDetector",
    "DriftError",
    "DriftResult",
    "Estimate",
    "EstimationError",
    "EvidentlyError",
    "HyperparameterCorrelation",
    "HyperparameterTelemetry",
    "HyperparameterValue",
    "LatencySummary",
    "MonitorError",
    "ProfileFormatError",
    "ReferenceProfile",
    "ServingCostModel",
    "ServingMetrics",
    "WindowValue",
    "evidently_report",
    "evidently_verdicts",
    "realised_windows",
    "window_value",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
