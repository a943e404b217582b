"""The dashboard's one router: the JSON endpoints and the pages."""

from __future__ import annotations

from fastapi import APIRouter

from ._ab_page import router as ab_router
from ._api import router as api_router
from ._history import router as history_router
from ._pages import router as pages_router
from ._session import router as session_router

router = APIRouter()
router.include_router(api_router)
router.include_router(session_router)
router.include_router(pages_router)
router.include_router(ab_router)
router.include_router(history_router)
