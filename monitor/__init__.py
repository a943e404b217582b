"""What "good" means and what changed: objectives, drift, decay, telemetry, metrics."""

from monitor._metrics import CONTENT_TYPE_LATEST, LATENCY_BUCKETS, ServingMetrics

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "ServingMetrics"]
