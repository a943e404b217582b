"""A version's reference snapshot: its training window (features, labels, held-out
scores; a tuned version's, its whole traffic window) as a versioned ``.npz``, checked
before anything in it is unpacked."""

from __future__ import annotations

import io
import logging
import lzma
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from shadow import OnnxModel, cast_rows, representable_rows, run_rows
from tunewatch._errors import RegistrationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Reference:
    """A version's reference window: its training features and, when known, labels and
    held-out scores (each row scored by a model that did not train on it; a tuning job
    writes its winner's out-of-fold predictions, NaN for rows no fold held out, and its
    winner's own for the rows of its window it did not train on). Without
    scores a monitor scores the rows with the version itself, which is fair only for rows
    it did not train on."""

    features: np.ndarray
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None

    #: The format this tunewatch writes. A label of NaN is unknown in every format. What
    #: changed is a tuning job's snapshot (its version's details tell ``rows``, and the
    #: last ``traffic_rows`` of them its traffic part), and with it what its traffic part
    #: holds. Format 1: the rows the job trained on, its window's labelled requests only.
    #: Format 2: every request of its window in the order received, NaN the label of each
    #: it did not train on (no label by then, or one no job can train on), so a version's
    #: drift compares with the traffic it was tuned on, not with its labelled part (with
    #: labels for some requests only, unchanged traffic drifted). In both, a row of a
    #: job's snapshot with a known label is one the job trained on.
    FORMAT_VERSION: ClassVar[int] = 2
    #: The format the snapshot was read in (``FORMAT_VERSION`` for one made here), which
    #: :meth:`to_bytes` writes again: a snapshot read in format 1 keeps its meaning.
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not 1 <= self.format_version <= self.FORMAT_VERSION:
            raise ValueError(
                f"`format_version` must be in [1, {self.FORMAT_VERSION}], got "
                f"{self.format_version!r}"
            )

    def check(self, n_features: int) -> None:
        x = self.features
        if x.ndim != 2 or x.shape[1] != n_features or x.shape[0] == 0:
            raise RegistrationError(
                f"reference features must be a non-empty [rows, {n_features}] matrix, got "
                f"shape {list(x.shape)}",
                code="invalid_reference",
            )
        # features are stored as float32. Its largest as a float32 scalar, not a Python
        # float: a float16 array would cast that down to float16's inf (inf > inf is
        # false) where a float32 one lifts the array to float32.
        largest = np.finfo(np.float32).max
        if (x > largest).any() or (x < -largest).any():
            raise RegistrationError(
                "reference features must be finite numbers or NaN (missing) within float32's "
                f"range (±{float(largest):.4g}), as a request's must: the snapshot stores them "
                "as float32",
                code="invalid_reference",
            )
        if self.labels is not None and self.labels.shape != (x.shape[0],):
            raise RegistrationError(
                f"reference labels must have one value per row ({x.shape[0]}), got shape "
                f"{list(self.labels.shape)}",
                code="invalid_reference",
            )
        if self.scores is not None and (
            self.scores.ndim != 2 or self.scores.shape[0] != x.shape[0] or not self.scores.size
        ):
            raise RegistrationError(
                f"reference scores must be a [rows ({x.shape[0]}), outputs] matrix, got shape "
                f"{list(self.scores.shape)}",
                code="invalid_reference",
            )
        if self.scores is not None and (
            (self.scores > largest).any() or (self.scores < -largest).any()
        ):
            raise RegistrationError(
                "reference scores must be finite numbers or NaN (a row no fold held out) "
                f"within float32's range (±{float(largest):.4g}): the snapshot stores them as "
                "float32",
                code="invalid_reference",
            )

    def check_labels(self, task: str, *, classes: int | None) -> None:
        """Refuse labels the model's ``task`` cannot have, by the rules the labels API
        enforces: 0 or 1 (binary), a class index below ``classes`` (multiclass; any when
        ``None``), a number float32 can hold (regression). NaN is an unknown label:
        allowed."""
        if self.labels is None:
            return
        y = np.asarray(self.labels, dtype=np.float64)
        known = y[~np.isnan(y)]
        if not np.isfinite(known).all():
            raise RegistrationError(
                "reference labels must be finite numbers or NaN (unknown), got "
                f"{int(np.isinf(known).sum())} infinite",
                code="invalid_reference",
            )
        if task == "binary":
            bad, rule = known[(known != 0) & (known != 1)], "0 or 1"
        elif task == "multiclass":
            top = classes if classes is not None else 2**31
            wrong = (known < 0) | (known != np.floor(known)) | (known >= top)
            bad, rule = known[wrong], f"a class index (0 to {top - 1})"
        else:  # as the labels API: float32's range, else every retune's error is infinite
            most = float(np.finfo(np.float32).max)
            bad, rule = known[np.abs(known) > most], f"a number float32 can hold (|y| ≤ {most:g})"
        if bad.size:
            shown = ", ".join(f"{v:g}" for v in np.unique(bad)[:5])
            raise RegistrationError(
                f"reference labels of a {task} model must be {rule} or NaN (unknown), got "
                f"[{shown}] in {bad.size} rows",
                code="invalid_reference",
            )

    def check_probabilities(self, task: str, *, tolerance: float, row_sum_tolerance: float) -> None:
        """A classifier's (``task``) scores are its held-out probabilities, each in
        [0, 1] give or take ``tolerance`` (NaN: a row no fold held out), as the mirror
        route requires of a classifier's outputs: logits registered in their place were
        the prediction-drift baseline and the label-free estimate's calibration, so
        unchanged traffic drifted at p = 4e-72, the estimate dropped 0.14 and a retune
        was queued. Rows of several columns sum to 1, give or take
        ``row_sum_tolerance`` (a row holding a NaN is not summed), as a served model's
        must."""
        if self.scores is None:
            return
        known = self.scores[~np.isnan(self.scores)]
        outside = known[(known < -tolerance) | (known > 1 + tolerance)]
        if outside.size:
            raise RegistrationError(
                f"reference scores of a {task} model must be probabilities in [0, 1] or NaN "
                f"(a row no fold held out), got {outside.size} values outside, e.g. "
                f"{float(outside[0]):.6g}",
                code="invalid_reference",
            )
        if self.scores.shape[1] < 2:
            return  # P(class 1): no sum to check
        sums = self.scores.astype(np.float64).sum(axis=1)
        wrong = np.flatnonzero(np.abs(sums - 1.0) > row_sum_tolerance)  # NaN compares False
        if wrong.size:
            first = int(wrong[0])
            raise RegistrationError(
                f"reference scores of a {task} model must be rows summing to 1 (within "
                f"{row_sum_tolerance:g}) or NaN (a row no fold held out), got {wrong.size} "
                f"rows that do not, e.g. row {first} sums to {float(sums[first]):.6g}",
                code="invalid_reference",
            )

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {
            "format_version": np.array(self.format_version),
            "features": np.asarray(self.features, dtype=np.float32),
        }
        if self.labels is not None:
            arrays["labels"] = np.asarray(self.labels, dtype=np.float64)
        if self.scores is not None:
            arrays["scores"] = np.asarray(self.scores, dtype=np.float32)
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    #: The most a snapshot may unpack to; its arrays' headers are checked before any is read.
    MAX_BYTES: ClassVar[int] = 1024**3

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int | None = None) -> Reference:
        """The snapshot ``data`` (an ``.npz``), refused (``RegistrationError``) unreadable,
        of a newer format, or with arrays that would unpack, as stored, to more than
        ``max_bytes`` (where it comes in: ``server.max_artefact_bytes``) or
        ``MAX_BYTES``, by the shapes their headers declare, before any is unpacked."""
        limit = cls.MAX_BYTES if max_bytes is None else min(max_bytes, cls.MAX_BYTES)
        try:
            _check_npz_size(data, limit)
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                version = (
                    _format_version(npz["format_version"]) if "format_version" in npz.files else 1
                )
                if version > cls.FORMAT_VERSION:
                    raise RegistrationError(
                        f"reference snapshot format {version} is newer than this tunewatch "
                        f"reads ({cls.FORMAT_VERSION}); upgrade tunewatch",
                        code="invalid_reference",
                    )
                labels = npz["labels"] if "labels" in npz.files else None
                scores = npz["scores"] if "scores" in npz.files else None
                return cls(
                    features=npz["features"], labels=labels, scores=scores, format_version=version
                )
        except RegistrationError:
            raise
        except _UNREADABLE as exc:
            raise _unreadable(exc) from exc

    @classmethod
    def unpacked_bytes(cls, data: bytes, *, stop_past: int) -> int:
        """What the snapshot ``data``'s arrays take once unpacked and stored (features as
        float32, labels as float64, scores as float32), by the shapes their headers
        declare: none is unpacked. Counting stops at the first array that takes the total
        past ``stop_past`` (a bundle's limit), and the total so far is returned.
        ``RegistrationError`` where :meth:`from_bytes` finds the headers unreadable or an
        array not numeric."""
        try:
            total = 0
            for _, _, _, stored in _npz_arrays(data):
                total += stored
                if total > stop_past:
                    break
            return total
        except RegistrationError:
            raise
        except _UNREADABLE as exc:
            raise _unreadable(exc) from exc


_UNREADABLE = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    RuntimeError,  # an encrypted member, an unsupported compression method
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,  # bz2's corrupt streams are OSError
)


def _unreadable(exc: BaseException) -> RegistrationError:
    return RegistrationError(f"reference snapshot is unreadable: {exc}", code="invalid_reference")


def _format_version(value: np.ndarray) -> int:
    """A snapshot's ``format_version``: a 0-d integer array holding a number >= 1."""
    if value.ndim != 0 or value.dtype.kind not in "iu" or int(value) < 1:
        raise RegistrationError(
            "reference `format_version` must be a positive integer scalar, got "
            f"shape {list(value.shape)} of {value.dtype}"
            + (f" holding {value.item()!r}" if value.ndim == 0 else ""),
            code="invalid_reference",
        )
    return int(value)


def _check_npz_size(data: bytes, limit: int) -> None:
    """Refuse an ``.npz`` whose arrays would unpack to more than ``limit`` bytes, from the
    shapes their headers declare (a few hundred compressed bytes can declare terabytes)."""
    total = 0
    for name, shape, dtype, stored in _npz_arrays(data):
        total += stored
        if total > limit:
            raise RegistrationError(
                f"reference snapshot would unpack to more than {limit} bytes "
                f"(array {name!r} declares shape {list(shape)} of {dtype})",
                code="invalid_reference",
            )


def _npz_arrays(data: bytes) -> Iterator[tuple[str, tuple[int, ...], np.dtype[Any], int]]:
    """Each array of the ``.npz`` ``data`` as its header declares it: its member's name,
    shape and dtype, and the bytes it takes as stored; read one at a time, only the
    headers. ``RegistrationError`` for a negative dimension or an array not numeric."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if any(dim < 0 for dim in shape):  # numpy's header parser takes them
                raise RegistrationError(
                    f"reference array {name!r} declares a negative dimension: shape {list(shape)}",
                    code="invalid_reference",
                )
            if dtype.kind not in "biuf":
                raise RegistrationError(
                    f"reference array {name!r} must be numeric, got {dtype}",
                    code="invalid_reference",
                )
            # as stored: features as float32, labels as float64, whatever was declared;
            # numpy serves npz["labels"] from a member named `labels.npy` or plain `labels`
            stored = {"features": 4, "labels": 8, "scores": 4}.get(name.removesuffix(".npy"), 0)
            yield name, shape, dtype, math.prod(shape) * max(dtype.itemsize, stored)


def reference_scores(
    session: OnnxModel, features: np.ndarray, *, model: str, version: int | str
) -> np.ndarray:
    """A version's primary output on its reference ``features``, cast to the input
    type its session declares, as its route casts a request and a shadow's rows are
    (:func:`shadow.cast_rows`): scored as float32, they were refused by a float64 or
    integer input, and every evaluation of such a champion raised.

    A row that type cannot hold (a missing or fractional value for an integer input, one
    past a float16's range) is one the champion's route refuses: it gets no score (NaN),
    as a time series' first rows have none, and the others are scored. ``version``
    names it in the log (a job's candidate, not registered yet, by a text).

    The rows are scored in runs of the batch the graph fixes, if it fixes one
    (:func:`shadow.run_rows`): scored in one run, a champion exported with a batch of 1
    was refused (``shape_mismatch``) and never evaluated."""
    spec = session.signature.input
    held = representable_rows(features, spec.dtype)
    if held.all():
        return session.primary(run_rows(session, cast_rows(features, spec.dtype, spec.name)))
    logger.warning(
        "model=%s version=%s: %d of %d reference rows hold values its %s input %r cannot; "
        "they have no score",
        model,
        version,
        int((~held).sum()),
        len(held),
        spec.dtype,
        spec.name,
    )
    if not held.any():
        width = session.signature.primary_width or 1
        return np.full((len(held), width), np.nan, dtype=np.float32)
    x = cast_rows(np.ascontiguousarray(features[held]), spec.dtype, spec.name)
    scored = session.primary(run_rows(session, x))
    scores = np.full((len(held), scored.shape[1]), np.nan, dtype=np.float32)
    scores[held] = scored
    return scores
