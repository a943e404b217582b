"""Rationale reports: why a model version exists and why it serves (Markdown and HTML).

For every version: its tags, what triggered it, the data window and its version, the
search space (as the study searched it, whatever its file holds now) and warm-start plan,
the trials, the CV they were scored with (scheme, folds, seed) and the fold scores, the
hyperparameter importances, the library versions it was exported with, the comparison
evidence with intervals (that of the tests it lost or won as the champion, of the
rollbacks that would restore it, and of the rollback watches that confirmed it,
included), the guardrails, and the decisions with their approvers (a replaced champion's
included). A version imported from another store says where from (the source's study,
job and trigger, the bundle, who imported it) and when the source store created it, and
has the import among its decisions. All is read back from the store, so a report can be
rebuilt at any time and always says what the audit log says.

A version's details are free JSON its registrant writes: the report presents an import,
a tuning job and its trigger only as the audit log confirms them (an import's entry
registered the version; the job registered it), and otherwise says who registered the
version by hand and shows what its details claim, and its figures, as supplied by the
registrant, not verified (:mod:`tunewatch._report_provenance`).
The sections on how the version was searched are built by
:mod:`tunewatch._report_search`, the comparison evidence by
:mod:`tunewatch._report_evidence`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tunewatch._approval_rules import promotion_rules
from tunewatch._config import Config
from tunewatch._errors import TunewatchError, os_reason
from tunewatch._objective_display import known, score, scores, with_params
from tunewatch._report_document import EXACT_VALUES, Report, Row, Section, exact, fmt
from tunewatch._report_evidence import evidence_section
from tunewatch._report_provenance import (
    IMPORTS,
    Provenance,
    bundled_as,
    labelled,
    provenance,
    registered_by_import,
    row_counts,
    source_created,
    supplied_section,
    trigger_rows,
    unverified,
)
from tunewatch._report_search import (
    importances_section,
    mapping,
    no_history,
    plan_section,
    searched_space,
    space_named,
)
from tunewatch._report_source_history import history_of, history_sections
from tunewatch._version_metadata import finite_float
from tunewatch.store import AuditEntry, Store

logger = logging.getLogger(__name__)

#: The longest file name, in bytes, of the usual file systems (ext4, XFS, Btrfs, tmpfs).
NAME_MAX = 255


def build_report(store: Store, config: Config, model: str, version: int) -> Report:
    row = store.get_version(model, version)
    model_row = store.get_model(model)
    decisions = _decisions(store, model, version)
    found = provenance(row.details, decisions, version)
    d, imported = found.details(row.details), found.imported
    sections = [
        Section(
            "Version",
            rows=(
                ("stage", row.stage),
                *_replaced_by(row.stage, decisions, version),
                ("created", row.created_at.isoformat()),
                *source_created(imported),
                ("artefact sha256", row.artefact_sha256),
                ("hyperparameter set", row.hyperparameter_set_id),
                ("parent version", row.parent_version),
                (labelled("study", row.study, found), _study(row.study, imported)),
                ("size (bytes)", row.size_bytes),
                ("load memory (bytes)", row.load_memory_bytes),
            ),
        ),
        _tags_section(store, model, version),
        Section("Trigger", rows=trigger_rows(d, found)),
        *supplied_section(found),
        Section(
            "Data",
            rows=(
                ("dataset version", row.dataset_version),
                *row_counts(d, found),
                ("reference snapshot", d.get("reference_sha256")),
                ("reference rows", d.get("reference_rows")),
            ),
        ),
        Section(
            "Search space and hyperparameters",
            rows=(
                (labelled("search space", d.get("search_space"), found), space_named(d)),
                ("gates for promotion", promotion_rules(model_row, row, config) or "none"),
            ),
            table=(
                ("parameter", "value"),
                *((k, exact(v)) for k, v in sorted(row.hyperparameters.items())),
            ),
            text=EXACT_VALUES,
        ),
        *(unverified(s, found) for s in searched_space(d.get("searched_space"))),
        unverified(
            plan_section(
                d.get("warm_start_plan"), d.get("n_cost_rejected"), no_history(d, imported)
            ),
            found,
        ),
        _tuning_section(d, found),
        unverified(importances_section(d.get("importances")), found),
        unverified(
            Section(
                "Export",
                rows=(
                    ("ONNX parity error (max abs)", d.get("parity_error")),
                    ("measured p99 latency at batch 1 (s)", d.get("latency_p99_s")),
                    ("library versions at export", _environment(d.get("environment"))),
                ),
            ),
            found,
        ),
        evidence_section(store, model, version),
        _decision_section(store, model, version, decisions),
        *history_sections(imported),
    ]
    return Report(model=model, version=version, sections=tuple(sections))


def source_history(store: Store, model: str, version: int, *, max_bytes: int) -> dict[str, Any]:
    """What a bundle carries of ``version``'s report (:mod:`tunewatch._report_source_history`):
    its comparison evidence and its decisions and approvals, as the report shows them, in
    about ``max_bytes`` of JSON at most (the oldest rows left out)."""
    decisions = _decisions(store, model, version)
    return history_of(
        evidence_section(store, model, version),
        _decision_section(store, model, version, decisions),
        max_bytes=max_bytes,
    )


def _tuning_section(d: dict[str, Any], found: Provenance) -> Section:
    """The study's trials and the winner's fold scores, in the objective's orientation
    (:mod:`tunewatch._objective_display`: a study stores losses, a ROC AUC negated)."""
    objective = d.get("objective")
    name = known(objective)
    best = d.get("best_value")
    return unverified(
        Section(
            "Trials and fold scores",
            rows=(
                # with its parameters: a best cost under another cost matrix is another
                # figure
                ("objective", with_params(objective, d.get("objective_params"))),
                *_cv_rows(mapping(d.get("cv"))),
                (
                    f"best CV {name or 'loss (lower is better)'}",
                    best if name is None else score(best, name),
                ),
                ("trials", _trials(d.get("n_trials"), d.get("nested"))),
                ("pruned", d.get("n_pruned")),
                ("vetoed (fold spread)", d.get("n_vetoed")),
                ("stopped by", d.get("stopped_by")),
                ("fold scores", _folds(d.get("fold_scores"), name)),
                ("fold spread", d.get("fold_spread")),  # max - min: the same either way
                ("nested CV estimate (outer folds)", _nested(d.get("nested_estimate"), name)),
            ),
        ),
        found,
    )


def _cv_rows(cv: dict[str, Any]) -> tuple[Row, ...]:
    """The CV the study scored trials with: its scheme, folds and seed, a time series'
    gap and test size, nested CV's outer folds, the fold-spread veto. A version tuned
    before versions recorded the folds and the seed shows a dash for them."""
    rows: list[Row] = [
        ("CV scheme", cv.get("scheme")),
        ("CV group column", cv.get("group_column")),
        ("CV folds", cv.get("n_splits")),
    ]
    if "gap" in cv or "test_size" in cv:
        size = cv.get("test_size")
        rows += [
            ("CV time-series gap (rows)", cv.get("gap")),
            ("CV test size (rows)", "the window's rows // (folds + 1)" if size is None else size),
        ]
    outer = mapping(cv.get("outer"))
    if outer:
        rows.append(
            ("CV outer folds", f"{fmt(outer.get('n_splits'))} ({fmt(outer.get('scheme'))})")
        )
    rows.append(("CV seed", cv.get("seed")))
    if "max_fold_spread" in cv:
        spread = cv["max_fold_spread"]
        rows.append(("max fold spread (veto)", "none" if spread is None else spread))
    return tuple(rows)


def _environment(environment: Any) -> str:
    """The library versions the version was fitted and exported with: Python's and
    tunewatch's first, then each package's, as recorded."""
    versions = mapping(environment)
    if not versions:
        return "not recorded"
    named = {"python": "Python", "tunewatch": "tunewatch"}
    first = [f"{label} {fmt(versions[k])}" for k, label in named.items() if k in versions]
    rest = [f"{k} {fmt(v)}" for k, v in versions.items() if k not in named]
    return ", ".join([*first, *rest])


def _study(study: str | None, imported: dict[str, Any] | None) -> str | None:
    """The version's study; for an imported one, the source's (study names number a
    store's jobs: an import keeps it under ``details.imported``, not as the version's)."""
    source = None if imported is None else imported.get("study")
    if study is not None or source is None:
        return study
    return f"— (in the source store: {fmt(source)})"


def _folds(losses: Any, objective: str | None) -> Any:
    """The winner's fold scores as ``objective``'s values; as stored when it is unknown
    or a score is not a number."""
    oriented = scores(losses, objective)
    return losses if oriented is None else oriented


def _trials(n_trials: Any, nested: Any) -> Any:
    """The study's trials, with those of ``cv: nested``'s outer studies beside them (the
    job ran them too: ``details.nested``) and what those cost."""
    outer = mapping(nested)
    studies, n_outer = outer.get("studies"), outer.get("n_trials")
    if not isinstance(studies, list) or not isinstance(n_outer, int):
        return n_trials
    cpu, wall = finite_float(outer.get("cpu_s")), finite_float(outer.get("wall_s"))
    seconds = "" if cpu is None or wall is None else f", {cpu:.3g} s CPU, {wall:.3g} s wall"
    return f"{fmt(n_trials)} (+ {n_outer} in {len(studies)} outer studies of nested CV{seconds})"


def _nested(value: Any, objective: str | None = None) -> str | None:
    """The unbiased estimate of ``cv: nested``: the outer folds' mean (as ``objective``'s
    value, when known) and standard deviation (the same in either orientation)."""
    estimate = mapping(value)
    stored = finite_float(estimate.get("mean"))
    mean = stored if objective is None else score(stored, objective)
    std = finite_float(estimate.get("std"))
    scores = estimate.get("outer_scores")
    if mean is None or std is None:
        return None
    n = len(scores) if isinstance(scores, list) else "?"
    cold = ", tuned cold" if estimate.get("warm_start") is False else ""
    return f"{mean:.4g} ± {std:.4g} over {n}{cold}"


def _tags_section(store: Store, model: str, version: int) -> Section:
    """The version's tags as they are now, each with who set it last and when (their
    changes are in the audit log, ``set_tag`` and ``delete_tag``)."""
    tags = store.version_tags(model, version)
    if not tags:
        return Section("Tags", text="no tags")
    rows = ((t.key, t.value, t.set_by, t.set_at.isoformat()) for t in tags)
    return Section("Tags", table=(("key", "value", "set by", "set at"), *rows))


def _decision_section(
    store: Store, model: str, version: int, decisions: Sequence[AuditEntry]
) -> Section:
    rows: list[tuple[str, ...]] = [("when", "action", "by", "reason")]
    stage = _registered_stage(decisions)
    for a in decisions:
        rows.append(
            (
                a.at.isoformat(),
                _action(a, version, stage),
                a.actor,
                str(a.details.get("reason", "")),
            )
        )
    approvals = store.list_approvals(model=model, version=version, limit=1000)
    extra: Sequence[Row] = tuple(
        (
            f"approval {a.id}",
            f"{a.status} by {a.decided_by or '—'} (requested by "
            # all who asked: none of them may decide it
            f"{', '.join((a.requested_by, *a.co_requesters))}; rules: {', '.join(a.rules)})"
            # why: a request closed undecided (superseded, its version pulled) read as
            # the named person's rejection
            + (f": {a.decision_reason}" if a.decision_reason else ""),
        )
        for a in approvals
    )
    return Section("Decisions and approvals", rows=tuple(extra), table=tuple(rows))


#: Audit actions about a token, whose target is the token's name (``credit/v2`` is one).
_TOKEN_ACTIONS = ("create_token", "revoke_token")
#: Audit actions changing a version's tags (``tunewatch.store._version_tags``).
_TAG_ACTIONS = ("set_tag", "delete_tag")


def _decisions(store: Store, model: str, version: int) -> list[AuditEntry]:
    """The audit entries about ``version``, oldest first: those targeting it, the
    rollbacks that rolled it back (audited against the version they restored, with the
    rolled-back one in ``details["rolled_back"]``), the promotions that replaced it as
    champion (audited against the promoted version, with it in ``details["previous"]``)
    and the bundle imports that name it (audited against the model: :data:`IMPORTS`)."""
    own = [
        a
        for a in store.audit_log(limit=100_000, target=f"{model}/v{version}")
        # a token's entries target its name, which may read like a version's; a tag's
        # changes are no decisions (the Tags section shows the tags)
        if a.action not in (*_TOKEN_ACTIONS, *_TAG_ACTIONS)
    ]
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
    imports = [
        a
        for action in IMPORTS
        for a in store.audit_log(limit=100_000, target=model, action=action)
        if bundled_as(a, version) is not None
    ]
    entries = {a.id: a for a in (*own, *rolled_back, *replaced, *imports)}
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


def _registered_stage(decisions: Sequence[AuditEntry]) -> str | None:
    """The stage the version was registered in (its ``register_version`` entry's)."""
    entry = next((a for a in decisions if a.action == "register_version"), None)
    stage = None if entry is None else entry.details.get("stage")
    return stage if isinstance(stage, str) else None


def _import_action(entry: AuditEntry, version: int, stage: str | None) -> str:
    """An import's row: whether it registered the version (in which stage: a champion by
    import), found it there already, or (an older entry) mapped it; and its bundle."""
    d = entry.details
    source = f"{fmt(d.get('from_model'))} v{bundled_as(entry, version)}"
    bundle = f"(bundle sha256 {fmt(d.get('bundle_sha256'))})"
    if registered_by_import(entry, version):
        done = f"registered from {source}" + (f" as {stage}" if stage else "")
        if entry.action == "import_bundle_failed":
            done += f" before the import failed: {fmt(d.get('code'))}"
    elif bundled_as(entry, version) in mapping(d.get("already_present")):
        done = f"{source} already present"
    else:
        done = f"from {source}"
    return f"{entry.action}: {done} {bundle}"


def _action(entry: AuditEntry, version: int, stage: str | None) -> str:
    """What ``entry`` did to ``version`` (``stage``: the one it was registered in)."""
    d = entry.details
    if entry.action == "rollback" and {"version", "rolled_back"} <= d.keys():
        return f"rollback (v{d['rolled_back']} rolled back, v{d['version']} restored)"
    if _replaced(entry, version):
        return f"replaced by v{d['version']} (promote)"
    if bundled_as(entry, version) is not None:
        return _import_action(entry, version, stage)
    return entry.action


class ReportWriteError(TunewatchError):
    """A rationale report's file could not be written; the message names the path and
    the system's reason (:func:`tunewatch._errors.os_reason`)."""

    code = "report_unwritable"

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


def write_report(store: Store, config: Config, model: str, version: int) -> tuple[Path, Path]:
    """Write ``<data_dir>/reports/<model>-v<version>.md`` and ``.html`` (see
    :func:`report_stem` for the file name), readable by their owner only as the store
    beside them: each is written to a new 0600 file renamed over the old one, and a
    ``reports/`` this makes is 0700 (an existing one keeps its mode). ``ReportWriteError``
    naming the path when one cannot be written."""
    report = build_report(store, config, model, version)
    folder = _reports_folder(Path(config.data_dir).resolve() / "reports")
    stem = report_stem(model, version)
    text, page = folder / f"{stem}.md", folder / f"{stem}.html"
    _write_private(text, report.markdown())
    _write_private(page, report.html())
    return text, page


def _reports_folder(folder: Path) -> Path:
    """``folder``, made 0700 (whatever the umask) if it is not there."""
    try:
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
    except OSError as exc:
        raise ReportWriteError(
            f"cannot create the rationale reports directory {folder}: {os_reason(exc)}",
            path=folder,
        ) from exc
    return folder


def _write_private(target: Path, content: str) -> None:
    """``content`` in ``target``, a new file of mode 0600 (``mkstemp``'s) renamed over it:
    a reader never sees half a report, nor two writers' halves."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
            os.replace(tmp, target)
        finally:  # gone once renamed; left by a failed write
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise ReportWriteError(
            f"cannot write the rationale report {target}: {os_reason(exc)}", path=target
        ) from exc


def refresh_reports(store: Store, config: Config, model: str, versions: Iterable[int]) -> None:
    """Write the reports of ``versions`` after a committed promotion, approval or
    rollback. One that cannot be written is logged, not raised: the change it explains
    stands (raised, the request that committed it would answer 500 and invite a retry),
    and ``GET …/report`` and ``tunewatch report`` rebuild it from the store. A file that
    cannot be written (``reports/`` another user's, a full disk) is one warning naming
    its path and the system's reason; any other failure, a bug, is logged with its
    traceback."""
    for version in versions:
        try:
            write_report(store, config, model, version)
        except ReportWriteError as exc:
            logger.warning(
                "model=%s version=%d: %s (the change stands; the report is rebuilt from "
                "the store on request)",
                model,
                version,
                exc.message,
            )
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
