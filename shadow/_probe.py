"""Child-process probe for candidate models: ``python -m shadow._probe -`` reads the
model's bytes from stdin (the bytes its parent hashed, not a file that may change
meanwhile); ``python -m shadow._probe <path>`` reads a file. A second argument names an
``.npy`` file of rows (float64, ``[n, n_features]``) the probe scores besides its own:
the reference rows a registration checks a classifier's outputs on.

Run by :func:`shadow.inspect_candidate` under an address-space limit and a timeout,
because a crafted model can crash or exhaust the process creating its session. It
creates a session, reads the signature, scores rows of zeros in runs of
:data:`ZERO_ROW_COUNTS` rows (one run of as many rows as the model declares a fixed
batch of), checks the primary output holds a row per input row, scores rows of non-zero
values (see :func:`probe`), then the rows a registration checks a classifier's outputs
on (:func:`score_check_rows`), and prints one JSON object to stdout:

- success (exit 0): ``{"signature": {...}, "memory_bytes": int, "opset": {domain:
  version}, "scored": {...}}``, the signature holding what the probe saw of the primary
  output (:class:`~shadow._onnx.ProbedOutput`: its columns and the range of its values,
  which the registry holds to the task), ``scored`` every output on the check rows
- refusal (exit 2): ``{"error": code, "message": str}`` with a
  :class:`~shadow.CandidateRejectedError` code
- out of memory (exit 3): ``{"error": "load_memory", "message": str}``

Any other outcome (a crash, a signal, an unexpected exception) is a non-zero exit with
the reason on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Final

import numpy as np

from shadow._batch_chunks import run_rows
from shadow._errors import CandidateRejectedError, InsufficientMemoryError, ShadowError
from shadow._onnx import MEMORY_MARKERS, OnnxModel, ProbedOutput, TensorSpec
from shadow._onnx_proto import opset_imports, parse_model
from shadow._validation import representable_rows

EXIT_OK = 0
EXIT_REJECTED = 2
EXIT_MEMORY = 3

#: The row counts of the runs of zeros. Two counts, so that a ``[n_outputs, batch]``
#: output, whose first dimension stays its number of outputs, matches at most one: a probe
#: scoring two rows took a binary classifier's ``[2, batch]`` for one row per input row.
ZERO_ROW_COUNTS: Final[tuple[int, ...]] = (3, 5)

#: Values of the probe's non-zero rows, each a row of its own (clipped to the input's
#: type; negative ones left out for an unsigned input).
NON_ZERO_VALUES: Final[tuple[float, ...]] = (1.0, -1.0, 1000.0)
#: The deadline of the run of the non-zero rows: a model still going after it is left to
#: the serving deadline (``scoring.run_timeout_s``), as one that loops on its input is.
NON_ZERO_RUN_TIMEOUT_S: Final = 1.0

#: The values of the check rows, each a row of its own, in one run (of them, what the
#: input's type holds: 0 and 1 for an unsigned input).
CHECK_VALUES: Final[tuple[float, ...]] = (0.0, 1.0, -1.0)
#: The deadline of each run of the check rows: a model still going after it is not
#: checked on them (the registration's checks pass it, as serving answers it).
CHECK_RUN_TIMEOUT_S: Final = 5.0
#: The output dtypes the probe sends back (a string output is no check's business).
SCORED_KINDS: Final = "biuf"


def probe(data: bytes, check_rows: np.ndarray[Any, Any] | None = None) -> dict[str, object]:
    """Load ``data`` (an ONNX model) into a session and score rows of zeros, a run of
    each of :data:`ZERO_ROW_COUNTS` rows (one run of the model's fixed batch if it
    declares one): the primary output must hold one row per input row, of rank 1 or 2,
    and as many columns in each run (a scalar, a ``[batch, 2, 2]`` or a ``[n_outputs,
    batch]`` output cannot be recorded, nor split by request when a shadow backlog is
    batched).

    Then score rows of :data:`NON_ZERO_VALUES`, so that a model allocating by the values
    of its input does so under the probe's address-space limit: one allocating
    ``sum(|x|) * 1e8`` floats answered the rows of zeros and took 3.6 GB of the daemon on
    its first real row. Only running out of memory fails the candidate there; an error
    or a run past :data:`NON_ZERO_RUN_TIMEOUT_S` is left to serving, which answers or
    stops such runs one by one. No finite set of rows finds every such model (one may
    allocate for one value only).

    The signature returned holds what the runs showed of the primary output
    (:class:`~shadow._onnx.ProbedOutput`): its columns, which a graph may leave dynamic,
    and the range of its values on every row scored, zeros and non-zero values alike.
    ``scored`` holds every output on the rows a registration checks a classifier on
    (:func:`score_check_rows`): rows of :data:`CHECK_VALUES` and ``check_rows``."""
    opset = opset_imports(parse_model(data))  # parsed here, under the limit, not in the parent
    model = OnnxModel.from_bytes(data)  # refuses external data, anywhere in the model
    spec = model.signature.input
    name = model.signature.primary_output
    fixed = spec.shape[0]  # a fixed batch refuses any other number of rows
    counts = (fixed,) if fixed else ZERO_ROW_COUNTS
    seen: list[np.ndarray[Any, Any]] = []
    for rows in counts:
        x = np.zeros((rows, model.signature.n_features), dtype=spec.dtype)
        values = model.primary(model.run(x))
        if values.ndim > 2:
            raise CandidateRejectedError(
                f"the model's output {name!r} must have rank 1 or 2 ([batch] or [batch, "
                f"columns]): {rows} rows gave shape {list(values.shape)}",
                code="unsupported_signature",
            )
        if values.ndim < 1 or values.shape[0] != rows:
            raise CandidateRejectedError(
                f"the model's output {name!r} must hold one row per input row: {rows} rows "
                f"gave shape {list(values.shape)}",
                code="unsupported_signature",
            )
        if seen and values.shape[1] != seen[0].shape[1]:
            raise CandidateRejectedError(
                f"the model's output {name!r} must have as many columns whatever the number "
                f"of rows: {counts[0]} rows gave {seen[0].shape[1]}, {rows} rows gave "
                f"{values.shape[1]}",
                code="unsupported_signature",
            )
        seen.append(values)
    width = int(seen[0].shape[1])
    seen.extend(_score_non_zero_rows(model.with_run_timeout(NON_ZERO_RUN_TIMEOUT_S)))
    scored = np.concatenate([v.ravel() for v in seen])
    scored = scored[~np.isnan(scored)]
    low, high = (float(scored.min()), float(scored.max())) if scored.size else (None, None)
    signature = dataclasses.replace(
        model.signature, probed=ProbedOutput(width=width, low=low, high=high)
    )
    return {
        "signature": signature.to_dict(),
        "memory_bytes": model.memory_bytes,
        "opset": opset,
        "scored": score_check_rows(model.with_run_timeout(CHECK_RUN_TIMEOUT_S), check_rows),
    }


def constant_rows(spec: TensorSpec, n_features: int) -> np.ndarray[Any, Any]:
    """Rows of :data:`CHECK_VALUES`, as ``spec``'s type holds them."""
    values = [v for v in CHECK_VALUES if v >= 0] if spec.dtype.kind == "u" else CHECK_VALUES
    column = np.asarray(values, dtype=spec.dtype)[:, None]
    return np.repeat(column, n_features, axis=1)


def score_check_rows(
    model: OnnxModel, given: np.ndarray[Any, Any] | None
) -> dict[str, dict[str, object]]:
    """Score the rows a registration checks a classifier's outputs on, in the runs it
    made of them in its own process before (a run each, in runs of the batch the graph
    fixes, :func:`~shadow.run_rows`): ``"constant"``, rows of :data:`CHECK_VALUES`;
    ``"given"``, those of ``given`` the input's type holds (none: no such entry).

    Each entry holds ``rows`` (how many were scored) and either ``outputs`` (every output
    of :data:`SCORED_KINDS`, by name: its ``dtype``, ``shape`` and flat ``values``) or
    ``error``, the message of a run that failed or passed its deadline: as serving would
    answer it, not a refusal. Running out of memory is (as on the non-zero rows)."""
    spec = model.signature.input
    batches = {"constant": constant_rows(spec, model.signature.n_features)}
    scored: dict[str, dict[str, object]] = {}
    if given is not None:
        if given.ndim != 2 or given.shape[1] != model.signature.n_features:
            scored["given"] = {
                "rows": int(given.shape[0]) if given.ndim else 0,
                "error": f"rows of shape {list(given.shape)}, the model takes "
                f"{model.signature.n_features} features",
            }
        else:
            kept = given[representable_rows(given, spec.dtype)]
            if kept.shape[0]:
                batches["given"] = np.ascontiguousarray(kept.astype(spec.dtype))
    for key, rows in batches.items():
        try:
            outputs = run_rows(model, rows)
        except ShadowError as exc:
            if _out_of_memory(exc):
                raise
            scored[key] = {"rows": int(rows.shape[0]), "error": exc.message}
            continue
        scored[key] = {
            "rows": int(rows.shape[0]),
            "outputs": {
                name: {
                    "dtype": out.dtype.str,
                    "shape": list(out.shape),
                    "values": out.ravel().tolist(),
                }
                for name, out in outputs.items()
                if out.dtype.kind in SCORED_KINDS
            },
        }
    return scored


def _score_non_zero_rows(model: OnnxModel) -> list[np.ndarray[Any, Any]]:
    """Score each of :data:`NON_ZERO_VALUES` in a run of its own, as many rows of it as
    the model's batch dimension holds (one where it is dynamic); return the primary
    output of each run that answered."""
    spec = model.signature.input
    if spec.dtype.kind == "f":
        values = [min(v, float(np.finfo(spec.dtype).max)) for v in NON_ZERO_VALUES]
    else:
        info = np.iinfo(spec.dtype)
        values = [min(max(v, info.min), info.max) for v in NON_ZERO_VALUES]
        values = list(dict.fromkeys(v for v in values if v != 0))
    batch = spec.shape[0] or 1  # a fixed batch refuses any other number of rows
    answered = []
    for value in values:
        rows = np.full((batch, model.signature.n_features), value, dtype=spec.dtype)
        try:
            answered.append(model.primary(model.run(rows)))
        except ShadowError as exc:
            if _out_of_memory(exc):
                raise
            if exc.code == "run_timeout":
                break  # the rest would loop too
            # any other error on such a row is answered as such when served: not refused
    return answered


def _out_of_memory(exc: ShadowError) -> bool:
    """Whether loading or scoring failed for want of memory: under the probe's
    address-space limit, the candidate needs more than it allows (``load_memory``, not
    ``load_failed``; the parent, :mod:`shadow._candidate`, reads a crashed probe's stderr
    for :data:`~shadow._onnx.MEMORY_MARKERS` too)."""
    return isinstance(exc, InsufficientMemoryError) or any(m in exc.message for m in MEMORY_MARKERS)


def _emit(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.stderr.write("usage: python -m shadow._probe <model.onnx | -> [rows.npy]\n")
        return 64
    try:
        data = sys.stdin.buffer.read() if argv[0] == "-" else Path(argv[0]).read_bytes()
        rows = np.load(argv[1], allow_pickle=False) if len(argv) == 2 else None
        result = probe(data, rows)
    except MemoryError as exc:
        _emit({"error": "load_memory", "message": f"out of memory: {exc}"})
        return EXIT_MEMORY
    except CandidateRejectedError as exc:
        _emit({"error": exc.code, "message": exc.message})
        return EXIT_REJECTED
    except InsufficientMemoryError as exc:  # a run of the probe's rows: not retried later
        message = f"the model needs more memory to score {exc.scored} than the probe allows"
        _emit({"error": "load_memory", "message": message})
        return EXIT_MEMORY
    except ShadowError as exc:
        text = exc.message
        if _out_of_memory(exc):
            _emit({"error": "load_memory", "message": text})
            return EXIT_MEMORY
        _emit({"error": "load_failed", "message": text})
        return EXIT_REJECTED
    _emit(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
