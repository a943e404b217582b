"""What "good" means and what changed: objectives, drift, decay, telemetry, metrics.

Drift lives in :mod:`monitor.drift` (also re-exported here). evidently is imported only
inside :func:`evidently_report` / :func:`evidently_verdicts`, never at import time.
"""

from monitor._cbpe import CBPE, Calibration, CBPEMetric, Estimate
from monitor._decay import DecayEstimator, DecayResult, DecayStatus, WindowValue, realised_windows
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
]
