"""The ONNX boundary: the only module of :mod:`shadow` importing onnx and onnxruntime.

Scope: tunewatch serves **tabular models with exactly one 2-D input**
``[batch, n_features]`` (float32 usually), e.g. scikit-learn pipelines converted by
skl2onnx. Classifiers converted with ``zipmap=False`` give ``label`` ``[N]`` int64 and
``probabilities`` ``[N, C]`` float32; regressors give ``variable`` ``[N, 1]``. Any other
graph (several inputs, a dynamic feature dimension, non-tensor outputs such as a
ZipMap's sequence of maps) is refused with
:class:`~shadow.CandidateRejectedError` code ``unsupported_signature``.

Errors raised by onnx/onnxruntime are translated here, at one boundary:
session creation failures become :class:`~shadow.ModelLoadError`, bad inputs at run
time :class:`~shadow.InvalidInputError`, anything else at run time
:class:`~shadow.ShadowError` (``run_failed``, ``run_timeout``): so too a node failing
inside the graph, which onnxruntime reports as an invalid argument ("Non-zero status code
returned while running Gather node"), since the input had passed its checks.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import onnx

# onnxruntime's 1DS telemetry is on by default: a session writes a device id and events
# (OS, CPU, container, interpreter path) under ~/.cache/Microsoft for upload. Only this
# variable, set before onnxruntime initializes, stops it (its Privacy.md);
# disable_telemetry_events() comes too late. An operator's own value is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from shadow import _deadline
from shadow._errors import (
    CandidateRejectedError,
    InvalidInputCode,
    InvalidInputError,
    ModelLoadError,
    ShadowError,
)

logger = logging.getLogger(__name__)

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
# How onnxruntime begins a node's failure (a Gather index past its table, ...), which it
# reports as INVALID_ARGUMENT like an input of the wrong dtype or rank: the input passed
# its checks and the run started, so the failure is the model's, not the caller's.
_NODE_FAILED: Final[str] = "Non-zero status code returned while running"
_PAGE_SIZE: Final[int] = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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
        assert n is not None  # guaranteed by signature_from_session
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


def signature_from_session(session: ort.InferenceSession) -> Signature:
    """Read the :class:`Signature` of a session, refusing graphs tunewatch cannot serve.

    Raises :class:`~shadow.CandidateRejectedError` (``unsupported_signature``) unless
    the graph has exactly one numeric input of rank 2 with a fixed feature dimension
    and at least one floating-point tensor output.
    """
    inputs = session.get_inputs()
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
    outputs = tuple(_spec(o, "output") for o in session.get_outputs())
    floats = [o for o in outputs if o.dtype.kind == "f"]
    if not floats:
        raise _unsupported(
            f"model has no floating-point output, got {[(o.name, str(o.dtype)) for o in outputs]}"
        )
    primary = primary_output(outputs)
    assert primary is not None  # a floating-point output exists
    return Signature(input=spec_in, outputs=outputs, primary_output=primary)


def primary_output(outputs: Sequence[TensorSpec]) -> str | None:
    """The name of the output monitors and challengers read: the first floating-point
    output of rank 2 named like a probability, else the first floating-point output;
    ``None`` when there is none. An export shaping itself like a served version picks it
    by the same rule (:func:`retune.to_onnx`)."""
    floats = [o for o in outputs if o.dtype.kind == "f"]
    probs = [o for o in floats if o.rank == 2 and "prob" in o.name.lower()]
    found = probs or floats
    return found[0].name if found else None


# ---------------------------------------------------------------------------------------
# Protobuf inspection (used by from_bytes and by candidate inspection)


def parse_model(data: bytes) -> onnx.ModelProto:
    """Parse ONNX bytes without touching external files; not_onnx on failure."""
    try:
        model: onnx.ModelProto = onnx.ModelProto.FromString(data)
    except Exception as exc:  # protobuf raises DecodeError
        raise CandidateRejectedError(
            f"not an ONNX model: {type(exc).__name__}: {exc}", code="not_onnx"
        ) from exc
    if not model.HasField("graph"):
        raise CandidateRejectedError("not an ONNX model: it has no graph", code="not_onnx")
    return model


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def external_data_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every tensor (initializers, attributes, subgraphs, functions) whose
    data lives in an external file."""
    tensors = list(_graph_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    return [
        t.name or "<unnamed>"
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0
    ]


def opset_imports(model: onnx.ModelProto) -> dict[str, int]:
    """``{domain: version}``, with the default domain spelt ``"ai.onnx"``."""
    return {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def thread_run_options() -> ort.RunOptions:
    """The calling thread's ``RunOptions``, which its runs under a deadline pass to
    onnxruntime (:func:`shadow._deadline.thread_options`). Another thread setting their
    ``terminate`` stops this thread's run in flight and every later one: how
    :meth:`shadow.ShadowQueue.close` ends a drain still in onnxruntime. A model with no
    ``run_timeout_s`` runs without them and cannot be stopped so."""
    options: ort.RunOptions = _deadline.thread_options(ort.RunOptions)
    return options


# ---------------------------------------------------------------------------------------


class _Unread:
    """The mark of a value not worked out yet."""


_UNREAD = _Unread()


class OnnxModel:
    """One onnxruntime session over an in-memory model, with its signature.

    Build with :meth:`from_bytes`. :meth:`run` expects an array already checked by
    :func:`~shadow.validate_batch` (right dtype, shape and values); it is the scoring
    hot path and adds well under 3 µs to onnxruntime's own cost. Sessions are safe
    to run from several threads at once.
    """

    __slots__ = (
        "_breaker",
        "_input_name",
        "_output_names",
        "_primary",
        "_run",
        "_session",
        "_width",
        "memory_bytes",
        "run_timeout_s",
        "sha256",
        "signature",
    )

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        sha256: str,
        memory_bytes: int,
        run_timeout_s: float | None = None,
    ) -> None:
        if run_timeout_s is not None and not run_timeout_s > 0:
            raise ValueError(f"`run_timeout_s` must be > 0 or None, got {run_timeout_s}")
        self._session = session
        self.run_timeout_s = run_timeout_s
        self._breaker = None if run_timeout_s is None else _deadline.RunBreaker()
        self.signature: Signature = signature_from_session(session)
        self.sha256: str = sha256
        self.memory_bytes: int = max(0, memory_bytes)
        self._input_name: str = self.signature.input.name
        self._output_names: list[str] = list(self.signature.output_names)
        self._primary: str = self.signature.primary_output
        self._width: int | None | _Unread = _UNREAD
        # The public InferenceSession.run re-validates input names and ownership on
        # every call (~1-2 µs); our inputs are validated upstream, so call the
        # pybind session directly when it is there.
        inner = getattr(session, "_sess", None)
        self._run: Any = getattr(inner, "run", None) or session.run

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        run_timeout_s: float | None = None,
    ) -> OnnxModel:
        """Create a CPU session with explicit thread counts and sequential execution.
        With ``run_timeout_s``, a run still going after that many seconds is stopped
        (:mod:`shadow._deadline`) and raises :class:`~shadow.ShadowError` ``run_timeout``.

        Raises :class:`~shadow.CandidateRejectedError` for bytes that are not ONNX
        (``not_onnx``), reference external data (``external_data``) or have an
        unsupported signature, and :class:`~shadow.ModelLoadError` when onnxruntime
        refuses the model.
        """
        if intra_op_threads < 1 or inter_op_threads < 1:
            raise ValueError(
                "`intra_op_threads` and `inter_op_threads` must be >= 1, got "
                f"{intra_op_threads} and {inter_op_threads}"
            )
        external = external_data_tensors(parse_model(data))
        if external:
            raise CandidateRejectedError(
                f"model references external data for tensors {external[:5]}; "
                "tunewatch only serves self-contained ONNX files",
                code="external_data",
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        before = _rss_bytes()
        try:
            session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # every ORT load failure is a distinct pybind class
            raise ModelLoadError(f"onnxruntime could not load the model: {exc}") from exc
        memory = _rss_bytes() - before
        return cls(
            session,
            sha256=hashlib.sha256(data).hexdigest(),
            memory_bytes=memory,
            run_timeout_s=run_timeout_s,
        )

    def run(self, x: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """Score a validated batch; returns every output by name."""
        timeout = self.run_timeout_s
        breaker = self._breaker
        options = token = None
        if breaker is not None and timeout is not None:
            refusing = breaker.refusing_for()
            if refusing:
                raise ShadowError(
                    f"the model's last {breaker.consecutive} runs passed the {timeout} s "
                    f"deadline (scoring.run_timeout_s); it is not run for another "
                    f"{math.ceil(refusing)} s",
                    code="run_timeout",
                )
            options = _deadline.thread_options(ort.RunOptions)
            token = _deadline.watch(options, timeout)
        try:
            results = self._run(self._output_names, {self._input_name: x}, options)
        except Exception as exc:  # any ORT failure at run time
            text = str(exc)
            refused = isinstance(exc, ort_state.InvalidArgument | ValueError | TypeError)
            if refused and _NODE_FAILED not in text:  # else a node failed: run_failed below
                code: InvalidInputCode = (
                    "dtype_mismatch" if "type" in text.lower() else "shape_mismatch"
                )
                raise InvalidInputError(
                    f"onnxruntime refused the input: {text}", code=code
                ) from exc
            if token is not None and _deadline.end(token, options):
                token = None
                assert breaker is not None  # a token means a deadline, and so a breaker
                opened = breaker.timed_out()
                logger.warning(
                    "model %s: a run of %d rows passed its %s s deadline and was stopped%s",
                    self.sha256[:12],
                    x.shape[0] if x.ndim else 1,
                    timeout,
                    f"; {breaker.consecutive} in a row: its runs are refused for "
                    f"{breaker.refusing_for():.0f} s"
                    if opened
                    else "",
                )
                raise ShadowError(
                    f"the model did not finish scoring within {timeout} s "
                    "(scoring.run_timeout_s) and was stopped",
                    code="run_timeout",
                ) from exc
            raise ShadowError(
                f"onnxruntime failed while scoring: {exc}", code="run_failed"
            ) from exc
        finally:
            if token is not None:
                _deadline.end(token, options)
                assert breaker is not None
                breaker.finished()
        return dict(zip(self._output_names, results, strict=True))

    def with_run_timeout(self, run_timeout_s: float | None) -> OnnxModel:
        """This model's session (shared, not copied) under another run deadline."""
        return OnnxModel(
            self._session,
            sha256=self.sha256,
            memory_bytes=self.memory_bytes,
            run_timeout_s=run_timeout_s,
        )

    def primary_width(self) -> int | None:
        """Columns of the primary output: as the graph declares them, else as a run of
        zeros gives them (the candidate probe held a dynamic width the same whatever the
        rows), found on the first call; ``None`` when that run fails."""
        width = self._width
        if isinstance(width, _Unread):
            width = self.signature.primary_width
            if width is None:
                spec = self.signature.input
                rows = np.zeros((spec.shape[0] or 1, self.signature.n_features), spec.dtype)
                try:
                    width = int(self.primary(self.run(rows)).shape[1])
                except ShadowError as exc:
                    logger.warning(
                        "model %s: a run of zeros failed, its output's columns are not known: %s",
                        self.sha256[:12],
                        exc.message,
                    )
            self._width = width
        return width

    def primary(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """The primary output as a float32 2-D array (``[N]`` becomes ``[N, 1]``)."""
        out = np.asarray(outputs[self._primary], dtype=np.float32)
        if out.ndim == 1:
            out = out.reshape(-1, 1)
        return out

    def __repr__(self) -> str:
        return (
            f"OnnxModel(sha256={self.sha256[:12]!r}, input={self.signature.input.shape}, "
            f"primary_output={self._primary!r})"
        )
