"""The onnxruntime boundary: the only module of :mod:`shadow` importing onnxruntime.

Scope: tunewatch serves **tabular models with exactly one 2-D input**
``[batch, n_features]`` (float32 usually), e.g. scikit-learn pipelines converted by
skl2onnx. Classifiers converted with ``zipmap=False`` give ``label`` ``[N]`` int64 and
``probabilities`` ``[N, C]`` float32; regressors give ``variable`` ``[N, 1]``. Any other
graph (several inputs, a dynamic feature dimension, non-tensor outputs such as a
ZipMap's sequence of maps) is refused with
:class:`~shadow.CandidateRejectedError` code ``unsupported_signature``.

Errors raised by onnxruntime are translated here, at one boundary (onnx's own, when
bytes do not parse, in :mod:`shadow._onnx_proto`):
session creation failures become :class:`~shadow.ModelLoadError`, bad inputs at run
time :class:`~shadow.InvalidInputError`, a run onnxruntime could not allocate memory for
:class:`~shadow.InsufficientMemoryError` (the host's condition and the batch's size, not
the model's fault: a smaller batch or a later try may pass), anything else at
run time :class:`~shadow.ShadowError` (``run_failed``, ``run_timeout``): so too a node
failing inside the graph, which onnxruntime reports as an invalid argument ("Non-zero
status code returned while running Gather node"), since the input had passed its checks.

What needs no onnxruntime lives beside it and is re-exported here: the signature
(:class:`Signature`, :class:`TensorSpec`, :class:`ProbedOutput`, :func:`primary_output`
and the rules a graph must meet) in :mod:`shadow._signature`, and the reading of ONNX
bytes with ``onnx`` (:func:`parse_model`, :func:`external_data_tensors`,
:func:`opset_imports`) in :mod:`shadow._onnx_proto`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

# onnx (through _onnx_proto) loads before onnxruntime, as when both were imported here.
from shadow._onnx_proto import external_data_tensors as external_data_tensors
from shadow._onnx_proto import opset_imports as opset_imports
from shadow._onnx_proto import parse_model as parse_model
from shadow._signature import ProbedOutput as ProbedOutput
from shadow._signature import Signature as Signature
from shadow._signature import TensorSpec as TensorSpec
from shadow._signature import primary_output as primary_output
from shadow._signature import signature_from_node_args

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
    InsufficientMemoryError,
    InvalidInputCode,
    InvalidInputError,
    ModelLoadError,
    ShadowError,
)

logger = logging.getLogger(__name__)

# How onnxruntime begins a node's failure (a Gather index past its table, ...), which it
# reports as INVALID_ARGUMENT like an input of the wrong dtype or rank: the input passed
# its checks and the run started, so the failure is the model's, not the caller's.
_NODE_FAILED: Final[str] = "Non-zero status code returned while running"

#: Texts by which onnxruntime, the C++ runtime, Python or the loader say an allocation
#: failed. onnxruntime's arena says "Failed to allocate memory for requested buffer of
#: size N" (a run's tensors past the address space or ``RLIMIT_AS``); OpenBLAS, when
#: numpy loads under a tight limit, "OpenBLAS error: Memory allocation still failed".
MEMORY_MARKERS: Final[tuple[str, ...]] = (
    "MemoryError",
    "bad_alloc",
    "Cannot allocate memory",
    "ENOMEM",
    "out of memory",
    "failed to map segment",
    "Failed to allocate memory",
    "Memory allocation still failed",
)
_BUFFER_SIZE: Final = re.compile(r"requested buffer of size (\d+)")
MEMORY_LOGGED_EVERY_S: Final = 60.0
_memory_logged_at = [-math.inf]  # monotonic time a run short of memory was last logged
_PAGE_SIZE: Final[int] = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def signature_from_session(session: ort.InferenceSession) -> Signature:
    """Read the :class:`Signature` of a session, refusing graphs tunewatch cannot serve.

    Raises :class:`~shadow.CandidateRejectedError` (``unsupported_signature``) unless
    the graph has exactly one numeric input of rank 2 with a fixed feature dimension
    and at least one floating-point tensor output (:mod:`shadow._signature`).
    """
    return signature_from_node_args(session.get_inputs(), session.get_outputs())


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


def _insufficient_memory(
    text: str, x: np.ndarray[Any, Any], sha256: str
) -> InsufficientMemoryError:
    """The error of a run onnxruntime could not allocate its tensors for: its text holds
    the runtime's source path and function, which no caller needs; the size it asked
    for is kept. Logged whole, at most once in :data:`MEMORY_LOGGED_EVERY_S` for the
    process (under memory pressure every request may fail so; each is counted)."""
    size = _BUFFER_SIZE.search(text)
    rows = x.shape[0] if x.ndim else 1
    now = time.monotonic()
    if now - _memory_logged_at[0] >= MEMORY_LOGGED_EVERY_S:
        _memory_logged_at[0] = now
        logger.warning(
            "model %s: onnxruntime could not allocate the memory to score %d rows (such runs "
            "are answered 503 insufficient_memory or left unshadowed; logged at most once "
            "in %g s): %s",
            sha256[:12],
            rows,
            MEMORY_LOGGED_EVERY_S,
            text,
        )
    return InsufficientMemoryError(rows=rows, requested_bytes=int(size.group(1)) if size else None)


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
            if isinstance(exc, MemoryError) or any(m in text for m in MEMORY_MARKERS):
                raise _insufficient_memory(text, x, self.sha256) from exc
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
