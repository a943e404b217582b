"""The daemon's dashboard: read-only HTML pages under ``/dashboard/`` (server-side SVG, no
JavaScript) and the JSON behind each under ``/v1/dashboard/``.

Mount with ``app.include_router(router)``.
"""

from __future__ import annotations

from fastapi import APIRouter

from ._api import router as api_router
from ._downsample import MAX_POINTS, buckets, downsample, downsample_indices
from ._pages import router as pages_router

router = APIRouter()
router.include_router(api_router)
router.include_router(pages_router)

__all__ = ["MAX_POINTS", "buckets", "downsample", "downsample_indices", "router"]
