"""What a model or version row may hold: model names, feature names, and the text of a
version's columns and JSON (no NUL, nothing UTF-8 cannot encode, within the columns'
lengths)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, String

from .._errors import InvalidValueError
from ._events import storable_json
from ._schema import model_versions

#: Model names are ``VARCHAR(200)`` (PostgreSQL enforces it; SQLite would not).
MAX_NAME = 200

#: The most feature names a model may take: far past any model served row by row, and
#: each name is a ``feature`` label of the drift metrics and a column of every drift
#: evaluation. Checked at registration only: models stored before keep theirs.
MAX_FEATURE_NAMES = 10_000

#: ``str.isprintable`` refuses control characters and the bidi embedding, override and
#: isolate characters (format characters); the message names them, which a caller whose
#: name looks right on screen needs told.
_FEATURE_NAME_RULE = (
    f"must be 1 to {MAX_NAME} printable characters (no control characters, no bidi "
    "override or isolate characters U+202A-U+202E, U+2066-U+2069)"
)


def valid_model_name(name: str) -> bool:
    """Reports and files are named after models: a name must not be a path, nor start or
    end with a space (``"fraud "`` beside ``"fraud"``, or a name of spaces only)."""
    return (
        1 <= len(name) <= MAX_NAME
        and name.isprintable()
        and name.strip() == name
        and not ({"/", "\\"} & set(name))
        and name not in (".", "..")
    )


def check_version_text(
    *,
    dataset_version: str | None,
    study: str | None,
    hyperparameters: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    feature_names: Sequence[str] = (),
) -> None:
    """Refuse (``InvalidValueError``) a ``dataset_version`` or ``study`` that a version row
    cannot hold on both backends: longer than its column (PostgreSQL enforces the
    ``VARCHAR`` length, SQLite would not), holding a NUL (PostgreSQL refuses one), or
    holding an unpaired surrogate (neither driver encodes one as UTF-8); and an unpaired
    surrogate or a NUL anywhere in ``hyperparameters``, ``details`` (keys and values, at
    any depth) or ``feature_names``: their JSON columns store one escaped, and no reader
    of the model (the API's serialiser, a bundle, a report; PostgreSQL's ``->>`` for a
    NUL) can write it out again. The registry checks with it before it stores anything.
    A new model's feature names are checked further (:func:`check_feature_names`)."""
    for column, value in (
        (model_versions.c.dataset_version, dataset_version),
        (model_versions.c.study, study),
    ):
        limit = _length(column)
        if value is not None and (len(value) > limit or "\x00" in value or not _utf8(value)):
            raise InvalidValueError(
                f"`{column.name}` must be at most {limit} characters, without NUL or unpaired "
                f"surrogates, got {len(value)} characters: {value[:80]!r}"
            )
    for name, tree in (
        ("feature_names", list(feature_names)),
        ("hyperparameters", hyperparameters),
        ("details", details),
    ):
        found = _unencodable(name, tree)
        if found is not None:
            where, text = found
            raise InvalidValueError(
                f"{where} must be text UTF-8 can encode, got {text[:80]!r}: an unpaired "
                "surrogate (a byte the locale could not decode reaches Python as one)"
            )
        if tree is not None:
            storable_json(tree, field=name)  # no NUL: as events' and alerts' JSON


def check_feature_names(feature_names: Sequence[str]) -> None:
    """Refuse a new model's ``feature_names`` when there are more than
    :data:`MAX_FEATURE_NAMES`, or one is not 1 to :data:`MAX_NAME` printable characters, as
    model names are: each is a ``feature`` label of the drift metrics (a scrape's
    ``label_value_length_limit`` fails the whole scrape, not the one series), is stored
    with every drift evaluation, and is shown on the dashboard and in messages, where a
    newline forges a log line, an escape sequence restyles a terminal and a bidi
    override reorders what is read. The message quotes a long value shortened. Only a new
    model's: one stored before the rule keeps taking versions (its re-tuned ones too)."""
    if len(feature_names) > MAX_FEATURE_NAMES:
        raise InvalidValueError(
            f"`feature_names` must list at most {MAX_FEATURE_NAMES} names, got {len(feature_names)}"
        )
    for i, name in enumerate(feature_names):
        if not (1 <= len(name) <= MAX_NAME and name.isprintable()):
            raise InvalidValueError(
                f"`feature_names[{i}]` {_FEATURE_NAME_RULE}, got {len(name)} characters: "
                f"{name[:80]!r}"
            )


def _unencodable(name: str, tree: Any) -> tuple[str, str] | None:
    """The first string in ``tree`` (a JSON value; keys too, at any depth) that UTF-8
    cannot encode, with where it is as a message names it (a path such as
    ``hyperparameters.grid[1]`` in backquotes, or a key of one); ``None`` when there is
    none. Iterative: any depth is walked."""
    stack: list[tuple[str, Any]] = [(name, tree)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _utf8(item):
                return f"`{path}`", item
        elif isinstance(item, Mapping):
            for key in item:
                if isinstance(key, str) and not _utf8(key):
                    return f"a key of `{path}`", key
            stack.extend((f"{path}.{key}", child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _length(column: Column[Any]) -> int:
    assert isinstance(column.type, String) and column.type.length is not None
    return column.type.length


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _possible_name(name: str) -> bool:
    """Whether a model may be named ``name``: no model is named otherwise, and PostgreSQL
    would refuse a NUL in the query itself (a 400 where SQLite found nothing). Names that
    are paths are refused for new models only: older ones are still found."""
    return 1 <= len(name) <= MAX_NAME and name.isprintable()
