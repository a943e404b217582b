"""The records a request and a model version's outputs are stored as: float32 bytes of
their rows, with their shapes (written by :class:`tunewatch._recorder.Recorder`)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from tunewatch.store import OutputRecord, RequestRecord, Source
from tunewatch.store import Role as OutputRole


def request_record(
    model: str,
    request_id: str,
    x: np.ndarray,
    *,
    source: Source = "infer",
    unit_key: str | None = None,
    received_at: datetime | None = None,
) -> RequestRecord:
    """The record of one request's rows, as the store keeps them (float32 bytes),
    received now or at ``received_at`` (a mirror record's ``scored_at``: when the serving
    stack scored it)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return RequestRecord(
        model=model,
        request_id=request_id,
        received_at=received_at or datetime.now(UTC),
        source=source,
        n_rows=x32.shape[0],
        n_cols=x32.shape[1],
        inputs=x32.tobytes(),
        unit_key=unit_key,
    )


def output_record(
    model: str,
    request_id: str,
    version: int,
    role: OutputRole,
    values: np.ndarray,
    latency_s: float | None,
    created_at: datetime | None = None,
) -> OutputRecord:
    """The record of one model version's outputs for a request (float32, two-dimensional)."""
    v32 = np.ascontiguousarray(values, dtype=np.float32)
    if v32.ndim == 1:
        v32 = v32.reshape(-1, 1)
    return OutputRecord(
        model=model,
        request_id=request_id,
        version=version,
        role=role,
        latency_s=latency_s,
        n_rows=v32.shape[0],
        n_cols=v32.shape[1],
        values=v32.tobytes(),
        created_at=created_at or datetime.now(UTC),
    )
