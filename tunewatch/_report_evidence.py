"""The comparison evidence of a rationale report (:mod:`tunewatch._report`): every test
that decided on the version, or on the version it was tested against, with its
always-valid interval.

Read from two places. The events the comparison loop writes when a test decides
(:data:`EVIDENCE`) hold the evidence of a promotion, a refusal or a rollback. A rollback
watch that ends without a rollback (it passed, or closed undecided) writes no event: its
test in ``comparison_tests``, with the test's latest look, is its record, so the watches
ended before reports read them are shown too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tunewatch._report_document import Section, fmt
from tunewatch._report_search import mapping, sequence
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow

EVIDENCE = (
    "challenger_better",
    "challenger_worse",
    "promotion_blocked",
    "promotion_refused",
    "promotion_failed",
    "srm_detected",
    "rollback_triggered",
    "rollback_failed",
)
#: How a rollback watch ended without an event (its outcome's ``action``), as its row says.
WATCH_ENDINGS = {"watch_passed": "rollback_watch passed", "closed": "rollback_watch closed"}

_Row = tuple[str, str, str]


def evidence_section(store: Store, model: str, version: int) -> Section:
    found: list[tuple[datetime, _Row]] = []
    for e in reversed(store.list_events(model=model, types=EVIDENCE, limit=100_000)):
        role = _role(e.payload, version)
        if role is not None:
            found.append(
                (e.created_at, (e.type + role, e.created_at.isoformat(), _summary(e.payload)))
            )
    found += _watch_rows(ComparisonStore(store), model, version)
    found.sort(key=lambda r: r[0])  # stable: events at one instant keep their order
    if not found:
        return Section("Comparison evidence", text="No comparison has decided on this version.")
    header = ("event", "when", "details")
    return Section(
        "Comparison evidence (always-valid intervals)", table=(header, *(r for _, r in found))
    )


def _watch_rows(
    comparisons: ComparisonStore, model: str, version: int
) -> list[tuple[datetime, _Row]]:
    """The rollback watches of ``version`` (as the promoted champion watched, or as the
    champion it replaced) that ended without a rollback, each with its latest look."""
    rows = []
    for test in comparisons.list_tests(model, kind="rollback_watch"):
        outcome = mapping(test.outcome)
        ending = WATCH_ENDINGS.get(str(outcome.get("action")))
        role = _role(
            {"version": test.challenger_version, "previous": test.champion_version}, version
        )
        if ending is None or role is None:
            continue
        when = test.decided_at or test.updated_at
        payload = _watch_evidence(comparisons, test, outcome)
        rows.append((when, (ending + role, when.isoformat(), _summary(payload))))
    return rows


def _watch_evidence(
    comparisons: ComparisonStore, test: ComparisonTestRow, outcome: dict[str, Any]
) -> dict[str, Any]:
    """A watch's evidence, as a rollback's event holds it: its latest look (none when it
    closed before its first), and the reason it closed."""
    # its kind is the row's event (``rollback_watch passed``)
    evidence: dict[str, Any] = {"test_id": test.id, "previous": test.champion_version}
    look = comparisons.latest_look(test.id)
    if look is not None:
        evidence.update(
            estimate=look.estimate,
            ci=[look.ci_low, look.ci_high],
            n=look.n,
            p_value=look.p_value,
            method=look.method,
        )
    else:
        n = outcome.get("n")
        evidence["n"] = n if type(n) is int else test.n
    if "reason" in outcome:
        evidence["reason"] = outcome["reason"]
    return evidence


def _role(payload: dict[str, Any], version: int) -> str | None:
    """How an evidence event bears on ``version``: ``""`` when it is the version tested (a
    comparison's challenger, a rollback watch's watched champion), the part it played
    when it is the other side of the test (the champion a challenger was compared with,
    the previous champion a rollback would restore), ``None`` when it is neither."""
    if version in (payload.get("challenger_version"), payload.get("version")):
        return ""
    if payload.get("champion_version") == version:
        return f" (as champion, against v{fmt(payload.get('challenger_version'))})"
    if payload.get("previous") == version:
        return f" (as the previous champion, against v{fmt(payload.get('version'))})"
    return None


def _summary(payload: dict[str, Any]) -> str:
    """An evidence row's details: the test that decided first (``test=2 (paired)``), then
    the figures it decided on."""
    keys = (
        "champion_version",
        "previous",
        "estimate",
        "ci",
        "n",
        "p_value",
        "adjusted_p_value",
        "correction",
        "method",
        "guardrails",
        "violations",
        "reason",
        "error",
        "code",
    )
    guarded = isinstance(payload.get("guardrails"), dict)
    return "; ".join(
        (
            *_test(payload),
            *(
                f"{k}={_guardrails(payload[k]) if k == 'guardrails' else fmt(payload[k])}"
                for k in keys
                if k in payload and not (k == "violations" and guarded)  # guardrails list them
            ),
        )
    )


def _test(payload: dict[str, Any]) -> tuple[str, ...]:
    """The test that decided, as GET /v1/models/{m}/comparisons lists it: the comparison
    loop's events hold its id as ``test_id`` (and its ``kind``); ``test`` is the key of
    events of an older format."""
    test = payload.get("test_id", payload.get("test"))
    if test is None:
        return ()
    kind = payload.get("kind")
    return (f"test={fmt(test)}" + (f" ({fmt(kind)})" if kind is not None else ""),)


def _guardrails(value: Any) -> str:
    """A comparison's guardrail outcome (``{"passed", "violations", "notes"}``): passed,
    or failed with its violations, and the notes on what was not checked."""
    guard = mapping(value)
    if not guard:
        return fmt(value)
    violations = sequence(guard.get("violations"))
    outcome = "passed" if guard.get("passed") is True else "failed"
    if violations:
        outcome += ": " + "; ".join(fmt(v) for v in violations)
    notes = sequence(guard.get("notes"))
    return f"{outcome} (notes: {'; '.join(fmt(n) for n in notes)})" if notes else outcome
