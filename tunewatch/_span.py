"""The span of requests a verdict judged, and the time conversions windows use.

Hysteresis tells windows apart by the oldest and newest request each verdict judged
(:func:`tunewatch._policies.decide`); the store's windows carry times as epoch seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from tunewatch._policies import FIRST_REQUEST, LAST_REQUEST


def requests_span(received_at: np.ndarray) -> dict[str, str]:
    """The payload keys naming the oldest and newest request judged (none if none)."""
    if not received_at.size:
        return {}
    return {
        FIRST_REQUEST: ts(received_at.min()).isoformat(),
        LAST_REQUEST: ts(received_at.max()).isoformat(),
    }


def epoch(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def iso(value: datetime | float) -> str:
    return value.isoformat() if isinstance(value, datetime) else ts(value).isoformat()
