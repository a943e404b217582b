"""The daemon's dashboard: read-only HTML pages under ``/dashboard/`` (server-side SVG, no
JavaScript) and the JSON behind each under ``/v1/dashboard/``.

Mount with ``app.include_router(router)``.
"""

from __future__ import annotations

from ._downsample import MAX_POINTS, buckets, downsample, downsample_indices, extreme_indices
from ._router import router

__all__ = [
    "MAX_POINTS",
    "buckets",
    "downsample",
    "downsample_indices",
    "extreme_indices",
    "router",
]
