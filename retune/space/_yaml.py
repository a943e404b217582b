"""The YAML every tunewatch file is read in: YAML 1.2's booleans and numbers, no key
given twice in a mapping. Configs and search spaces alike go through :func:`read_yaml`,
and its errors are worded by :func:`describe_yaml_error`: line, column and what was
wrong, never the text of the line (a config's holds a database password)."""

from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives a key twice, which YAML forbids and PyYAML reads silently (the
    last one wins). ``path`` is the key's dotted path; the message starts with it."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class YAMLSyntaxError(yaml.YAMLError):
    """Text :func:`read_yaml` cannot read; its message, :func:`describe_yaml_error`'s,
    names the line and column and quotes none of the text."""


def describe_yaml_error(exc: yaml.YAMLError, text: str) -> str:
    """``exc``, raised reading ``text``, as "line L, column C: <problem> (<context> at
    line L2, column C2)".

    PyYAML's own message quotes about 75 characters of the offending line around a
    caret: a config's mistyped ``store.url`` was printed with its password. Its problem
    and context are PyYAML's wording, naming at most one character, a tag or an anchor."""
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [exc.problem or exc.context or "not readable"]
        if exc.problem_mark is not None:
            parts.insert(0, f"{_where(exc.problem_mark.line, exc.problem_mark.column)}: ")
        if exc.problem and exc.context:
            mark = exc.context_mark
            at = "" if mark is None else f" at {_where(mark.line, mark.column)}"
            parts.append(f" ({exc.context}{at})")
        if exc.note:
            parts.append(f"; {exc.note}")
        return "".join(parts)
    if isinstance(exc, yaml.reader.ReaderError):  # a control character, named by its code
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        return f"{_where(line, column)}: unacceptable character #x{exc.character:04x}: {exc.reason}"
    return str(exc)  # ours (DuplicateKeyError): a key path and line numbers


def _where(line: int, column: int) -> str:
    """0-based ``line`` and ``column`` as an editor counts them."""
    return f"line {line + 1}, column {column + 1}"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans, ``true`` and ``false`` only, that
    refuses a key given twice in a mapping.

    YAML 1.1 also reads unquoted ``on``/``off``/``yes``/``no`` as booleans, so a
    trigger's ``on: drift_detected`` became the key ``True``. A key given twice was read
    as its last value: ``auth: {disabled: false, disabled: true}`` switched auth off."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(self, node)
        return super().construct_document(node)


def _refuse_duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Raise ``DuplicateKeyError`` naming the key path and both lines of the first key
    given twice in one mapping. A merge key's (``<<: *base``) entries are defaults the
    mapping's own keys override, not duplicates; but a key two merged mappings give
    differently, and a second ``<<``, are refused: PyYAML 6 kept one of the two values by
    the key string's identity, so CPython's interning chose it. Each node is visited once,
    however many aliases name it."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        prefix = f"{path}." if path else ""
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{prefix}{i}") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE or not isinstance(key, yaml.ScalarNode):
                    stack.append((value, path))
                    continue
                name = loader.construct_object(key)
                line = key.start_mark.line + 1
                if name in lines:
                    raise DuplicateKeyError(
                        f"{prefix}{key.value}",
                        f"a key may be given once in a mapping, got it at lines "
                        f"{lines[name]} and {line} (YAML readers keep one of them silently)",
                    )
                lines[name] = line
                stack.append((value, f"{prefix}{key.value}"))
            _refuse_disagreeing_merges(loader, node, prefix, set(lines))


_MERGE = "tag:yaml.org,2002:merge"


def _merged(node: yaml.MappingNode) -> list[yaml.MappingNode]:
    """The mappings ``node``'s merge keys name, in order (other values PyYAML refuses)."""
    merged: list[yaml.MappingNode] = []
    for key, value in node.value:
        if key.tag == _MERGE:
            items = value.value if isinstance(value, yaml.SequenceNode) else [value]
            merged.extend(item for item in items if isinstance(item, yaml.MappingNode))
    return merged


def _refuse_disagreeing_merges(
    loader: yaml.SafeLoader, node: yaml.MappingNode, prefix: str, own: set[Any]
) -> None:
    """Refuse a key, not given in ``node`` itself, that two of its merged mappings give
    with different values, and a second ``<<`` in ``node``."""
    found: dict[int, dict[Any, tuple[yaml.Node, yaml.Node]]] = {}

    def keys(mapping: yaml.MappingNode) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
        # A mapping's keys with their key and value nodes, its merged ones included.
        if id(mapping) not in found:
            found[id(mapping)] = {}  # a mapping merging itself: PyYAML's to refuse
            given: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
            for source in _merged(mapping):
                for name, pair in keys(source).items():
                    given.setdefault(name, pair)
            for key, value in mapping.value:
                if key.tag != _MERGE and isinstance(key, yaml.ScalarNode):
                    given[loader.construct_object(key)] = (key, value)
            found[id(mapping)] = given
        return found[id(mapping)]

    merged: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
    for source in _merged(node):
        for name, (key, value) in keys(source).items():
            first_key, first_value = merged.setdefault(name, (key, value))
            if name not in own and first_value is not value:
                raise DuplicateKeyError(
                    f"{prefix}{key.value}",
                    f"merged mappings disagree: both give it, at lines "
                    f"{first_key.start_mark.line + 1} and {key.start_mark.line + 1} (YAML "
                    "readers keep either one); give it in one of them, or in this mapping",
                )
    merges = [key.start_mark.line + 1 for key, _ in node.value if key.tag == _MERGE]
    if len(merges) > 1:
        raise DuplicateKeyError(
            f"{prefix}<<",
            f"a key may be given once in a mapping, got it at lines {merges[0]} and "
            f"{merges[1]}; merge several mappings with one: `<<: [*a, *b]`",
        )


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An integer as YAML 1.2 reads it: ``010`` is ten, where YAML 1.1 read eight."""
    text = str(loader.construct_scalar(node))
    try:
        return int(text[2:], 16) if text.startswith("0x") else int(text, 10)
    except ValueError:  # an explicit `!!int` on other text, not quoted: it may hold a password
        raise yaml.constructor.ConstructorError(
            None, None, "a value tagged `!!int` must be an integer", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    """A float; an explicit ``!!float`` on other text is refused by its line (PyYAML's
    ValueError, a traceback, quoted the text)."""
    try:
        return float(loader.construct_yaml_float(node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, "a value tagged `!!float` must be a number", node.start_mark
        ) from None


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    """A boolean; an explicit ``!!bool`` on other text is refused by its line (PyYAML's
    KeyError, a traceback, quoted the text)."""
    try:
        return bool(loader.construct_yaml_bool(node))
    except KeyError:
        raise yaml.constructor.ConstructorError(
            None, None, "a value tagged `!!bool` must be true or false", node.start_mark
        ) from None


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """A date, or a date and time, refused by its line when there is none such: PyYAML
    reads an unquoted ``2016-12-31T23:59:60Z`` (a leap second) or ``2026-02-30`` as a
    timestamp, and raised datetime's ValueError, not a YAML error: every command ended in
    a traceback. datetime's message names the rule, never the text."""
    found = loader.timestamp_regexp.match(str(loader.construct_scalar(node)))
    if not found:
        # an explicit `!!timestamp` on other text (PyYAML: an AttributeError)
        raise yaml.constructor.ConstructorError(
            None,
            None,
            "a value tagged `!!timestamp` must be a date, or a date and time",
            node.start_mark,
        )
    if int(found["tz_hour"] or 0) > 23 or int(found["tz_minute"] or 0) > 59:
        # datetime reads +05:99 as 6 h 39 min: another instant than the one meant
        raise yaml.constructor.ConstructorError(
            None, None, "a time's offset must be hours 00-23 and minutes 00-59", node.start_mark
        )
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"no such date and time: {exc}", node.start_mark
        ) from None


_NUMBERS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Numbers as YAML 1.2 reads them, of the forms YAML 1.1 reads as numbers too: no base-60
# (`1:30` was 90), binary or `_`, and a leading zero is decimal. PyYAML (YAML 1.1) quotes
# only text YAML 1.1 reads as something else, so a form only YAML 1.2 reads as a number
# (`1e3`, `0o17`, `09`) stays text here, and a config PyYAML wrote reads back the same.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*|0[0-7]+)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?|\.[0-9]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def read_yaml(text: str) -> Any:
    """``text`` read as YAML 1.2 reads it (see :class:`_Loader`); a key given twice in one
    mapping raises :class:`DuplicateKeyError` (a ``yaml.YAMLError``), naming its path; text
    it cannot read, :class:`YAMLSyntaxError` (one too), naming the line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError:
        raise
    except yaml.YAMLError as exc:
        # not chained: PyYAML's error, in a traceback, quotes the line
        raise YAMLSyntaxError(describe_yaml_error(exc, text)) from None
