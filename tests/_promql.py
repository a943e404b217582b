"""PromQL as the shipped rules and dashboard write it, read far enough to check what they
read against what tunewatch exports: series names by metric type, label matchers and
grouping labels, and the labels a legend must name (tests/test_configs.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from monitor import ServingMetrics

#: labels Prometheus adds to every scraped series: they vary by replica, not by model
TARGET_LABELS = frozenset({"instance", "job"})
#: the samples each metric type exports, by name suffix, and the labels a suffix adds
_SUFFIXES: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "counter": (("_total", frozenset()),),
    "gauge": (("", frozenset()),),
    "histogram": (("_bucket", frozenset({"le"})), ("_count", frozenset()), ("_sum", frozenset())),
    "summary": (("", frozenset({"quantile"})), ("_count", frozenset()), ("_sum", frozenset())),
}


def exported_series() -> dict[str, frozenset[str]]:
    """Each series name tunewatch exports, by its metric's type (a gauge has no
    ``_total``, a counter no ``_bucket``), with the label names it carries."""
    metrics = ServingMetrics(registry=CollectorRegistry())
    declared = {
        m._name: frozenset(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    exported = {}
    for family in metrics.registry.collect():
        # a collector of its own (read at scrape) declares no labels: its samples carry them
        own = frozenset(label for sample in family.samples for label in sample.labels)
        labels = declared.get(family.name, own)
        for suffix, extra in _SUFFIXES[family.type]:
            exported[family.name + suffix] = labels | extra
    return exported


@dataclass(frozen=True)
class _Vector:
    """What an instant or range vector expression returns: the label names of its series,
    and those a ``=`` matcher pins to one value (the same in every series)."""

    labels: frozenset[str]
    pinned: frozenset[str] = frozenset()


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
    | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){}\[\],])
    )""",
    re.VERBOSE,
)
#: binary operators by precedence (higher binds tighter); ``^`` is right-associative
_BINARY = {"or": 1, "and": 2, "unless": 2, "atan2": 5, "^": 6}
_BINARY |= dict.fromkeys(("==", "!=", "<=", "<", ">=", ">"), 3)
_BINARY |= dict.fromkeys(("+", "-"), 4) | dict.fromkeys(("*", "/", "%"), 5)
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "group"}
_PARAMETRIC = {"topk", "bottomk", "quantile"}  # a parameter before the vector
#: functions that return their vector argument's series, labels and all
_PRESERVING = {
    *("rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes"),
    *("last_over_time", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time"),
    *("abs", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max", "sqrt", "exp"),
    *("ln", "log2", "log10", "predict_linear", "sort", "sort_desc"),
}


class _PromQL:
    """A recursive-descent reader of the PromQL the rules and the dashboard use, checking
    as it reads: each selector names a series tunewatch exports and matches only its
    labels, and ``by``/``without``/``on``/``ignoring``/``group_left`` name labels of what
    they aggregate or match (``errors``). What it cannot read (a subquery, an unknown
    function) raises: extend it rather than let a query
    pass unchecked. Label sets are what the expression returns (:class:`_Vector`;
    ``None``: a scalar), as Prometheus computes them."""

    def __init__(self, expr: str, exported: dict[str, frozenset[str]]) -> None:
        self.expr = expr
        self.exported = exported
        self.errors: list[str] = []
        self.tokens: list[str] = []
        pos = 0
        while expr[pos:].strip():
            match = _TOKEN.match(expr, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
            self.tokens.append(match.group(match.lastgroup or ""))
            pos = match.end()
        self.pos = 0

    def read(self) -> _Vector | None:
        result = self._expression(0)
        if self.pos != len(self.tokens):
            raise ValueError(f"unread {self.tokens[self.pos :]} in {self.expr!r}")
        return result

    # -- tokens
    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected or 'more'} at {token!r} in {self.expr!r}")
        self.pos += 1
        return token

    def _accept(self, token: str) -> bool:
        if self._peek() == token:
            self.pos += 1
            return True
        return False

    def _label_list(self) -> frozenset[str]:
        self._take("(")
        labels = []
        while not self._accept(")"):
            labels.append(self._take())
            self._accept(",")
        return frozenset(labels)

    def _check(self, labels: frozenset[str], has: frozenset[str], where: str) -> None:
        unknown = labels - has - TARGET_LABELS
        if unknown:
            self.errors.append(f"{where} names {sorted(unknown)}, not among {sorted(has)}")

    # -- grammar
    def _expression(self, least: int) -> _Vector | None:
        lhs = self._unary()
        while (op := self._peek()) in _BINARY and _BINARY[op] >= least:
            self._take()
            self._accept("bool")
            matching, match_labels = None, frozenset[str]()
            if self._peek() in ("on", "ignoring"):
                matching, match_labels = self._take(), self._label_list()
            group, included = None, frozenset[str]()
            if self._peek() in ("group_left", "group_right"):
                group = self._take()
                if self._peek() == "(":
                    included = self._label_list()
            rhs = self._expression(_BINARY[op] + (op != "^"))
            lhs = self._binary(op, lhs, rhs, matching, match_labels, group, included)
        return lhs

    def _unary(self) -> _Vector | None:
        if self._accept("-") or self._accept("+"):
            return self._unary()
        return self._primary()

    def _primary(self) -> _Vector | None:
        token = self._take()
        if token == "(":
            inner = self._expression(0)
            self._take(")")
            if self._peek() == "[":
                raise ValueError(f"a subquery is not read here: {self.expr!r}")
            return inner
        if re.fullmatch(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?", token):
            return None
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", token):
            raise ValueError(f"unexpected {token!r} in {self.expr!r}")
        if token in _AGGREGATIONS | _PARAMETRIC:
            return self._aggregation(token)
        if self._peek() == "(":
            return self._call(token)
        return self._selector(token)

    def _selector(self, name: str) -> _Vector:
        labels = self.exported.get(name)
        if labels is None:
            self.errors.append(f"{name} is not a series tunewatch exports")
            labels = frozenset()
        pinned = set()
        if self._accept("{"):
            while not self._accept("}"):
                label, op, value = self._take(), self._take(), self._take()
                if op not in ("=", "!=", "=~", "!~") or value[0] not in "\"'":
                    raise ValueError(f"cannot read the matcher {label}{op}{value} of {name}")
                self._check(frozenset({label}), labels, f"{name}'s matcher")
                if op == "=":
                    pinned.add(label)
                self._accept(",")
        if self._accept("["):
            self._take()  # the range
            if self._peek() == ":":
                raise ValueError(f"a subquery is not read here: {self.expr!r}")
            self._take("]")
        if self._accept("offset"):
            self._take()
        every = labels | TARGET_LABELS
        return _Vector(every, frozenset(pinned) & every)

    def _aggregation(self, op: str) -> _Vector:
        grouping = self._take() if self._peek() in ("by", "without") else None
        labels = self._label_list() if grouping else frozenset()
        self._take("(")
        if op in _PARAMETRIC:
            self._expression(0)
            self._take(",")
        inner = self._expression(0)
        self._take(")")
        if grouping is None and self._peek() in ("by", "without"):
            grouping = self._take()
            labels = self._label_list()
        if inner is None:
            raise ValueError(f"{op} of a scalar in {self.expr!r}")
        if grouping is None:
            return _Vector(frozenset())
        self._check(labels, inner.labels, f"{op} {grouping} ({', '.join(sorted(labels))})")
        if grouping == "by":
            return _Vector(labels, inner.pinned & labels)
        return _Vector(inner.labels - labels, inner.pinned - labels)

    def _call(self, function: str) -> _Vector | None:
        self._take("(")
        if function == "label_replace":
            return self._label_replace()
        args = []
        while not self._accept(")"):
            args.append(self._expression(0))
            self._accept(",")
        vectors = [a for a in args if a is not None]
        if function in _PRESERVING and len(vectors) == 1:
            return vectors[0]
        if function == "histogram_quantile" and len(args) == 2 and args[1] is not None:
            buckets = args[1]
            if "le" not in buckets.labels:
                self.errors.append("histogram_quantile of series without `le`")
            return _Vector(buckets.labels - {"le"}, buckets.pinned - {"le"})
        if function in ("time", "scalar"):
            return None
        raise ValueError(f"{function}() is not read here: {self.expr!r}")

    def _label_replace(self) -> _Vector:
        """``label_replace(v, "dst", "replacement", "src", "regex")``, after its ``(``:
        ``v``'s labels and ``dst``, which a replacement naming no group pins."""
        inner = self._expression(0)
        strings = []
        for _ in range(4):
            self._take(",")
            token = self._take()
            if token[0] not in "\"'":
                raise ValueError(f"label_replace takes strings, got {token!r} in {self.expr!r}")
            strings.append(token[1:-1])
        self._take(")")
        if inner is None:
            raise ValueError(f"label_replace of a scalar in {self.expr!r}")
        dst, replacement, src, _ = strings
        if src:
            self._check(frozenset({src}), inner.labels, "label_replace's source label")
        pinned = inner.pinned | {dst} if "$" not in replacement else inner.pinned - {dst}
        return _Vector(inner.labels | {dst}, frozenset(pinned))

    def _binary(
        self,
        op: str,
        lhs: _Vector | None,
        rhs: _Vector | None,
        matching: str | None,
        match_labels: frozenset[str],
        group: str | None,
        included: frozenset[str],
    ) -> _Vector | None:
        if lhs is None or rhs is None:  # a scalar on one side: the other side's series
            return lhs if rhs is None else rhs
        where = f"`{op}`"
        if matching is None:
            if lhs.labels != rhs.labels:
                self.errors.append(
                    f"{where} matches on every label, but its sides have "
                    f"{sorted(lhs.labels)} and {sorted(rhs.labels)}"
                )
        elif matching == "on":
            self._check(match_labels, lhs.labels, f"{where} on, left side,")
            self._check(match_labels, rhs.labels, f"{where} on, right side,")
        else:
            self._check(match_labels, lhs.labels | rhs.labels, f"{where} ignoring")
        if op in ("and", "unless"):
            return lhs
        if op == "or":
            return _Vector(lhs.labels | rhs.labels, lhs.pinned & rhs.pinned)
        if group is not None:
            many, one = (lhs, rhs) if group == "group_left" else (rhs, lhs)
            self._check(included, one.labels, f"{where} {group}")
            return _Vector(many.labels | included, many.pinned)
        if matching == "on":  # one-to-one on some labels: the result keeps those only
            return _Vector(lhs.labels & match_labels, lhs.pinned & match_labels)
        if matching == "ignoring":
            return _Vector(lhs.labels - match_labels, lhs.pinned - match_labels)
        return lhs


def read_query(expr: str, exported: dict[str, frozenset[str]]) -> tuple[_Vector | None, list[str]]:
    """``expr``'s series (``None``: a scalar) and what it reads that tunewatch does not
    export (series, labels)."""
    reader = _PromQL(expr, exported)
    return reader.read(), reader.errors


def legend_errors(expr: str, legend: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """What is wrong with ``legend`` naming ``expr``'s series: a label whose value differs
    between them that it leaves out (two models' series drawn under one name when the
    dashboard shows "All"), or one the query does not return (drawn empty)."""
    series, errors = read_query(expr, exported)
    named = frozenset(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    labels = series.labels if series is not None else frozenset()
    varying = labels - (series.pinned if series is not None else frozenset()) - TARGET_LABELS
    if varying - named:
        errors.append(f"legend {legend!r} leaves out {sorted(varying - named)}")
    if named - labels:
        errors.append(f"legend {legend!r} names {sorted(named - labels)}, not returned")
    return errors
