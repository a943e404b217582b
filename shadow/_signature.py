"""The served contract of a model: :class:`Signature`, its :class:`TensorSpec` s, and the
rules that make one of a graph's inputs and outputs or refuse it.

Scope (see :mod:`shadow._onnx`): exactly one numeric 2-D input ``[batch, n_features]``
with a fixed ``n_features``, and tensor outputs of which at least one is floating-point.
Anything else is refused with :class:`~shadow.CandidateRejectedError` code
``unsupported_signature``, with a remedy where there is a usual one (string class labels,
a ZipMap's sequence of maps). A ZipMap's columns (one rank-1 float output per class) are
a registration's to refuse, for a classifier (:mod:`tunewatch._registry`): this module
knows no task, and reads the signature at every load. The graph is read as onnxruntime
describes it, handed over by :func:`shadow.signature_from_session`: this module imports
neither onnx nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from shadow._errors import CandidateRejectedError

_ORT_DTYPES: Final[Mapping[str, np.dtype[Any]]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, element type and shape of one graph input or output (``None`` = dynamic)."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, slots=True)
class ProbedOutput:
    """What the candidate probe (:mod:`shadow._probe`) saw of the primary output on the
    rows it scored: its columns (a 1-D output is one), which a graph may leave dynamic,
    and the smallest and largest of its values other than NaN (``None`` when all were
    NaN), by which a registration tells a classifier's logits from its probabilities."""

    width: int
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Signature:
    """The served contract of a model: its one 2-D input and its tensor outputs.

    ``primary_output`` names the output that is logged and compared between champion
    and challengers (probabilities for classifiers, the prediction for regressors).
    ``probed`` is set on a candidate's signature only (:func:`shadow.inspect_candidate`):
    it is not part of the contract, and two signatures compare equal whatever it holds.
    """

    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    primary_output: str
    probed: ProbedOutput | None = field(default=None, compare=False)

    @property
    def n_features(self) -> int:
        n = self.input.shape[1]
        assert n is not None  # guaranteed by signature_from_node_args
        return n

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def primary_width(self) -> int | None:
        """Columns of the primary output as logged (a 1-D output is one column), or
        ``None`` when the graph leaves it dynamic."""
        spec = next(o for o in self.outputs if o.name == self.primary_output)
        if spec.rank == 1:
            return 1
        return spec.shape[1] if spec.rank == 2 else None

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; :meth:`from_dict` reads it back."""

        def spec(t: TensorSpec) -> dict[str, Any]:
            return {"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)}

        data: dict[str, Any] = {
            "input": spec(self.input),
            "outputs": [spec(o) for o in self.outputs],
            "primary_output": self.primary_output,
        }
        if self.probed is not None:
            probed = self.probed
            data["probed"] = {"width": probed.width, "low": probed.low, "high": probed.high}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        def spec(d: Mapping[str, Any]) -> TensorSpec:
            return TensorSpec(
                name=str(d["name"]),
                dtype=np.dtype(str(d["dtype"])),
                shape=tuple(None if s is None else int(s) for s in d["shape"]),
            )

        def bound(value: Any) -> float | None:
            return None if value is None else float(value)

        probed = data.get("probed")
        return cls(
            input=spec(data["input"]),
            outputs=tuple(spec(o) for o in data["outputs"]),
            primary_output=str(data["primary_output"]),
            probed=None
            if probed is None
            else ProbedOutput(
                width=int(probed["width"]), low=bound(probed["low"]), high=bound(probed["high"])
            ),
        )


def _unsupported(message: str) -> CandidateRejectedError:
    return CandidateRejectedError(message, code="unsupported_signature")


def _shape(raw: Any) -> tuple[int | None, ...]:
    if raw is None:
        return ()
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in raw)


def _spec(arg: Any, what: str) -> TensorSpec:
    kind = str(arg.type)
    dtype = _ORT_DTYPES.get(kind)
    if dtype is not None:
        return TensorSpec(name=str(arg.name), dtype=dtype, shape=_shape(arg.shape))
    served = f"tunewatch serves only tensors of {', '.join(t[7:-1] for t in _ORT_DTYPES)}"
    if kind == "tensor(string)":
        remedy = (
            ": encode classes as integers (0 to n_classes - 1, e.g. with scikit-learn's "
            "LabelEncoder) before training, and convert the model again"
            if what == "output"
            else ""
        )
        raise _unsupported(f"{what} {arg.name!r} has type {kind}; {served}{remedy}")
    if kind.startswith(("seq(", "map(")):  # a ZipMap's sequence of maps, most often
        raise _unsupported(
            f"{what} {arg.name!r} has type {kind}; {served} (convert classifiers with "
            "options={id(clf): {'zipmap': False}})"
        )
    raise _unsupported(f"{what} {arg.name!r} has type {kind}; {served}")


def signature_from_node_args(inputs: Sequence[Any], outputs: Sequence[Any]) -> Signature:
    """The :class:`Signature` of a graph from onnxruntime's descriptions of its inputs
    and outputs (``NodeArg``: ``name``, ``type``, ``shape``), refusing graphs tunewatch
    cannot serve (:func:`shadow.signature_from_session` reads them off a session).

    Raises :class:`~shadow.CandidateRejectedError` (``unsupported_signature``) unless
    the graph has exactly one numeric input of rank 2 with a fixed feature dimension
    and at least one floating-point tensor output. Several floating-point outputs of
    rank 1 load (a regressor's prediction and its standard deviation): a classifier's
    columns (``zipmap: 'columns'``) are refused when it registers as one, not here, at
    every load, where a champion registered before stopped serving.
    """
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise _unsupported(f"model must have exactly one input, got {len(inputs)}: {names}")
    spec_in = _spec(inputs[0], "input")
    if spec_in.rank != 2 or spec_in.shape[1] is None:
        raise _unsupported(
            f"input {spec_in.name!r} must have shape [batch, n_features] with a fixed "
            f"n_features, got {list(spec_in.shape)}"
        )
    if spec_in.dtype.kind not in "fiu":
        raise _unsupported(f"input {spec_in.name!r} must be numeric, got {spec_in.dtype}")
    specs = tuple(_spec(o, "output") for o in outputs)
    floats = [o for o in specs if o.dtype.kind == "f"]
    if not floats:
        raise _unsupported(
            f"model has no floating-point output, got {[(o.name, str(o.dtype)) for o in specs]}"
        )
    primary = primary_output(specs)
    assert primary is not None  # a floating-point output exists
    return Signature(input=spec_in, outputs=specs, primary_output=primary)


def primary_output(outputs: Sequence[TensorSpec]) -> str | None:
    """The name of the output monitors and challengers read: the first floating-point
    output of rank 2 named like a probability, else the first floating-point output;
    ``None`` when there is none. An export shaping itself like a served version picks it
    by the same rule (:func:`retune.to_onnx`)."""
    floats = [o for o in outputs if o.dtype.kind == "f"]
    probs = [o for o in floats if o.rank == 2 and "prob" in o.name.lower()]
    found = probs or floats
    return found[0].name if found else None
