"""Rationale reports: why a model version exists and why it serves (Markdown and HTML).

For every version: what triggered it, the data window and its version, the search space
(as the study searched it, whatever its file holds now) and warm-start plan, the trials
and fold scores, the hyperparameter importances, the comparison evidence with intervals
(that of the tests it lost or won as the champion, and of the rollbacks that would
restore it, included), the guardrails, and the decisions with their approvers (a replaced
champion's included) — all read back from the store, so a report can be rebuilt at any
time and always says what the audit log says. The sections on how the version was
searched are built by :mod:`tunewatch._report_search`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tunewatch._config import Config
from tunewatch._governance import promotion_rules
from tunewatch._report_document import Report, Row, Section, fmt
from tunewatch._report_search import (
    importances_section,
    mapping,
    no_history,
    plan_section,
    searched_space,
    sequence,
    space_named,
)
from tunewatch._version_metadata import finite_float
from tunewatch.store import AuditEntry, Store

logger = logging.getLogger(__name__)

#: The longest file name, in bytes, of the usual file systems (ext4, XFS, Btrfs, tmpfs).
NAME_MAX = 255
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


def _trigger_rows(
    details: dict[str, Any], imported: dict[str, Any] | None
) -> tuple[tuple[str, Any], ...]:
    """What made the version: its job's trigger; for a version imported from another
    store, where it came from and the source's trigger (a bundle import moves them under
    ``details.imported``: the job and trigger numbered that store's jobs)."""
    trigger = mapping(details.get("trigger"))
    if imported is None:
        return tuple((str(k), v) for k, v in trigger.items()) or (
            ("registered", "by hand (no tuning job)"),
        )
    origin = mapping(imported.get("origin"))
    source = mapping(imported.get("trigger"))
    return (
        ("imported from", f"{imported.get('model')} v{imported.get('version')}"),
        ("first registered as", f"{origin.get('model')} v{origin.get('version')}"),
        ("stage in the source", imported.get("stage")),
        ("bundle sha256", imported.get("bundle_sha256")),
        ("exported at", imported.get("exported_at")),
        *((f"source trigger {k}", v) for k, v in source.items()),
    )


def _row_counts(
    details: dict[str, Any], imported: dict[str, Any] | None
) -> tuple[tuple[str, Any], ...]:
    if imported is None or "rows" in details:
        return (
            ("rows", details.get("rows")),
            ("of which labelled traffic", details.get("traffic_rows")),
        )
    return (
        ("rows (in the source store)", imported.get("rows")),
        ("of which labelled traffic (in the source store)", imported.get("traffic_rows")),
    )


def build_report(store: Store, config: Config, model: str, version: int) -> Report:
    row = store.get_version(model, version)
    model_row = store.get_model(model)
    d = row.details
    imported = d.get("imported") if isinstance(d.get("imported"), dict) else None
    decisions = _decisions(store, model, version)
    sections = [
        Section(
            "Version",
            rows=(
                ("stage", row.stage),
                *_replaced_by(row.stage, decisions, version),
                ("created", row.created_at.isoformat()),
                ("artefact sha256", row.artefact_sha256),
                ("hyperparameter set", row.hyperparameter_set_id),
                ("parent version", row.parent_version),
                ("study", row.study),
                ("size (bytes)", row.size_bytes),
                ("load memory (bytes)", row.load_memory_bytes),
            ),
        ),
        Section("Trigger", rows=_trigger_rows(d, imported)),
        Section(
            "Data",
            rows=(
                ("dataset version", row.dataset_version),
                *_row_counts(d, imported),
                ("reference snapshot", d.get("reference_sha256")),
                ("reference rows", d.get("reference_rows")),
            ),
        ),
        Section(
            "Search space and hyperparameters",
            rows=(
                ("search space", space_named(d)),
                ("gates for promotion", promotion_rules(model_row, row, config) or "none"),
            ),
            table=(
                ("parameter", "value"),
                *((k, v) for k, v in sorted(row.hyperparameters.items())),
            ),
        ),
        *searched_space(d.get("searched_space")),
        plan_section(d.get("warm_start_plan"), d.get("n_cost_rejected"), no_history(d, imported)),
        Section(
            "Trials and fold scores",
            rows=(
                ("objective", d.get("objective")),
                ("CV scheme", mapping(d.get("cv")).get("scheme")),
                ("CV group column", mapping(d.get("cv")).get("group_column")),
                ("best CV value", d.get("best_value")),
                ("trials", d.get("n_trials")),
                ("pruned", d.get("n_pruned")),
                ("vetoed (fold spread)", d.get("n_vetoed")),
                ("stopped by", d.get("stopped_by")),
                ("fold scores", d.get("fold_scores")),
                ("fold spread", d.get("fold_spread")),
                ("nested CV estimate (outer folds)", _nested(d.get("nested_estimate"))),
            ),
        ),
        importances_section(d.get("importances")),
        Section(
            "Export",
            rows=(
                ("ONNX parity error (max abs)", d.get("parity_error")),
                ("measured p99 latency at batch 1 (s)", d.get("latency_p99_s")),
            ),
        ),
        _evidence_section(store, model, version),
        _decision_section(store, model, version, decisions),
    ]
    return Report(model=model, version=version, sections=tuple(sections))


def _nested(value: Any) -> str | None:
    """The unbiased estimate of ``cv: nested``: the outer folds' mean and spread."""
    estimate = mapping(value)
    mean = finite_float(estimate.get("mean"))
    std = finite_float(estimate.get("std"))
    scores = estimate.get("outer_scores")
    if mean is None or std is None:
        return None
    n = len(scores) if isinstance(scores, list) else "?"
    cold = ", tuned cold" if estimate.get("warm_start") is False else ""
    return f"{mean:.4g} ± {std:.4g} over {n}{cold}"


def _evidence_section(store: Store, model: str, version: int) -> Section:
    rows: list[tuple[str, ...]] = [("event", "when", "details")]
    for e in reversed(store.list_events(model=model, types=EVIDENCE, limit=100_000)):
        role = _role(e.payload, version) if e.type in EVIDENCE else None
        if role is not None:
            rows.append((e.type + role, e.created_at.isoformat(), _summary(e.payload)))
    if len(rows) == 1:
        return Section("Comparison evidence", text="No comparison has decided on this version.")
    return Section("Comparison evidence (always-valid intervals)", table=tuple(rows))


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
        f"{k}={_guardrails(payload[k]) if k == 'guardrails' else fmt(payload[k])}"
        for k in keys
        if k in payload and not (k == "violations" and guarded)  # the guardrails list them
    )


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


def _decision_section(
    store: Store, model: str, version: int, decisions: Sequence[AuditEntry]
) -> Section:
    rows: list[tuple[str, ...]] = [("when", "action", "by", "reason")]
    for a in decisions:
        rows.append(
            (a.at.isoformat(), _action(a, version), a.actor, str(a.details.get("reason", "")))
        )
    approvals = store.list_approvals(model=model, version=version, limit=1000)
    extra: Sequence[Row] = tuple(
        (
            f"approval {a.id}",
            f"{a.status} by {a.decided_by or '—'} (requested by "
            f"{a.requested_by}; rules: {', '.join(a.rules)})"
            # why: a request closed undecided (superseded, its version pulled) read as
            # the named person's rejection
            + (f": {a.decision_reason}" if a.decision_reason else ""),
        )
        for a in approvals
    )
    return Section("Decisions and approvals", rows=tuple(extra), table=tuple(rows))


def _decisions(store: Store, model: str, version: int) -> list[AuditEntry]:
    """The audit entries about ``version``, oldest first: those targeting it, the
    rollbacks that rolled it back (audited against the version they restored, with the
    rolled-back one in ``details["rolled_back"]``) and the promotions that replaced it as
    champion (audited against the promoted version, with it in ``details["previous"]``)."""
    own = store.audit_log(limit=100_000, target=f"{model}/v{version}")
    rolled_back = [
        a
        for a in store.audit_log(limit=100_000, model=model, action="rollback")
        if a.details.get("rolled_back") == version
    ]
    replaced = [
        a
        for a in store.audit_log(limit=100_000, model=model, action="promote")
        if _replaced(a, version)
    ]
    entries = {a.id: a for a in (*own, *rolled_back, *replaced)}
    return sorted(entries.values(), key=lambda a: a.id)


def _replaced(entry: AuditEntry, version: int) -> bool:
    """Whether ``entry`` is a promotion that replaced ``version`` as champion."""
    d = entry.details
    return (
        entry.action == "promote"
        and d.get("previous") == version
        and d.get("version") not in (None, version)
    )


def _replaced_by(stage: str, decisions: Sequence[AuditEntry], version: int) -> tuple[Row, ...]:
    """For a version that is no longer the champion, the promotion that last replaced it:
    the successor, who promoted it, when and why."""
    last = next((a for a in reversed(decisions) if _replaced(a, version)), None)
    if last is None or stage == "champion":
        return ()
    why = last.details.get("reason")
    tail = f": {why}" if why else ""
    successor = f"v{last.details['version']} (by {last.actor}, at {last.at.isoformat()}{tail})"
    return (("replaced by", successor),)


def _action(entry: AuditEntry, version: int) -> str:
    d = entry.details
    if entry.action == "rollback" and {"version", "rolled_back"} <= d.keys():
        return f"rollback (v{d['rolled_back']} rolled back, v{d['version']} restored)"
    if _replaced(entry, version):
        return f"replaced by v{d['version']} (promote)"
    return entry.action


def write_report(store: Store, config: Config, model: str, version: int) -> tuple[Path, Path]:
    """Write ``<data_dir>/reports/<model>-v<version>.md`` and ``.html`` (see
    :func:`report_stem` for the file name)."""
    report = build_report(store, config, model, version)
    folder = Path(config.data_dir).resolve() / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = report_stem(model, version)
    text, page = folder / f"{stem}.md", folder / f"{stem}.html"
    text.write_text(report.markdown(), encoding="utf-8")
    page.write_text(report.html(), encoding="utf-8")
    return text, page


def refresh_reports(store: Store, config: Config, model: str, versions: Iterable[int]) -> None:
    """Write the reports of ``versions`` after a committed promotion, approval or
    rollback. One that cannot be written, for whatever reason, is logged with its
    traceback, not raised: the change it explains stands (raised, the request that
    committed it would answer 500 and invite a retry), and ``GET …/report`` and
    ``tunewatch report`` rebuild it from the store."""
    for version in versions:
        try:
            write_report(store, config, model, version)
        except Exception:  # a boundary after the commit: log it, write the others
            logger.exception(
                "model=%s version=%d: writing the rationale report failed (the change "
                "stands; the report is rebuilt from the store on request)",
                model,
                version,
            )


def report_stem(model: str, version: int) -> str:
    """The reports' file name without its suffix: ``<model>-v<version>``, with '%' and
    the path separators of a model named before names could not be paths escaped. A
    name that would make the file name longer than :data:`NAME_MAX` bytes is cut, and the
    first 16 hex digits of its sha256 keep it apart from the names it shares the cut
    part with."""
    escaped = model.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    suffix = f"-v{version}"
    if len(f"{escaped}{suffix}.html".encode()) <= NAME_MAX:
        return escaped + suffix
    tail = f"~{hashlib.sha256(model.encode()).hexdigest()[:16]}{suffix}"
    room = NAME_MAX - len(f"{tail}.html".encode())
    return escaped.encode()[:room].decode("utf-8", errors="ignore") + tail
