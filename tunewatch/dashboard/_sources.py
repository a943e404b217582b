"""Where the pages' data comes from, taken from the daemon's :class:`AppContext`."""

from __future__ import annotations

from starlette.requests import Request

from tunewatch.api._comparisons import runner
from tunewatch.api._context import context

from ._data import Sources


def sources(request: Request) -> Sources:
    ctx = context(request)
    return Sources(
        store=ctx.runtime.store,
        runner=runner(request),
        tuning_storage=ctx.runtime.config.tuning_storage_url,
        tuning_archive=ctx.runtime.config.tuning_archive_url,
    )
