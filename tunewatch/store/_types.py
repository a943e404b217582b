"""Typed rows the store returns and the records it accepts (frozen dataclasses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

Task = Literal["binary", "multiclass", "regression"]
Stage = Literal["shadow", "champion", "retired", "rolled_back"]
Source = Literal["infer", "mirror"]
Role = Literal["champion", "challenger", "external"]
LabelStatus = Literal["created", "duplicate", "conflict", "unknown_request", "shape_mismatch"]
AuditBreakKind = Literal["prev_hash", "hash", "head", "unreadable"]

TASKS: tuple[str, ...] = get_args(Task)
STAGES: tuple[str, ...] = get_args(Stage)
SOURCES: tuple[str, ...] = get_args(Source)
ROLES: tuple[str, ...] = get_args(Role)

FLOAT32_BYTES = 4
MAX_UNIT_KEY_LENGTH = 128
#: Who acted, as the audit log records it: ``audit_entries.actor`` (like the approvals'
#: ``requested_by`` and ``decided_by``) is VARCHAR(200), which PostgreSQL enforces.
MAX_ACTOR_LENGTH = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


def valid_actor(actor: str) -> bool:
    """Whether the audit log can hold ``actor``: 1 to ``MAX_ACTOR_LENGTH`` printable
    characters."""
    return 1 <= len(actor) <= MAX_ACTOR_LENGTH and actor.isprintable()


def check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{field_name}` must be one of {', '.join(choices)}; got {value!r}")


def _check_aware(field_name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"`{field_name}` must be a timezone-aware datetime, got naive {value!r}")


def _check_matrix(kind: str, n_rows: int, n_cols: int, data: bytes) -> None:
    if n_rows < 0 or n_cols < 0:
        raise ValueError(f"`{kind}` shape must be non-negative, got ({n_rows}, {n_cols})")
    expected = n_rows * n_cols * FLOAT32_BYTES
    if len(data) != expected:
        raise ValueError(
            f"`{kind}` must hold n_rows*n_cols float32 values ({expected} bytes for "
            f"({n_rows}, {n_cols})), got {len(data)} bytes"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldLease:
    """A lease a writer holds (``name``, taken by ``holder``) and the time to live a
    write under it extends it by (``ttl_s``): a write fenced by it commits only while
    ``holder`` still holds it unexpired (``ConflictError`` ``lease_lapsed``)."""

    name: str
    holder: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class ModelRow:
    name: str
    task: Task
    feature_names: tuple[str, ...]
    regulated: bool
    created_at: datetime
    #: The promotion safe ranges a daemon's config stored for the model when it started
    #: (``None``: none stored). Not compared: what a process serves does not depend on it.
    stored_safe_ranges: StoredSafeRanges | None = field(default=None, compare=False)


SafeChoice = str | int | float | bool


@dataclass(frozen=True, slots=True)
class SafeBound:
    """One hyperparameter's safe range: ``low`` and ``high`` (``None``: open), or
    ``choices``."""

    low: float | None = None
    high: float | None = None
    choices: tuple[SafeChoice, ...] | None = None


@dataclass(frozen=True, slots=True)
class StoredSafeRanges:
    """A model's promotion safe ranges as a daemon's config made them when it started
    (``_safe_ranges``): its config's ``safe_ranges``, read at the values the pipeline
    builds, and the ``safe:`` bounds of its search space, read on the names a version
    records. ``search_space_unreadable``: why the daemon could not read its space (every
    promotion waits); ``unreadable``: why this build cannot read what is stored (a newer
    format; every promotion waits too). ``regulated``: a daemon's config regulates the
    model (``models[].regulated``), kept for a model not registered yet, which its first
    registration creates regulated; once stored, never cleared."""

    safe_ranges: Mapping[str, SafeBound] = field(default_factory=dict)
    search_space: Mapping[str, SafeBound] = field(default_factory=dict)
    search_space_unreadable: str | None = None
    unreadable: str | None = None
    regulated: bool = False


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: int
    model: str
    version: int
    artefact_sha256: str
    hyperparameter_set_id: str
    hyperparameters: dict[str, Any]
    dataset_version: str | None
    parent_version: int | None
    study: str | None
    stage: Stage
    details: dict[str, Any]
    size_bytes: int
    load_memory_bytes: int | None
    created_at: datetime
    stage_changed_at: datetime


@dataclass(slots=True)  # not frozen: built per request, where frozen cost 1.6 µs
class RequestRecord:
    """One scored request; ``inputs`` is the C-order float32 matrix (n_rows x n_cols).
    ``unit_key`` names the unit (user, account …) a live split assigned it by."""

    model: str
    request_id: str
    received_at: datetime
    source: Source
    n_rows: int
    n_cols: int
    inputs: bytes
    unit_key: str | None = None

    def __post_init__(self) -> None:
        check_choice("source", self.source, SOURCES)
        key = self.unit_key
        if key is not None and not (0 < len(key) <= MAX_UNIT_KEY_LENGTH and key.isprintable()):
            raise ValueError(
                f"`unit_key` must be 1–{MAX_UNIT_KEY_LENGTH} printable characters, got {key!r}"
            )
        _check_aware("received_at", self.received_at)
        _check_matrix("inputs", self.n_rows, self.n_cols, self.inputs)


@dataclass(slots=True)  # not frozen: built per request, where frozen cost 1.6 µs
class OutputRecord:
    """One version's output for a request; ``values`` is a C-order float32 matrix."""

    model: str
    request_id: str
    version: int
    role: Role
    latency_s: float | None
    n_rows: int
    n_cols: int
    values: bytes
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        check_choice("role", self.role, ROLES)
        _check_aware("created_at", self.created_at)
        _check_matrix("values", self.n_rows, self.n_cols, self.values)


@dataclass(frozen=True, slots=True)
class RunTally:
    """Runs of one version in one role, counted: ``runs`` answered or failed, ``failures``
    of them failed (no output recorded: the run raised, stopped at its deadline, or its
    output failed its checks), the last of them with ``last_failure`` (its error code).
    Handed to the store as increments; read back as running totals."""

    model: str
    version: int
    role: Role
    runs: int
    failures: int = 0
    last_failure: str | None = None

    def __post_init__(self) -> None:
        check_choice("role", self.role, ROLES)
        if not 0 <= self.failures <= self.runs:
            raise ValueError(f"`failures` must be in [0, runs={self.runs}], got {self.failures}")


@dataclass(frozen=True, slots=True)
class LabelItem:
    """A ground-truth label for a request: a number, or a list for batched requests."""

    request_id: str
    value: float | list[float]
    outcome: float | None = None

    def __post_init__(self) -> None:
        values = self.value if isinstance(self.value, list) else [self.value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(
                    f"label `value` must be a number or a list of numbers, got {self.value!r}"
                )


@dataclass(frozen=True, slots=True)
class LabelRow:
    model: str
    request_id: str
    value: float | list[float]
    outcome: float | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    model: str | None
    type: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """Why the audit log fails verification.

    ``kind`` is ``"prev_hash"`` when entry ``entry_id`` does not chain to the entry
    before it, ``"hash"`` when its stored hash does not recompute from its contents, and
    ``"head"`` when every entry chains but the last one (``entry_id``; ``None`` when there
    are none) does not end where the ``audit_head`` row says the log ends: newer entries
    were removed, the last one was rewritten, or entries were added past the head.
    ``message`` says which, with the ids and hashes involved.
    """

    kind: AuditBreakKind
    entry_id: int | None
    message: str


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    name: str
    role: str
    token_hash: str
    created_at: datetime
    revoked_at: datetime | None
