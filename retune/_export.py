"""Export of fitted scikit-learn estimators to ONNX, with a parity gate.

The only module of :mod:`retune` importing skl2onnx. Models are exported for the
serving scope of :mod:`shadow`: one input ``[None, n_features]`` (float32 unless told
otherwise); classifiers (or Pipelines ending in one) without ZipMap, so they output
``label`` and a plain ``probabilities`` tensor; regressors output ``variable`` ``[N, 1]``.
An export that replaces a served version takes that version's :class:`~shadow.Signature`
as ``like``: its input name and type, and its output names where the outputs match (type
and shape, once a float32 output is cast to the float64 ``like`` answers, or a column
``[N, 1]`` reshaped to its vector ``[N]``), so that a client's request valid for the one is
valid for the other; a binary classifier replacing a version that answers P(class 1)
alone answers that column alone.

float32 thresholds can flip tree paths, so an export is only trusted after
:func:`check_parity` has compared it with the estimator on held-out rows, scoring the
ONNX side with :class:`shadow.OnnxModel` — the same loader that serves.

The bytes are canonical for a given estimator and set of library versions: the process's
``PYTHONHASHSEED`` changes none of them (:func:`_sort_opsets`), so a refit's sha256 can be
matched with a registered artefact's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline

from retune._errors import ExportError, ParityError
from retune.space._transformers import (
    KBestColumnSelector,
    MissingIndicatorAppender,
    SparseColumnDropper,
)
from shadow import (
    InvalidInputError,
    OnnxModel,
    ShadowError,
    Signature,
    TensorSpec,
    primary_output,
)


def _kept_columns(raw: Any) -> list[int]:
    """The input columns a column-keeping step passes on, in order."""
    if isinstance(raw, KBestColumnSelector):
        return [int(i) for i in raw.get_support(indices=True)]
    return [int(i) for i in raw.keep_]


def _kept_shape(operator: Any) -> None:
    n_rows = operator.inputs[0].get_first_dimension()
    n_kept = len(_kept_columns(operator.raw_operator))
    operator.outputs[0].type = FloatTensorType([n_rows, n_kept])


def _kept_convert(scope: Any, operator: Any, container: Any) -> None:
    keep = _kept_columns(operator.raw_operator)
    if not keep:  # SelectKBest keeps at least one column; a guard, not a case
        raise RuntimeError(f"{type(operator.raw_operator).__name__} keeps no column")
    indices = scope.get_unique_variable_name("keep_columns")
    container.add_initializer(indices, TensorProto.INT64, [len(keep)], keep)
    container.add_node(
        "Gather",
        [operator.inputs[0].full_name, indices],
        operator.outputs[0].full_name,
        axis=1,
        name=scope.get_unique_operator_name("KeepColumns"),
    )


def _indicator_shape(operator: Any) -> None:
    n_rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n_rows, 2 * operator.raw_operator.n_features_in_])


def _indicator_convert(scope: Any, operator: Any, container: Any) -> None:
    source = operator.inputs[0].full_name
    is_nan = scope.get_unique_variable_name("is_nan")
    as_float = scope.get_unique_variable_name("missing_flags")
    container.add_node("IsNaN", [source], is_nan, name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Cast",
        [is_nan],
        as_float,
        to=TensorProto.FLOAT,
        name=scope.get_unique_operator_name("Cast"),
    )
    container.add_node(
        "Concat",
        [source, as_float],
        operator.outputs[0].full_name,
        axis=1,
        name=scope.get_unique_operator_name("AppendMissingFlags"),
    )


update_registered_converter(
    SparseColumnDropper, "TunewatchSparseColumnDropper", _kept_shape, _kept_convert
)
update_registered_converter(
    KBestColumnSelector, "TunewatchKBestColumnSelector", _kept_shape, _kept_convert
)
update_registered_converter(
    MissingIndicatorAppender,
    "TunewatchMissingIndicatorAppender",
    _indicator_shape,
    _indicator_convert,
)


def _classifier_step(estimator: Any) -> Any | None:
    """The estimator whose ZipMap must be disabled, if it is a classifier."""
    final = estimator
    while isinstance(final, Pipeline):
        final = final.steps[-1][1]
    return final if is_classifier(final) else None


def to_onnx(
    estimator: Any,
    n_features: int,
    *,
    name: str = "model",
    target_opset: int | None = None,
    input_name: str = "input",
    like: Signature | None = None,
) -> bytes:
    """Convert a fitted estimator to ONNX bytes with input ``input: float32[None, n_features]``.

    With ``like`` (the signature of the version the export may replace) the input takes
    its name and element type instead: the trees and coefficients stay float32, a
    ``Cast`` to float32 first in the graph reads the input of any other numeric type
    (float64, say); and the outputs take its names, in order, where the graph has as
    many outputs of the same element types and shapes past the first dimension (a
    dimension ``like`` leaves unknown matches only an unknown one), once each is adapted
    to ``like``'s: a float32 output answers float64 (a ``Cast`` last in the graph, which
    changes no value) where ``like``'s does, and a column ``[N, 1]`` a vector ``[N]`` (a
    ``Reshape``) where ``like``'s is one. Where they do not and ``like`` answers its
    primary output alone, the graph answers only its own primary output, so adapted and
    under that name, when the two match; otherwise the converter's outputs stay as they
    are (a float16 output is not made: it would round the float32 values).
    A binary classifier exported like a version whose primary output has one column
    (``[N, 1]``, or ``[N]``) answers P(``classes_[1]``) alone in that shape, not both
    columns: the positive-class column is taken in the graph. ``like``'s width must be
    ``n_features``.

    Raises :class:`ExportError` when ``n_features`` is not the estimator's
    ``n_features_in_`` (where it records one) or ``like``'s width: skl2onnx takes the
    declared width on trust, and a graph for fewer columns answered nonsense, one for
    more failed only when run. Raises it too (from the converter's own exception) when
    skl2onnx cannot convert the estimator.
    """
    if n_features < 1:
        raise ExportError(f"`n_features` must be >= 1, got {n_features}")
    # a Pipeline whose first step records no width answers AttributeError: no check
    seen = getattr(estimator, "n_features_in_", None)
    if seen is not None and int(seen) != n_features:
        raise ExportError(
            f"`n_features` must be the estimator's `n_features_in_` ({int(seen)}), got {n_features}"
        )
    if like is not None:
        if like.n_features != n_features:
            raise ExportError(
                f"`like` takes {like.n_features} features but `n_features` is {n_features}"
            )
        input_name = like.input.name
    options: dict[int, dict[str, Any]] | None = None
    classifier = _classifier_step(estimator)
    if classifier is not None:
        options = {id(classifier): {"zipmap": False}}
    try:
        proto = convert_sklearn(
            estimator,
            name=name,
            initial_types=[(input_name, FloatTensorType([None, n_features]))],
            options=options,
            target_opset=target_opset,
        )
    except Exception as exc:  # skl2onnx raises RuntimeError, TypeError, NameError …
        raise ExportError(
            f"skl2onnx could not convert {type(estimator).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    if like is not None:
        _cast_input(proto.graph, helper.np_dtype_to_tensor_dtype(like.input.dtype))
        one_column = like.primary_output in like.output_names and like.primary_width == 1
        if one_column and classifier is not None and len(classifier.classes_) == 2:
            _positive_column(proto.graph, like.output(like.primary_output).rank)
        _rename_outputs(proto.graph, like)
    _sort_opsets(proto)
    data: bytes = proto.SerializeToString()
    return data


def _sort_opsets(proto: onnx.ModelProto) -> None:
    """List the model's opsets by domain: skl2onnx lists them in the order of a Python set
    of ``(domain, version)``, which follows the process's ``PYTHONHASHSEED``, so the same
    fitted estimator exported to other bytes (another sha256) in about one process in six.
    The order means nothing to a runtime; sorted, the bytes depend only on the estimator and
    the library versions."""
    opsets = sorted((o.domain, o.version) for o in proto.opset_import)
    del proto.opset_import[:]
    proto.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)


def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {v.name for v in graph.output}
    names |= {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _cast_input(graph: onnx.GraphProto, elem_type: int) -> None:
    """Make the graph's float32 input one of ``elem_type``, cast to float32 first."""
    if elem_type == TensorProto.FLOAT:
        return
    source = graph.input[0]
    taken = _value_names(graph)
    cast = f"{source.name}_float32"
    while cast in taken:
        cast += "_"
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == source.name:
                node.input[i] = cast
    node = helper.make_node("Cast", [source.name], [cast], to=TensorProto.FLOAT, name=cast)
    graph.node.insert(0, node)
    source.type.tensor_type.elem_type = elem_type


def _primary_index(graph: onnx.GraphProto) -> int | None:
    """The index of the graph's primary output as serving picks it
    (:func:`shadow.primary_output`); ``None`` when it has none."""
    specs = []
    for o in graph.output:
        kind = o.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(kind.elem_type))
        except KeyError:  # not a plain tensor type: never a primary output
            dtype = np.dtype(object)
        specs.append(TensorSpec(name=o.name, dtype=dtype, shape=(None,) * len(kind.shape.dim)))
    name = primary_output(specs)
    return None if name is None else [o.name for o in graph.output].index(name)


def _fresh_name(graph: onnx.GraphProto, name: str) -> str:
    """``name``, or ``name`` followed by underscores: a name no value of the graph has."""
    taken = _value_names(graph)
    while name in taken:
        name += "_"
    return name


def _redirect(graph: onnx.GraphProto, name: str, suffix: str) -> str:
    """Give the value the graph computes as ``name`` a new name (``name`` and ``suffix``),
    returned, in the nodes that compute and read it, so that a node appended after them
    can compute ``name`` from it."""
    inner = _fresh_name(graph, f"{name}_{suffix}")
    for node in graph.node:
        for i, value in enumerate(node.output):
            if value == name:
                node.output[i] = inner
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = inner
    return inner


def _positive_column(graph: onnx.GraphProto, rank: int) -> None:
    """Make the graph's primary output (a binary classifier's ``[N, 2]`` probabilities)
    answer its column 1 alone, P(``classes_[1]``), in ``[N, 1]`` (``rank`` 2) or ``[N]``
    (``rank`` 1), under the same name, float32 still."""
    index = _primary_index(graph)
    if index is None or rank not in (1, 2):
        return
    out = graph.output[index]
    both = _redirect(graph, out.name, "both_columns")
    column = _fresh_name(graph, f"{out.name}_positive_column")
    # index [1] keeps the column axis ([N, 1]); the scalar 1 drops it ([N])
    indices = helper.make_tensor(column, TensorProto.INT64, [1] if rank == 2 else [], [1])
    graph.initializer.append(indices)
    graph.node.append(helper.make_node("Gather", [both, column], [out.name], axis=1, name=column))
    dims = out.type.tensor_type.shape.dim
    del dims[1:]
    if rank == 2:
        dims.add().dim_value = 1


def _adapt_output(graph: onnx.GraphProto, index: int, spec: TensorSpec) -> bool:
    """Make the graph's output ``index`` answer in ``spec``'s shape and element type where
    it can without changing a value: a column ``[N, 1]`` as a vector ``[N]`` (a
    ``Reshape``), a float32 output as float64 (a ``Cast``, exact). Whether the output now
    matches ``spec`` (:func:`_matches`); the graph is changed either way."""
    out = graph.output[index]
    kind = out.type.tensor_type
    if len(kind.shape.dim) == 2 and _trailing_dims(out) == (1,) and spec.rank == 1:
        column = _redirect(graph, out.name, "column")
        shape = _fresh_name(graph, f"{out.name}_vector_shape")
        graph.initializer.append(helper.make_tensor(shape, TensorProto.INT64, [1], [-1]))
        graph.node.append(helper.make_node("Reshape", [column, shape], [out.name], name=shape))
        del kind.shape.dim[1:]
    # float32 is kept as is into a narrower type (float16): that would round the values
    if kind.elem_type == TensorProto.FLOAT and spec.dtype == np.float64:
        single = _redirect(graph, out.name, "float32")
        graph.node.append(
            helper.make_node("Cast", [single], [out.name], to=TensorProto.DOUBLE, name=single)
        )
        kind.elem_type = TensorProto.DOUBLE
    return _matches(out, spec)


def _trailing_dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    """The value's dimensions past the first, ``None`` where unknown or symbolic."""
    dims = value.type.tensor_type.shape.dim[1:]
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _matches(value: onnx.ValueInfoProto, spec: TensorSpec) -> bool:
    """Whether a graph output has ``spec``'s element type and rank, and its dimensions past
    the first (a column count: an unknown one matches only an unknown one)."""
    kind = value.type.tensor_type
    return (
        kind.elem_type == helper.np_dtype_to_tensor_dtype(spec.dtype)
        and len(kind.shape.dim) == spec.rank
        and _trailing_dims(value) == tuple(spec.shape[1:])
    )


def _rename_outputs(graph: onnx.GraphProto, like: Signature) -> None:
    """Give the graph's outputs ``like``'s names, in order, where they match one for one
    (element type, rank and dimensions past the first), once adapted to it
    (:func:`_adapt_output`: a float32 output answers float64, a column ``[N, 1]`` a
    vector ``[N]``, where ``like``'s does), and no other value of the graph has one of
    those names. Where they do not and ``like`` answers its primary output alone, keep
    only the graph's primary output, adapted and under that name, when the two match.
    Otherwise the graph is left as it was."""
    outputs = list(graph.output)
    wanted: Sequence[TensorSpec] = like.outputs
    if len(outputs) == len(wanted):
        adapted = onnx.GraphProto()
        adapted.CopyFrom(graph)
        if all(_adapt_output(adapted, i, spec) for i, spec in enumerate(wanted)):
            if _rename(adapted, {o.name: s.name for o, s in zip(outputs, wanted, strict=True)}):
                graph.CopyFrom(adapted)
            return
    index = _primary_index(graph)
    if len(wanted) != 1 or wanted[0].name != like.primary_output or index is None:
        return
    alone = onnx.GraphProto()
    alone.CopyFrom(graph)
    del alone.output[:]
    alone.output.append(outputs[index])
    if not _adapt_output(alone, 0, wanted[0]):
        return
    _prune(alone)
    if _rename(alone, {outputs[index].name: wanted[0].name}):
        graph.CopyFrom(alone)


def _rename(graph: onnx.GraphProto, renames: dict[str, str]) -> bool:
    """Rename the graph's values by ``renames``, unless a value it does not rename already
    has one of the new names; whether the graph's outputs now have the new names."""
    renames = {old: new for old, new in renames.items() if old != new}
    if set(renames.values()) & (_value_names(graph) - set(renames)):
        return False
    for node in graph.node:
        for i, value in enumerate(node.output):
            node.output[i] = renames.get(value, value)
        for i, value in enumerate(node.input):
            node.input[i] = renames.get(value, value)
    for out in graph.output:
        out.name = renames.get(out.name, out.name)
    return True


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers no output of the graph needs any more (those that
    computed an output it no longer answers)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if needed & set(node.output):
            kept.append(node)
            needed.update(_consumed(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _consumed(node: onnx.NodeProto) -> set[str]:
    """The values a node reads: its inputs, and every name its subgraphs (a ``Scan``'s
    body, say) use, which may be the outer graph's."""
    names = set(node.input)
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
        for subgraph in [*graphs, *attribute.graphs]:
            for inner in subgraph.node:
                names |= _consumed(inner)
    return names


def _reference(estimator: Any, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if _classifier_step(estimator) is not None:
        ref = np.asarray(estimator.predict_proba(x), dtype=np.float64)
    else:
        ref = np.asarray(estimator.predict(x), dtype=np.float64)
    return ref.reshape(-1, 1) if ref.ndim == 1 else ref


#: The smallest scale a regressor's difference is divided by: float32's smallest normal
#: number, below which float32 keeps no relative precision (and a holdout predicted 0
#: everywhere divides by no zero).
_SMALLEST_SCALE = float(np.finfo(np.float32).tiny)


def _regression_scale(expected: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per-row scale of a regressor's differences: the row's own magnitude, and at least
    the holdout's mean magnitude.

    float32 keeps about 7 significant digits of each number the graph sums, so a faithful
    export is off by a few 1e-7 of the row's magnitude, or of the magnitude of its terms
    (an intercept, a boosting's initial value), about the targets' typical one, where
    terms cancel to a prediction near 0. One scale for the holdout (its largest
    prediction, at least 1) made the tolerance absolute for targets far below 1 and let
    most rows be far off beside a few huge ones."""
    magnitude = np.abs(expected)
    scale: np.ndarray[Any, Any] = np.maximum(
        magnitude, max(float(magnitude.mean()), _SMALLEST_SCALE)
    )
    return scale


def check_parity(
    onnx_bytes: bytes,
    estimator: Any,
    x_holdout: np.ndarray[Any, Any],
    *,
    tolerance: float = 1e-4,
) -> float:
    """The parity error between the estimator and the ONNX model on ``x_holdout``.

    Compares ``predict_proba`` (classifiers) or ``predict`` (regressors) with the ONNX
    primary output (a binary classifier's column 1 alone, P(``classes_[1]``), when that
    output has one column: :func:`to_onnx` ``like`` a version answering it so): for a
    classifier the max absolute difference of a probability, for
    a regressor the max relative difference, each row's over its prediction's magnitude
    or the holdout's mean magnitude, whichever is larger (:func:`_regression_scale`),
    since float32 keeps about 7 significant digits whatever the target's unit.
    Raises :class:`ParityError` when the outputs differ in shape or the error exceeds
    ``tolerance``, and :class:`ExportError` when the ONNX model cannot be loaded or run.
    """
    # an infinite tolerance passes any export: the gate would be off
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"`tolerance` must be a finite number >= 0, got {tolerance}")
    x = np.asarray(x_holdout)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"`x_holdout` must be a non-empty 2-D array, got shape {x.shape}")
    try:
        model = OnnxModel.from_bytes(onnx_bytes)
        got = model.primary(model.run(np.ascontiguousarray(x, dtype=model.signature.input.dtype)))
    except InvalidInputError as exc:
        raise ParityError(
            f"the ONNX model refused the holdout ({exc.code}): {exc.message}",
            max_abs_diff=float("inf"),
            tolerance=tolerance,
        ) from exc
    except ShadowError as exc:
        raise ExportError(f"the ONNX model could not be scored: {exc.message}") from exc
    expected = _reference(estimator, x)
    classifier = _classifier_step(estimator) is not None
    if classifier and got.shape[1:] == (1,) and expected.shape[1:] == (2,):
        expected = expected[:, 1:]  # a binary export answering P(class 1) alone
    if got.shape != expected.shape:
        raise ParityError(
            f"ONNX primary output {model.signature.primary_output!r} has shape "
            f"{list(got.shape)} but the estimator gives {list(expected.shape)}",
            max_abs_diff=float("inf"),
            tolerance=tolerance,
        )
    diff = np.abs(got.astype(np.float64) - expected)
    if not classifier and np.isfinite(expected).all():
        diff /= _regression_scale(expected)
    # a difference that is not a number (NaN, an infinite output) is the largest there is
    max_diff = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    if not max_diff <= tolerance:
        worst = np.where(np.isnan(diff), np.inf, diff)
        row = int(np.unravel_index(np.argmax(worst), diff.shape)[0])
        raise ParityError(
            f"ONNX output differs from the estimator by up to {max_diff:.3g}"
            f"{'' if classifier else ' (relative)'} "
            f"(tolerance {tolerance:g}; worst holdout row {row} of {x.shape[0]})",
            max_abs_diff=max_diff,
            tolerance=tolerance,
        )
    return max_diff
