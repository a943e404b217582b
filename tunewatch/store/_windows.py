"""Reading the scoring log back as arrays: the windows evaluation and tuning work on."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, compress, repeat
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Row, and_, func, or_, select, union_all

from .._errors import InvalidValueError
from ._sample import in_sample
from ._schema import labels, model_versions, outputs, requests
from ._types import FLOAT32_BYTES

#: Rows of a window's statement fetched and assembled at a time: a read holds its arrays
#: and one chunk of rows, not every row as Python objects (a decay read of 1M requests,
#: each row a few Python objects and small arrays, peaked at 1 GiB).
CHUNK_ROWS = 2000

#: On PostgreSQL a window spanning at least this share of its model's history (in time)
#: is planned for every row: hash joins that read the model's outputs and labels whole,
#: however short the window. A shorter one is planned as a cursor is by default, for its
#: first rows: an index lookup per request. Over 1M requests in 45 days (two outputs each,
#: 30 % labelled) the lookups read a day in 0.18 s, the hash joins in 0.55 s; they broke
#: even at a week (15 %) and took 2x as long over the 45 days. The hash joins of a model
#: holding few of the outputs broke even below a tenth of its 3 days.
EVERY_ROW_SHARE = 0.1


@dataclass(frozen=True, slots=True, eq=False)
class Window:
    """Rows of a model's log, one per scored row (a batch request gives several).

    ``outputs`` holds what answered in production (the champion's or the mirrored
    stack's primary output), NaN where none was recorded; ``labels`` and
    ``label_received_at`` (epoch seconds) are NaN where no label has arrived yet.
    ``request_ids`` is empty when the window was read without them (``with_ids``), as
    ``features`` has no columns when read without them. ``sample``: the window holds the
    requests of 1 in that many of its span (:mod:`._sample`), all of them at 1.
    """

    model: str
    request_ids: tuple[str, ...]
    received_at: np.ndarray  # float64 epoch seconds, per row
    features: np.ndarray  # float32 [rows, n_features]
    outputs: np.ndarray  # float32 [rows, k]
    versions: np.ndarray  # int64 per row, -1 where no output
    labels: np.ndarray  # float64 per row
    label_received_at: np.ndarray  # float64 epoch seconds per row
    sample: int = 1

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
    with_ids: bool = True,
    sample: int = 1,
) -> Window:
    """Requests of ``model`` received in ``[start, end)`` (or the newest holding
    ``last_n`` rows: whole requests, so up to one request's rows more); of those, with
    ``sample`` (a power of two), 1 in ``sample`` (:func:`._sample.in_sample`).

    Without ``with_features`` the input blobs are not read and ``features`` has no
    columns; without ``with_ids`` the request ids are not read and ``request_ids`` is
    empty: for figures over outputs and labels alone, such as decay.

    The rows are fetched ``CHUNK_ROWS`` at a time (on PostgreSQL through a server-side
    cursor, planned for every row when the window spans ``EVERY_ROW_SHARE`` of the model's
    history) and each chunk is turned into arrays before the next is fetched.
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
            requests.c.received_at,
            requests.c.n_rows,
            requests.c.n_cols,
            outputs.c.version,
            outputs.c.n_cols.label("out_cols"),
            outputs.c["values"].label("out_values"),
            labels.c.value,
            labels.c.received_at.label("label_at"),
            *([requests.c.inputs] if with_features else []),
            *([requests.c.request_id] if with_ids else []),
        )
        .select_from(requests.outerjoin(outputs, answered).outerjoin(labels, labelled))
        .where(requests.c.model == model)
    )
    sampled = in_sample(requests.c.request_id, sample, conn.dialect.name) if sample > 1 else None
    if sampled is not None:
        stmt = stmt.where(sampled)
    if start is not None:
        stmt = stmt.where(requests.c.received_at >= start)
    if end is not None:
        stmt = stmt.where(requests.c.received_at < end)
    tie = byte_ordered(requests.c.request_id, conn.dialect.name)
    rows = _Rows(n_features, with_features=with_features, with_ids=with_ids, sample=sample)
    spanned = (start, end)  # the window's times (None: open); of last_n, its keys'
    if last_n is not None:
        # the newest requests holding last_n rows, request id breaking ties so that the
        # same rows are read every time; empty requests hold none and may be passed over
        sizes = select(requests.c.received_at, requests.c.request_id, requests.c.n_rows).where(
            requests.c.model == model, requests.c.n_rows > 0
        )
        if sampled is not None:
            sizes = sizes.where(sampled)
        if start is not None:
            sizes = sizes.where(requests.c.received_at >= start)
        if end is not None:
            sizes = sizes.where(requests.c.received_at < end)
        newest = list(
            conn.execute(sizes.order_by(requests.c.received_at.desc(), tie.desc()).limit(last_n))
        )
        if not newest:
            return rows.window(model)
        oldest = int(np.searchsorted(np.cumsum([r.n_rows for r in newest]), last_n))
        # Bounded by the keys just read, not by a count: on PostgreSQL the next statement
        # sees requests committed since, and under a LIMIT newer ones pushed these out;
        # between the keys, the requests just sized (and any stamped among them since).
        stmt = stmt.where(_at_or_before(newest[0].received_at, newest[0].request_id, tie))
        spanned = (start, newest[0].received_at)
        if oldest < len(newest):  # else fewer than last_n rows: every request up to there
            key = newest[oldest]
            stmt = stmt.where(_at_or_after(key.received_at, key.request_id, tie))
            spanned = (key.received_at, newest[0].received_at)
    if conn.dialect.name == "postgresql" and _much_of_history(conn, model, *spanned):
        # A server-side cursor is planned for its first tenth of rows by default: nested
        # loops over the indexes, 2.5x slower over 200k requests (the whole history) than
        # the hash joins of a plain query. This read takes every row: planned for all (to
        # the transaction's end). Not for a short window: the hash joins scan the model's
        # outputs and labels whatever the window's length (a day of 45: 3x slower).
        conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
    with conn.execute(
        stmt.order_by(requests.c.received_at, tie), execution_options={"yield_per": CHUNK_ROWS}
    ) as result:
        for chunk in result.partitions():
            rows.add(chunk)
    return rows.window(model)


def _much_of_history(
    conn: Connection, model: str, start: datetime | None, end: datetime | None
) -> bool:
    """Whether ``[start, end]`` (an open end: to the first, or the last request) spans
    ``EVERY_ROW_SHARE`` of the time between ``model``'s first and last request: of its
    requests, traffic taken as even. Two seeks in the (model, received_at) index, but
    for a window open at both ends: the whole history."""
    if start is None and end is None:
        return True
    bounds = select(func.min(requests.c.received_at), func.max(requests.c.received_at))
    first: datetime | None
    last: datetime | None
    first, last = conn.execute(bounds.where(requests.c.model == model)).one()
    if first is None or last is None or last <= first:
        return True  # one instant (or none): every request
    lo = first if start is None else max(start, first)
    hi = last if end is None else min(end, last)
    return (hi - lo) / (last - first) >= EVERY_ROW_SHARE


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


# The columns of a window's statement, in order: those of the requests, their outputs and
# labels, then the inputs (``with_features``) and the request id (``with_ids``).
_N_ROWS, _N_COLS, _OUT_COLS, _INPUTS = 1, 2, 4, 8


class _Rows:
    """A window's rows gathered chunk by chunk, in the order read.

    A row's output and version depend on the output width most requests of the whole
    read have (:func:`modal_width`), known only once the last chunk is in: until then
    the outputs are kept by width (one buffer per chunk and width) with each row's
    width, and placed by :meth:`window`. The rest of a chunk becomes arrays at once.
    """

    def __init__(
        self, n_features: int, *, with_features: bool, with_ids: bool, sample: int = 1
    ) -> None:
        self._n_features = n_features
        self._sample = sample
        self._with_features = with_features
        self._with_ids = with_ids
        self._widths: Counter[int] = Counter()  # output width per request read (its row)
        self._at: list[np.ndarray] = []
        self._label_at: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._versions: list[np.ndarray] = []  # as recorded: -1 where no output
        self._out_cols: list[np.ndarray] = []  # per row: its output's width, -1 where none
        self._values: dict[int, list[bytes]] = {}  # per width: a chunk's outputs of it
        self._misfits: set[int] = set()  # widths of an output not n_rows x width values
        self._features: list[np.ndarray] = []
        self._ids: list[str] = []

    def add(self, chunk: Sequence[Row[Any]]) -> None:
        """The rows of one chunk of the statement's result, in order: taken column by
        column, each request's values spread over its rows."""
        if not chunk:
            return
        columns = list(zip(*chunk, strict=True))
        self._widths.update([w for w in columns[_OUT_COLS] if w is not None])
        kept = [c == self._n_features for c in columns[_N_COLS]]
        if not all(kept):  # written under another feature schema: not comparable
            columns = [tuple(compress(column, kept)) for column in columns]
            if not columns[_N_ROWS]:
                return
        at, n_rows, _, versions, widths, values, ys, label_at = columns[:8]
        counts = np.asarray(n_rows, dtype=np.int64)
        total, nan = int(counts.sum()), math.nan

        def spread(per_request: list[Any], dtype: type[Any]) -> np.ndarray:
            return np.repeat(np.asarray(per_request, dtype=dtype), counts)

        self._at.append(spread([d.timestamp() for d in at], np.float64))
        self._label_at.append(
            spread([nan if d is None else d.timestamp() for d in label_at], np.float64)
        )
        self._labels.append(
            np.fromiter(
                chain.from_iterable(
                    label_rows(y, n) or repeat(nan, n) for y, n in zip(ys, n_rows, strict=True)
                ),
                dtype=np.float64,
                count=total,
            )
        )
        self._versions.append(spread([-1 if v is None else v for v in versions], np.int64))
        out_cols = np.asarray([-1 if w is None else w for w in widths], dtype=np.int64)
        self._out_cols.append(np.repeat(out_cols, counts))
        for width in np.unique(out_cols[out_cols >= 0]).tolist():
            of_width = out_cols == width
            blobs = list(compress(values, of_width.tolist()))
            sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
            if (sizes != counts[of_width] * width * FLOAT32_BYTES).any():
                self._misfits.add(width)
            self._values.setdefault(width, []).append(b"".join(blobs))
        if self._with_features:
            joined = np.frombuffer(b"".join(columns[_INPUTS]), dtype=np.float32)
            self._features.append(joined.reshape(total, self._n_features))
        if self._with_ids:
            self._ids.extend(chain.from_iterable(map(repeat, columns[-1], n_rows)))

    def window(self, model: str) -> Window:
        """The rows read as a window, outputs at the modal width. Each part gathered is
        let go once joined: at most one array is held twice."""
        k = _modal(self._widths)
        if k in self._misfits:
            raise ValueError(
                f"an output of `{model}` of width {k} does not hold n_rows x {k} float32 "
                "values of its request"
            )
        fits = _joined(self._out_cols, np.int64) == k
        of_k = [np.frombuffer(b, dtype=np.float32).reshape(-1, k) for b in self._values.pop(k, [])]
        self._values.clear()  # those of another width are not read
        placed = _joined(of_k, np.float32, width=k)
        outputs = np.full((fits.shape[0], k), np.nan, dtype=np.float32)
        outputs[fits] = placed
        del placed
        if self._with_features:
            features = _joined(self._features, np.float32, width=self._n_features)
        else:
            features = np.empty((fits.shape[0], 0), np.float32)
        return Window(
            model=model,
            request_ids=tuple(self._ids),
            received_at=_joined(self._at, np.float64),
            features=features,
            outputs=outputs,
            versions=np.where(fits, _joined(self._versions, np.int64), -1),
            labels=_joined(self._labels, np.float64),
            label_received_at=_joined(self._label_at, np.float64),
            sample=self._sample,
        )


def _joined(parts: list[np.ndarray], dtype: type[Any], *, width: int | None = None) -> np.ndarray:
    """``parts`` end to end, emptying ``parts`` (an empty array of ``dtype``, with ``width``
    columns if given, when there are none)."""
    if not parts:
        return np.empty((0,) if width is None else (0, width), dtype)
    joined = np.concatenate(parts)
    parts.clear()
    return joined


def modal_width(widths: Sequence[int | None]) -> int:
    """The output width most rows have (1 when none has one): a version answers with one
    width, so a row of another width (an old mirrored record) is the odd one out, not the
    rows around it."""
    return _modal(Counter(w for w in widths if w is not None))


def _modal(counts: Counter[int]) -> int:
    """The width counted most often, the first counted among equals (1 when none is)."""
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
    if versions is None:  # every version the model kept, one statement each: a caller
        # that knows which can have answered since (the line-up) names them instead
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
