"""Every event type the daemon records is in :data:`tunewatch._event_types.RECORDED`, the
list ``GET /v1/events?type=`` checks a filter against: a type recorded but missing from
it would be refused as unknown until an event of it was stored.

The check reads the code, not a run: every call that writes an event's type is found
with ``ast`` (``add_event``, ``add_event_in``, ``add_event_after``, ``add_event_after_in``
by their ``type=``; ``audit_once`` by its ``action=``, also the event's type; a
dispatcher's ``handle``/``handle_after`` by the event it records; an ``EventPolicy`` by
the event it raises), and its value is read: a string literal, a module-level string
constant (of its module or one it imports from ``tunewatch``) or a conditional of those.
Any other value (an f-string, a variable, an attribute) must be listed in
:data:`DYNAMIC` with the types it can take, or as forwarded (a parameter whose callers
are checked here), so a new kind of site fails until someone says what it records."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunewatch._actions import EVENT_TYPES, OUTCOMES
from tunewatch._event_types import RECORDED

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tunewatch"

# the calls writing an event's type, and the keyword holding it
_BY_KEYWORD = {
    "add_event": "type",
    "add_event_in": "type",
    "add_event_after": "type",
    "add_event_after_in": "type",
    "audit_once": "action",
    "EventPolicy": "event",
}
# a dispatcher's methods recording their second argument (``event``) as the event's type
_DISPATCHER_METHODS = {"handle", "handle_after"}

# A value of a site that is not a constant: (module, enclosing function, expression) ->
# the types it can take, or FORWARDED: a parameter handed on from callers that are
# themselves sites read here.
FORWARDED = ("<forwarded: its callers are checked>",)
DYNAMIC: dict[tuple[str, str, str], tuple[str, ...]] = {
    # Store.add_event / add_event_after / audit_once hand on their callers' type
    ("tunewatch/store/_front_audit.py", "AuditFront.add_event", "type"): FORWARDED,
    ("tunewatch/store/_front_audit.py", "AuditFront.add_event_after", "type"): FORWARDED,
    ("tunewatch/store/_front_audit.py", "AuditFront.audit_once", "action"): FORWARDED,
    ("tunewatch/store/_events.py", "add_event_after_in", "type"): FORWARDED,
    # Dispatcher.handle / handle_after record the event their callers name
    ("tunewatch/_actions.py", "Dispatcher.handle", "event"): FORWARDED,
    ("tunewatch/_actions.py", "Dispatcher.handle_after", "event"): FORWARDED,
    # an evaluation policy's event: each EventPolicy(event=...) is a site read here
    ("tunewatch/_evaluation_events.py", "PolicyEvents.decide", "policy.event"): FORWARDED,
    # what became of a trigger's action
    ("tunewatch/_actions.py", "Dispatcher.record", "f'action_{outcome.status}'"): tuple(
        f"action_{o}" for o in OUTCOMES
    ),
    # an approval decided: status = "approved" if approve else "rejected"
    ("tunewatch/store/_governance.py", "decide_approval", "f'approval_{status}'"): (
        "approval_approved",
        "approval_rejected",
    ),
    # kind = NOT_SERVED if rules else SERVED
    ("tunewatch/_approval_gate.py", "ApprovalGate._record", "kind"): (
        "split_not_served",
        "split_served",
    ),
    # a comparison's decision other than "continue" (shadow.stats Decision)
    ("tunewatch/comparison/_decisions.py", "Decisions._notify", "test.decision"): (
        "challenger_better",
        "challenger_worse",
    ),
}


@dataclass(frozen=True)
class Site:
    module: str  # the path under the repository
    line: int
    function: str  # the enclosing function's qualified name, "" at module level
    expr: ast.expr

    @property
    def where(self) -> str:
        return f"{self.module}:{self.line} ({self.function or 'module'})"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.module, self.function, ast.unparse(self.expr))


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_dispatcher(call: ast.Call) -> bool:
    """``x.dispatcher.handle(...)``, ``dispatcher.handle(...)``, ``Dispatcher(...).handle``."""
    assert isinstance(call.func, ast.Attribute)
    return "dispatcher" in ast.unparse(call.func.value).lower()


def _written_type(call: ast.Call) -> ast.expr | None:
    """The expression a call writes as an event's type, None for any other call."""
    name = _call_name(call)
    if name in _BY_KEYWORD:
        for kw in call.keywords:
            if kw.arg == _BY_KEYWORD[name]:
                return kw.value
        # a positional type, or a ``**kwargs``: not a form these calls take
        raise AssertionError(f"{name}() without {_BY_KEYWORD[name]}=: {ast.unparse(call)}")
    if name in _DISPATCHER_METHODS and _is_dispatcher(call):
        for kw in call.keywords:
            if kw.arg == "event":
                return kw.value
        if len(call.args) >= 2:
            return call.args[1]
        raise AssertionError(f"a dispatcher's {name}() naming no event: {ast.unparse(call)}")
    return None


class _Sites(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: list[Site] = []

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = _scoped
    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped

    def visit_Call(self, node: ast.Call) -> None:
        expr = _written_type(node)
        if expr is None:
            expr = _handed_on_type(node)
        if expr is not None:
            function = ".".join(self.scope)
            self.found.append(Site(self.module, node.lineno, function, expr))
        self.generic_visit(node)


def _handed_on_type(call: ast.Call) -> ast.expr | None:
    """The type a recording method handed to another call writes, as in
    ``run_in_threadpool(ctx.dispatcher.handle, model, "manual", …)``: the method called
    with the arguments that follow it (a site :func:`_written_type` never saw)."""
    for i, arg in enumerate(call.args):
        name = arg.attr if isinstance(arg, ast.Attribute) else getattr(arg, "id", None)
        if name in _BY_KEYWORD or name in _DISPATCHER_METHODS:
            assert isinstance(arg, ast.Attribute | ast.Name)
            func = arg if isinstance(arg, ast.Attribute) else ast.Attribute(arg, name, ast.Load())
            handed = ast.Call(func=func, args=call.args[i + 1 :], keywords=call.keywords)
            return _written_type(handed)
    return None


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's string constants (``NAME = "text"``, annotated or not)."""
    found: dict[str, str] = {}
    for node in tree.body:
        target: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            if isinstance(value.value, str):
                found[target.id] = value.value
    return found


def _module_path(dotted: str) -> str | None:
    base = ROOT / Path(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def _names(module: str, trees: dict[str, ast.Module]) -> dict[str, str]:
    """The string constants a module may name: its own and those it imports by name
    from another module of the package."""
    tree = trees[module]
    names = _constants(tree)
    package = module.rsplit("/", 1)[0].replace("/", ".")
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            dotted = f"{base}.{node.module}" if node.module else base
        else:
            dotted = node.module or ""
        source = _module_path(dotted)
        if source is None or source not in trees:
            continue
        theirs = _constants(trees[source])
        for alias in node.names:
            if alias.name in theirs:
                names[alias.asname or alias.name] = theirs[alias.name]
    return names


def _resolved(expr: ast.expr, names: dict[str, str]) -> tuple[str, ...] | None:
    """The types ``expr`` can take when it is made of constants, else None."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return (expr.value,)
    if isinstance(expr, ast.Name) and expr.id in names:
        return (names[expr.id],)
    if isinstance(expr, ast.IfExp):
        body, orelse = _resolved(expr.body, names), _resolved(expr.orelse, names)
        if body is not None and orelse is not None:
            return body + orelse
    return None


def _recorded_types() -> tuple[dict[str, list[str]], list[Site], set[tuple[str, str, str]]]:
    """Every type a site records (type -> where), the sites neither constant nor listed
    in DYNAMIC, and the DYNAMIC entries met."""
    trees = dict(_modules())
    recorded: dict[str, list[str]] = {}
    unlisted: list[Site] = []
    met: set[tuple[str, str, str]] = set()
    for module, tree in trees.items():
        visitor = _Sites(module)
        visitor.visit(tree)
        names = _names(module, trees) if visitor.found else {}
        for site in visitor.found:
            values = _resolved(site.expr, names)
            if values is None:
                if site.key not in DYNAMIC:
                    unlisted.append(site)
                    continue
                met.add(site.key)
                values = DYNAMIC[site.key]
                if values == FORWARDED:
                    continue
            for value in values:
                recorded.setdefault(value, []).append(site.where)
    return recorded, unlisted, met


def test_every_event_type_the_code_records_is_enumerated() -> None:
    recorded, _, _ = _recorded_types()
    missing = {t: where for t, where in recorded.items() if t not in RECORDED}
    assert missing == {}, (
        "event types recorded but missing from tunewatch._event_types (GET /v1/events "
        f"would refuse them as unknown): {missing}"
    )


def test_every_site_recording_a_computed_event_type_says_what_it_records() -> None:
    _, unlisted, met = _recorded_types()
    assert [f"{s.where}: {s.key}" for s in unlisted] == [], (
        "a site records an event type that is not a constant: list its key in DYNAMIC "
        "with the types it can take (and add them to tunewatch._event_types)"
    )
    assert set(DYNAMIC) - met == set(), "DYNAMIC lists sites the code no longer has"


def test_every_enumerated_type_is_recorded_somewhere() -> None:
    """The enumeration lists what the daemon records now, not what it once did (a type
    no longer recorded still filters while the store holds events of it)."""
    recorded, _, _ = _recorded_types()
    assert sorted(set(RECORDED) - set(recorded)) == []


def test_the_enumeration_holds_the_trigger_events_once_each() -> None:
    assert set(EVENT_TYPES) <= set(RECORDED)
    assert len(RECORDED) == len(set(RECORDED))


@pytest.mark.parametrize(
    "source",
    [
        'store.add_event(model=m, type="brand_new", payload={})',
        'add_event_in(conn, model=m, type="brand_new", payload={})',
        'self.dispatcher.handle(model, "brand_new", {})',
        'store.audit_once(actor=a, action="brand_new", target=m, details={}, recent=1)',
    ],
    ids=["add_event", "add_event_in", "dispatcher-handle", "audit_once"],
)
def test_the_walk_reads_a_new_literal_event_type(source: str) -> None:
    """The checks above see a new site: the walk finds its literal type."""
    call = ast.parse(source).body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    expr = _written_type(call.value)
    assert expr is not None and _resolved(expr, {}) == ("brand_new",)
    assert "brand_new" not in RECORDED


def test_the_walk_sends_an_f_string_type_to_dynamic() -> None:
    call = ast.parse('store.add_event(model=m, type=f"x_{y}", payload={})').body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    expr = _written_type(call.value)
    assert expr is not None and _resolved(expr, {}) is None
