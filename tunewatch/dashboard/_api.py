"""The JSON behind every dashboard page, under ``/v1/dashboard/...``.

Same authentication as the pages: a bearer token in ``Authorization`` or the dashboard's
session cookie, with the ``read`` permission. Every series is downsampled on the server to
at most ``max_points`` points (default 400). At most
:data:`~tunewatch.dashboard._limit.MAX_READS_IN_PROGRESS` reads (pages included) run at
once in the daemon; another is answered 429 ``dashboard_busy`` with ``Retry-After``.
Every answer is ``Cache-Control: no-store`` and ``Vary: Cookie`` (:mod:`._limit`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator
from starlette.requests import Request

from tunewatch._auth import Principal
from tunewatch._objective_display import configured_objective
from tunewatch.api._context import ascii_digits, context

from . import _data, _series
from ._auth import principal
from ._downsample import MAX_POINTS
from ._limit import BUSY_CODE, MAX_READS_IN_PROGRESS, ReadRoute
from ._sources import sources


def _reader(request: Request) -> Principal:
    return principal(request, "read")


Reader = Annotated[Principal, Depends(_reader)]
# numbers spelt in ASCII digits only, as every /v1 route's (`1_0` read as 10, `+5` as 5)
Digits = BeforeValidator(ascii_digits)
MaxPoints = Annotated[int, Digits, Query(ge=2, le=5000)]
Windows = Annotated[int, Digits, Query(ge=1, le=100_000)]
Limit = Annotated[int, Digits, Query(ge=1, le=1000)]
TestLimit = Annotated[int, Digits, Query(ge=0, le=_data.MAX_TESTS_SHOWN)]
VersionLimit = Annotated[int, Digits, Query(ge=1, le=_data.MAX_VERSIONS_SHOWN)]
Filter = Annotated[str | None, Query(max_length=200)]
# checked as `GET /v1/events?type=` checks it (`tunewatch.api._log.checked_type`)
EventType = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Empty or absent: all. A type the daemon records, or one the store "
        "holds events of, as for `GET /v1/events`; any other is 400 `invalid_request`.",
    ),
]
Features = Annotated[int, Digits, Query(ge=1, le=_series.MAX_DRIFT_FEATURES)]

router = APIRouter(
    prefix="/v1/dashboard",
    tags=["dashboard"],
    route_class=ReadRoute,
    responses={
        429: {
            "description": f"`{BUSY_CODE}`: {MAX_READS_IN_PROGRESS} dashboard reads are in "
            "progress in this daemon already; retry after `Retry-After` seconds"
        }
    },
)


@router.get("/overview")
def overview(request: Request, _: Reader) -> dict[str, Any]:
    """Every model: champion, challengers (each with its `tags`, `{key: value}`), the
    newest evaluation of each kind with its alarm, the five newest events and the active
    jobs."""
    return _data.overview(sources(request))


@router.get("/models/{model}/ab")
def ab_results(
    model: str,
    request: Request,
    _: Reader,
    max_points: MaxPoints = MAX_POINTS,
    limit: TestLimit = _data.AB_TESTS,
    decided_points: MaxPoints = _data.DECIDED_POINTS,
) -> dict[str, Any]:
    """Comparison tests, newest first: the `limit` newest (0-100, default 20) and every
    open test of the current champion however old; `tests_total` counts them all. Each
    has its status, decision, n, correction and at most `max_points` of its looks over n,
    a decided test at most `decided_points` (2-5000, default 50)
    (`series`, evenly spaced, the first and last kept: estimate, always-valid
    `ci_low`/`ci_high`, p-values, decision; `series_total` looks in all), with
    `decision_look` the index into `series` of the look that decided (always kept). The
    current champion's open tests carry their `guardrails` as they stand now, decided
    tests the verdict recorded when they were acted on (null when none was); `srm` is the
    newest sample-ratio check of the configured live split, whatever tests there are."""
    return _data.ab_results(
        sources(request), model, max_points=max_points, limit=limit, decided_points=decided_points
    )


@router.get("/models/{model}/drift")
def drift(
    model: str,
    request: Request,
    _: Reader,
    windows: Windows = _series.MAX_WINDOWS,
    max_points: MaxPoints = MAX_POINTS,
    features: Features = _series.DRIFT_FEATURES,
) -> dict[str, Any]:
    """Drift per feature over the newest `windows` windows (oldest first), aggregated into
    at most `max_points` columns. Per feature `features[i]` in a column: `shares[i]` is the
    share of the column's windows that tested it in which it drifted (null: none tested
    it; the heatmap's colour), `tested[i]` their count, `chance[i]` the mean
    false-positive rate of their tests (a p-value test's threshold, a distance's
    `evaluation.drift.alpha`), `beyond_chance[i]` whether it drifted in more of them than
    a one-sided binomial test at that rate allows (the heatmap's outline; a column of one
    window: whether it drifted), `scores[i]` its highest drift score on [0, 1] (1 - p, or
    a distance over twice its threshold; one that did not drift is scored against its
    fixed threshold, below 0.5, and a drifted one at 0.5 or more) and `drifted[i]` whether
    any window drifted it; `evaluation`, `status`, `alarm`, `window_end` and
    `drifted_share` are of the column's newest window that raised the alarm, else its
    newest; `latest` links the evidently report (of `features` features, as the
    heatmap), its `columns` those of the features
    kept (below), the prediction and the label, `columns_total` counting all it tested.
    Every window in range is read. Of more
    than `features` features (1-1000, default 50), those beyond chance in some column,
    then by highest share, then by highest score are kept, in the model's order;
    `features_total` counts them all."""
    return _series.drift(
        sources(request), model, windows=windows, max_points=max_points, features=features
    )


@router.get("/models/{model}/decay")
def decay(
    model: str,
    request: Request,
    _: Reader,
    windows: Windows = _series.MAX_WINDOWS,
    max_points: MaxPoints = MAX_POINTS,
) -> dict[str, Any]:
    """The newest decay trend (objective per window, slope, projected crossing), the
    label-free estimate against the realised metric per window, and label coverage. Every
    window of the newest `windows` is read; each series keeps at most `max_points` of them,
    the first, the last and those holding each stretch's lowest and highest values, so a
    one-window collapse is never dropped."""
    return _series.decay(sources(request), model, windows=windows, max_points=max_points)


@router.get("/models/{model}/telemetry")
def telemetry(
    model: str,
    request: Request,
    _: Reader,
    windows: Windows = _series.MAX_WINDOWS,
    max_points: MaxPoints = MAX_POINTS,
) -> dict[str, Any]:
    """Latency p50/p90/p99 (seconds) and load memory per version and hyperparameter set
    (newest telemetry window), and p99 over time of `history_versions`: the versions of
    the newest window, then the most recently served others, 10 at most
    (`versions_left_out` counts the others served in range). Every window of the newest
    `windows` is read and at most `max_points` kept, the first, the last and, per drawn
    version, the one with each stretch's highest p99, so a one-window spike is never
    dropped."""
    return _series.telemetry(sources(request), model, windows=windows, max_points=max_points)


@router.get("/models/{model}/tuning")
def tuning(
    model: str,
    request: Request,
    _: Reader,
    max_points: MaxPoints = MAX_POINTS,
    limit: VersionLimit = _data.TUNING_VERSIONS,
) -> dict[str, Any]:
    """Re-tuning jobs (newest first) with their study and best value by trial, and the
    newest `limit` versions (1-500, default 50; newest first) with their tags
    (`{key: value}`) and tuning details: best value, trials, fold scores, warm-start plan.
    `versions_total` counts them all."""
    src = sources(request)
    configured = configured_objective(context(request).runtime.config, src.store, model)
    return _data.tuning(
        src, model, max_points=max_points, limit=limit, configured_objective=configured
    )


@router.get("/models/{model}/events")
def events(
    model: str,
    request: Request,
    _: Reader,
    type: EventType = None,
    action: Filter = None,
    actor: Filter = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """The model's events (filter: `type`) and audit entries that target it (filters:
    `action`, `actor`), newest first, with the values each filter can take. A `type` the
    daemon does not record and the store holds no events of is 400 `invalid_request`, as
    on `GET /v1/events`."""
    return _data.events(sources(request), model, type=type, action=action, actor=actor, limit=limit)
