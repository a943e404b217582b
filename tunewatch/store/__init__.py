"""tunewatch's persistence layer: one SQLAlchemy store over SQLite or PostgreSQL.

Open it with ``Store.open(url)`` (constructs and migrates). Rows come back as frozen
dataclasses; database errors surface as ``StoreError`` subclasses from
``tunewatch._errors``.
"""

from __future__ import annotations

from ._canonical import canonical_json, hyperparameter_set_id
from ._champion_history import ChampionHistory
from ._engine import make_engine, redact_url
from ._evaluations import EvaluationRow, NewEvaluation
from ._governance import MAX_REASON_LENGTH, ApprovalRow
from ._jobs import JobAudit, JobRow, JobStatus
from ._registry_reads import ModelSummary, VersionLineup
from ._registry_rows import MAX_NAME as MAX_MODEL_NAME
from ._registry_rows import NO_CHAMPION, check_feature_names, check_version_text, valid_model_name
from ._retention import PurgeCounts
from ._schema import MAX_ID, UTCDateTime, metadata
from ._store import Store
from ._types import (
    MAX_ACTOR_LENGTH,
    MAX_UNIT_KEY_LENGTH,
    AuditBreak,
    AuditBreakKind,
    AuditEntry,
    Event,
    HeldLease,
    LabelItem,
    LabelRow,
    LabelStatus,
    ModelRow,
    OutputRecord,
    RequestRecord,
    Role,
    RunTally,
    SafeBound,
    Source,
    Stage,
    StoredSafeRanges,
    Task,
    TokenRow,
    VersionRow,
    valid_actor,
)
from ._version_tags import VersionTag
from ._windows import Window

__all__ = [
    "ApprovalRow",
    "AuditBreak",
    "AuditBreakKind",
    "AuditEntry",
    "ChampionHistory",
    "EvaluationRow",
    "Event",
    "HeldLease",
    "JobAudit",
    "JobRow",
    "JobStatus",
    "LabelItem",
    "LabelRow",
    "LabelStatus",
    "MAX_ACTOR_LENGTH",
    "MAX_ID",
    "MAX_MODEL_NAME",
    "MAX_REASON_LENGTH",
    "MAX_UNIT_KEY_LENGTH",
    "ModelRow",
    "ModelSummary",
    "NO_CHAMPION",
    "NewEvaluation",
    "OutputRecord",
    "PurgeCounts",
    "RequestRecord",
    "Role",
    "RunTally",
    "SafeBound",
    "Source",
    "Stage",
    "Store",
    "StoredSafeRanges",
    "Task",
    "TokenRow",
    "UTCDateTime",
    "VersionLineup",
    "VersionRow",
    "VersionTag",
    "Window",
    "canonical_json",
    "check_feature_names",
    "check_version_text",
    "hyperparameter_set_id",
    "make_engine",
    "metadata",
    "redact_url",
    "valid_actor",
    "valid_model_name",
]
