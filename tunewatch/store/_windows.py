"""Reading the scoring log back as arrays: the windows evaluation and tuning work on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, and_, or_, select, union_all

from .._errors import InvalidValueError
from ._schema import labels, model_versions, outputs, requests


@dataclass(frozen=True, slots=True, eq=False)
class Window:
    """Rows of a model's log, one per scored row (a batch request gives several).

    ``outputs`` holds what answered in production (the champion's or the mirrored
    stack's primary output), NaN where none was recorded; ``labels`` and
    ``label_received_at`` (epoch seconds) are NaN where no label has arrived yet.
    """

    model: str
    request_ids: tuple[str, ...]
    received_at: np.ndarray  # float64 epoch seconds, per row
    features: np.ndarray  # float32 [rows, n_features]
    outputs: np.ndarray  # float32 [rows, k]
    versions: np.ndarray  # int64 per row, -1 where no output
    labels: np.ndarray  # float64 per row
    label_received_at: np.ndarray  # float64 epoch seconds per row

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    def labelled(self) -> np.ndarray:
        return np.asarray(~np.isnan(self.labels))


def read_window(
    conn: Connection,
    model: str,
    *,
    n_features: int,
    start: datetime | None = None,
    end: datetime | None = None,
    last_n: int | None = None,
    with_features: bool = True,
) -> Window:
    """Requests of ``model`` received in ``[start, end)`` (or the newest holding
    ``last_n`` rows: whole requests, so up to one request's rows more).

    Without ``with_features`` the input blobs are not read and ``features`` has no
    columns: for figures over outputs and labels alone, such as decay.
    """
    answered = and_(
        outputs.c.model == requests.c.model,
        outputs.c.request_id == requests.c.request_id,
        outputs.c.role.in_(("champion", "external")),
    )
    labelled = and_(
        labels.c.model == requests.c.model, labels.c.request_id == requests.c.request_id
    )
    stmt = (
        select(
            requests.c.request_id,
            requests.c.received_at,
            requests.c.n_rows,
            requests.c.n_cols,
            *([requests.c.inputs] if with_features else []),
            outputs.c.version,
            outputs.c.n_cols.label("out_cols"),
            outputs.c["values"].label("out_values"),
            labels.c.value,
            labels.c.received_at.label("label_at"),
        )
        .select_from(requests.outerjoin(outputs, answered).outerjoin(labels, labelled))
        .where(requests.c.model == model)
    )
    if start is not None:
        stmt = stmt.where(requests.c.received_at >= start)
    if end is not None:
        stmt = stmt.where(requests.c.received_at < end)
    tie = byte_ordered(requests.c.request_id, conn.dialect.name)
    if last_n is not None:
        # the newest requests holding last_n rows, request id breaking ties so that the
        # same rows are read every time; empty requests hold none and may be passed over
        sizes = select(requests.c.received_at, requests.c.request_id, requests.c.n_rows).where(
            requests.c.model == model, requests.c.n_rows > 0
        )
        if start is not None:
            sizes = sizes.where(requests.c.received_at >= start)
        if end is not None:
            sizes = sizes.where(requests.c.received_at < end)
        newest = list(
            conn.execute(sizes.order_by(requests.c.received_at.desc(), tie.desc()).limit(last_n))
        )
        if not newest:
            return _assemble(model, [], n_features, with_features)
        oldest = int(np.searchsorted(np.cumsum([r.n_rows for r in newest]), last_n))
        # Bounded by the keys just read, not by a count: on PostgreSQL the next statement
        # sees requests committed since, and under a LIMIT newer ones pushed these out;
        # between the keys, the requests just sized (and any stamped among them since).
        stmt = stmt.where(_at_or_before(newest[0].received_at, newest[0].request_id, tie))
        if oldest < len(newest):  # else fewer than last_n rows: every request up to there
            key = newest[oldest]
            stmt = stmt.where(_at_or_after(key.received_at, key.request_id, tie))
    rows = list(conn.execute(stmt.order_by(requests.c.received_at, tie)).all())
    return _assemble(model, rows, n_features, with_features)


def byte_ordered(request_id: ColumnElement[str], dialect: str) -> ColumnElement[str]:
    """``request_id`` compared byte by byte, as SQLite compares text, for tie-breaks: in
    PostgreSQL's database collation (en-US: "alpha" before "Beta") a limited read took
    other requests than on SQLite."""
    return request_id.collate("C") if dialect == "postgresql" else request_id


def _at_or_before(at: datetime, request_id: str, tie: ColumnElement[str]) -> ColumnElement[bool]:
    """Requests at or before (``at``, ``request_id``) in (received_at, ``tie``) order:
    spelt with the time bound alone first, which the (model, received_at) index seeks."""
    column = requests.c.received_at
    return and_(column <= at, or_(column < at, tie <= request_id))


def _at_or_after(at: datetime, request_id: str, tie: ColumnElement[str]) -> ColumnElement[bool]:
    """Requests at or after (``at``, ``request_id``) in (received_at, ``tie``) order."""
    column = requests.c.received_at
    return and_(column >= at, or_(column > at, tie >= request_id))


def _assemble(model: str, rows: list[Any], n_features: int, with_features: bool) -> Window:
    ids: list[str] = []
    at: list[float] = []
    feats: list[np.ndarray] = []
    outs: list[np.ndarray] = []
    versions: list[int] = []
    ys: list[float] = []
    label_at: list[float] = []
    k = modal_width([r.out_cols for r in rows])
    for r in rows:
        n = r.n_rows
        if r.n_cols != n_features:
            continue  # written under another feature schema: not comparable
        if with_features:
            feats.append(np.frombuffer(r.inputs, dtype=np.float32).reshape(n, r.n_cols))
        ids.extend([r.request_id] * n)
        at.extend([r.received_at.timestamp()] * n)
        if r.out_values is not None and r.out_cols == k:
            outs.append(np.frombuffer(r.out_values, dtype=np.float32).reshape(n, k))
            versions.extend([r.version] * n)
        else:
            outs.append(np.full((n, k), np.nan, dtype=np.float32))
            versions.extend([-1] * n)
        ys.extend(label_rows(r.value, n) or [np.nan] * n)
        label_at.extend([r.label_at.timestamp() if r.label_at is not None else np.nan] * n)
    return Window(
        model=model,
        request_ids=tuple(ids),
        received_at=np.asarray(at, dtype=np.float64),
        features=(
            (np.concatenate(feats) if feats else np.empty((0, n_features), np.float32))
            if with_features
            else np.empty((len(ids), 0), np.float32)
        ),
        outputs=np.concatenate(outs) if outs else np.empty((0, k), np.float32),
        versions=np.asarray(versions, dtype=np.int64),
        labels=np.asarray(ys, dtype=np.float64),
        label_received_at=np.asarray(label_at, dtype=np.float64),
    )


def modal_width(widths: Sequence[int | None]) -> int:
    """The output width most rows have (1 when none has one): a version answers with one
    width, so a row of another width (an old mirrored record) is the odd one out, not the
    rows around it."""
    counts = Counter(w for w in widths if w is not None)
    return counts.most_common(1)[0][0] if counts else 1


def label_rows(value: Any, n: int) -> list[float] | None:
    """A stored label spread over its request's ``n`` rows: a list with one value per row,
    or a number for a one-row request; ``None`` when it is missing or does not fit."""
    if isinstance(value, list):
        return [float(v) for v in value] if len(value) == n else None
    if isinstance(value, int | float) and not isinstance(value, bool) and n == 1:
        return [float(value)]
    return None


def read_latencies(
    conn: Connection,
    model: str,
    *,
    since: datetime | None = None,
    versions: Sequence[int] | None = None,
    newest: int | None = None,
    aligned_to: int | None = None,
    roles: Mapping[int, str] | None = None,
) -> dict[int, np.ndarray]:
    """Recorded single-request latencies (seconds) per version since ``since``; of
    ``versions`` only when given, else of the model's registered versions. Read by one
    query per version that seeks it in the (model, version, created_at) index, so a
    version's read does not walk another's latencies. With ``newest`` (which needs
    ``versions``) only that many per version, the newest: the query walks the index
    from the newest end and stops there.

    With ``aligned_to`` (one of ``versions``; needs ``newest``) that version's newest
    ``newest`` are read, and the other versions' over the same period, weighted alike in
    time (see ``_read_aligned``), at most as many: a load that changed over time does not
    read as a difference between versions that answer at different rates.

    With ``roles`` a version it names is read in that role only (``"champion"``,
    ``"challenger"``): a version promoted after it shadowed answered in both, and its
    read as the champion mixed its shadow-time latencies in."""
    where = [outputs.c.model == model, outputs.c.latency_s.is_not(None)]
    if since is not None:
        where.append(outputs.c.created_at >= since)
    if aligned_to is not None:
        if newest is None:
            raise InvalidValueError("`aligned_to` needs `newest`: it aligns with the newest")
        if versions is None or aligned_to not in versions:
            raise InvalidValueError(
                f"`aligned_to` must be one of `versions` {list(versions or ())}, got {aligned_to}"
            )
    if newest is not None:
        if versions is None:
            raise InvalidValueError("`newest` needs `versions`: the bound is per version")
        if newest < 1:
            raise InvalidValueError(f"`newest` must be at least 1, got {newest}")
        if aligned_to is not None:
            return _read_aligned(conn, where, versions, aligned_to, newest, roles or {})
    if versions is None:  # a handful of rows: then each version seeks its own latencies
        versions = list(
            conn.execute(
                select(model_versions.c.version)
                .where(model_versions.c.model == model)
                .order_by(model_versions.c.version)
            ).scalars()
        )
    out: dict[int, np.ndarray] = {}
    for version in dict.fromkeys(versions):
        stmt = select(outputs.c.latency_s).where(*where, *_of(version, roles or {}))
        if newest is not None:
            stmt = stmt.order_by(outputs.c.created_at.desc()).limit(newest)
        values = [float(v) for v in conn.execute(stmt).scalars()]
        if values:
            out[int(version)] = np.asarray(
                values[::-1] if newest is not None else values, dtype=np.float64
            )
    return out


def _of(version: int, roles: Mapping[int, str]) -> list[ColumnElement[bool]]:
    """A version's outputs, in its role when ``roles`` names one."""
    role = roles.get(version)
    return [outputs.c.version == version, *([outputs.c.role == role] if role else [])]


# An aligned read cuts the aligned version's period into this many slices.
ALIGNED_SLICES = 50


def _read_aligned(
    conn: Connection,
    where: list[ColumnElement[bool]],
    versions: Sequence[int],
    aligned_to: int,
    newest: int,
    roles: Mapping[int, str],
) -> dict[int, np.ndarray]:
    """``aligned_to``'s newest ``newest`` latencies, and each other version's over the
    same period, weighted alike in time. The period begins after ``aligned_to``'s
    latency before those (at ``since`` when there is none) and is cut into
    ``ALIGNED_SLICES`` slices of equally many of ``aligned_to``'s latencies, each ending
    at one; in each slice as many of another version's are read as ``aligned_to`` has
    there, its newest (so within a slice they cover its end), or all it has where it has
    fewer. One query per version, each of its branches walking an index back from a
    slice's end: at most ``newest`` rows in all. Not in time order. A version ``roles``
    names is read in that role only, the aligned one too."""
    rows = list(
        conn.execute(
            select(outputs.c.created_at, outputs.c.latency_s)
            .where(*where, *_of(aligned_to, roles))
            .order_by(outputs.c.created_at.desc())
            .limit(newest + 1)
        )
    )[::-1]
    before = rows.pop(0)[0] if len(rows) > newest else None
    if not rows:
        return {}
    moments = [at for at, _ in rows]
    out = {int(aligned_to): np.asarray([float(v) for _, v in rows], dtype=np.float64)}
    slices = np.array_split(np.arange(len(moments)), min(ALIGNED_SLICES, len(moments)))
    for version in dict.fromkeys(versions):
        if version == aligned_to:
            continue
        reads = []
        for part in slices:
            first, last = int(part[0]), int(part[-1])
            stmt = (
                select(outputs.c.latency_s)
                .where(*where, *_of(version, roles))
                .where(outputs.c.created_at <= moments[last])
                .order_by(outputs.c.created_at.desc())
                .limit(len(part))
            )
            start = moments[first - 1] if first > 0 else before
            if start is not None:
                stmt = stmt.where(outputs.c.created_at > start)
            reads.append(select(stmt.subquery().c.latency_s))
        values = [float(v) for v in conn.execute(union_all(*reads)).scalars()]
        if values:
            out[int(version)] = np.asarray(values, dtype=np.float64)
    return out
