"""Registering model versions: candidate check in a subprocess, artefact, store rows."""

from __future__ import annotations

import hashlib
import logging
import re
import resource
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np

from shadow import (
    CandidateInfo,
    CandidateRejectedError,
    OnnxModel,
    ShadowError,
    Signature,
    TensorSpec,
    inspect_candidate,
)
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError, NotFoundError, RegistrationError, StoreError
from tunewatch._reference import Reference
from tunewatch._registry_classes import check_class_count
from tunewatch._registry_labels import check_label_output, label_check_rows
from tunewatch._registry_row_sums import ROW_SUM_TOLERANCE as ROW_SUM_TOLERANCE
from tunewatch._registry_row_sums import check_class_columns, check_row_sums
from tunewatch._version_metadata import VersionMetadata, _check_metadata, check_task_width
from tunewatch.store import HeldLease, ModelRow, Store, VersionRow, check_feature_names

logger = logging.getLogger(__name__)

#: Details a registration writes itself (a caller's values for them are dropped).
DERIVED_DETAILS = ("opset", "reference_sha256", "reference_rows")


#: The audit reason when a model is marked regulated because the config says so.
CONFIG_REASON = "the config of this process regulates it (`models[].regulated: true`)"


@dataclass(frozen=True, slots=True)
class _Checked:
    """What :meth:`Registry.check` found: the candidate's inspection and the regulated flag
    asked for once the config's is applied (the store checks the model again under its
    lock)."""

    info: CandidateInfo
    regulated: bool | None


class FeatureCheck(Protocol):
    """The config's check of a model's task, of its settings that name columns and, with
    ``classes``, of its objective's classes
    (:meth:`tunewatch._config.Config.check_registered_model`); raises ``ConfigError``."""

    def __call__(
        self,
        model: str,
        feature_names: Sequence[str],
        *,
        task: str,
        classes: int | None = None,
    ) -> None: ...


class Registry:
    """Validates and registers ONNX files as model versions."""

    def __init__(
        self,
        store: Store,
        artefacts: ArtefactStore,
        *,
        memory_limit_bytes: int = 2 * 1024**3,
        timeout_s: float = 60.0,
        regulated_models: Collection[str] = (),
        check_features: FeatureCheck | None = None,
    ) -> None:
        """``check_features(model, feature_names, task=...)`` is called before a version
        is stored: the config's task of the model and its settings that name the model's
        columns are checked there (it raises ``ConfigError``), as a model's task and
        features are known only once it registers."""
        self._store = store
        self._check_features = check_features
        self._artefacts = artefacts
        self._memory_limit = memory_limit_bytes
        self._timeout = timeout_s
        # Models the config regulates are created regulated: the store's flag is what a
        # process whose config does not list the model goes by.
        self._regulated = frozenset(regulated_models)
        # those found regulated in the store, not read again: regulation only tightens
        self._found_regulated: set[str] = set()

    def regulate_configured(self, *, actor: str = "tunewatch") -> list[str]:
        """Mark regulated in the store every existing model the config regulates whose
        stored flag is false (each audited); returns their names. A daemon does this when
        it starts, so that a replica whose config does not list a model applies the rule,
        and at every turn of its refresh loop, for a model such a replica added since
        (stored unregulated, it stayed so until this daemon restarted). A model found
        regulated is not read again; one the store lacks is, a read per turn."""
        tightened = []
        for name in sorted(self._regulated - self._found_regulated):
            existing = self._existing_model(name)
            if existing is None:
                continue
            if not existing.regulated and self._store.regulate_model(
                name, actor=actor, reason=CONFIG_REASON
            ):
                logger.info("model=%s is now regulated in the store: %s", name, CONFIG_REASON)
                tightened.append(name)
            self._found_regulated.add(name)
        return tightened

    def register(
        self,
        model: str,
        onnx_bytes: bytes,
        metadata: VersionMetadata,
        *,
        actor: str,
        stage: Literal["shadow", "champion", "retired"] = "shadow",
        regulated: bool | None = None,
        reference: Reference | None = None,
        once_per_study: bool = False,
        inspected: CandidateInfo | None = None,
        for_job: int | None = None,
        lease: HeldLease | None = None,
        refuse_live_duplicate: bool = True,
    ) -> VersionRow:
        """Check ``onnx_bytes`` and its metadata (:meth:`check`), store it, and add the
        version row: the model (on its first version), its regulated flag (tightened
        when asked or configured, audited) and the version are written in one store
        transaction, so that a registration the store refuses under the model's lock (a
        ``parent_version`` it lacks, ``champion_exists``, ``approval_required``,
        ``study_registered``, a model a racing registration added with another task,
        features or flag) stores none of them. Only the content-addressed artefact bytes
        are written before it.

        ``stage="champion"`` skips promotion and its gate: where an operator asks for it,
        the caller checks ``_approval_rules.check_champion_registration`` first (a fast
        answer before the candidate check). The store checks the model again under its
        lock when it adds the version: its task, features and regulated flag
        (``regulated_mismatch`` for ``regulated=False``), and its flag for a champion
        (``ConflictError`` ``approval_required``): the model may have been regulated
        meanwhile.
        ``stage="retired"`` registers the version out of service, in one transaction (a
        bundle's version its source retired or rolled back).

        With ``once_per_study`` a study registers one version at most: workers sharing a
        job's study each finish with the same winner, and the first registers it
        (``ConflictError`` ``study_registered`` for the others). ``for_job`` names the
        re-tuning job whose study chose the version: the store refuses the version of a
        job cancelled meanwhile (``ConflictError`` ``job_cancelled``), in the transaction
        that would add it, the job's row locked. ``lease``: a lease the caller holds (a
        bundle import's on the model), extended in that transaction, which it refuses
        (``ConflictError`` ``lease_lapsed``) when the caller no longer holds it.

        A version the model holds live already (shadow or champion: the same artefact,
        hyperparameters, dataset version, parent, study and reference) is refused
        (``ConflictError`` ``version_exists``): a retried registration added another
        identical challenger. ``refuse_live_duplicate=False`` (a bundle import, which
        skips the versions it imported before by their origin) registers it all the same.

        ``reference`` is the training window (features, and labels when known): it is
        stored as a versioned snapshot with the version and is what drift is measured
        against while this version is champion.

        ``inspected`` is what :meth:`check` returned for these bytes: their sandboxed
        load is not repeated (it is, for other bytes or another reference, whose rows a
        classifier's outputs are checked on).
        """
        checked = self._check(
            model,
            onnx_bytes,
            metadata,
            regulated=regulated,
            reference=reference,
            inspected=inspected,
        )
        info, regulated = checked.info, checked.regulated
        configured = model in self._regulated
        # Content-addressed, outside the registration's transaction: bytes a refused
        # registration leaves (a file; a PostgreSQL store's row of them) name nothing.
        sha = self._artefacts.put(onnx_bytes)
        details: dict[str, Any] = {
            **{k: v for k, v in metadata.details.items() if k not in DERIVED_DETAILS},
            "opset": info.opset,
        }
        if reference is not None:
            details["reference_sha256"] = self._artefacts.put(reference.to_bytes(), ".npz")
            details["reference_rows"] = int(reference.features.shape[0])

        def check_stored(found: ModelRow) -> None:
            # the model as the store read it under its lock: another registration may have
            # added it, or regulated it (a `regulated: false` is then refused), since the
            # check above read it
            self._check_existing(found, metadata, regulated=regulated)

        reason = CONFIG_REASON if configured else "a registration asked for regulated=true"
        # One transaction: the model, its regulated flag (stored unregulated before the
        # config regulated it, or by a replica whose config does not list it: the store's
        # flag is what every replica goes by) and the version. A refusal under the model's
        # lock (the parent, the champion rule, the study) stores none of them.
        row = self._store.register_version(
            model=model,
            task=metadata.task,
            feature_names=list(metadata.feature_names),
            regulated=bool(regulated),
            regulate_reason=reason,
            check_model=check_stored,
            artefact_sha256=sha,
            hyperparameters=dict(metadata.hyperparameters),
            size_bytes=len(onnx_bytes),
            load_memory_bytes=info.load_memory_bytes,
            dataset_version=metadata.dataset_version,
            parent_version=metadata.parent_version,
            study=metadata.study,
            details=details,
            stage=stage,
            actor=actor,
            once_per_study=once_per_study,
            for_job=for_job,
            lease=lease,
            refuse_live_duplicate=refuse_live_duplicate,
        )
        logger.info(
            "registered model=%s version=%d stage=%s sha256=%s by %s",
            model,
            row.version,
            row.stage,
            sha[:12],
            actor,
        )
        return row

    def check(
        self,
        model: str,
        onnx_bytes: bytes,
        metadata: VersionMetadata,
        *,
        regulated: bool | None = None,
        reference: Reference | None = None,
        inspected: CandidateInfo | None = None,
    ) -> CandidateInfo:
        """Make every check :meth:`register` makes before it writes anything, and write
        nothing; returns what the sandboxed load found, which :meth:`register` takes as
        ``inspected`` to skip loading the same bytes again. A bundle import checks all its
        versions so before it registers the first.

        The metadata: ``hyperparameters`` and ``details`` plain JSON with finite numbers,
        nesting at most ``MAX_METADATA_DEPTH`` levels; a ``details.parity_error`` a
        finite number >= 0; ``dataset_version`` and ``study`` values the store holds on
        either backend, and no unpaired surrogate in the feature names, hyperparameters
        or details (``InvalidValueError``). The reference's shape; an existing model's
        task, features and regulated flag (``regulated`` as :meth:`register` takes it),
        before the config's task of the model and its settings that name the model's
        columns (so a version that does not fit a stored model the config lists is
        ``task_mismatch`` or ``feature_names_mismatch``, not a config error).
        Then the candidate: loaded and scored by a child process under a memory limit and
        a timeout (the daemon never opens it here: a classifier's outputs are checked on
        the rows that process scored, the reference's among them); external-data files,
        models whose input does
        not match the declared features, classifiers whose probabilities are one rank-1
        output per class (``zipmap: 'columns'``) and models whose primary output has
        columns no objective of the task reads (:data:`TASK_WIDTH_RULES`) are refused.
        """
        return self._check(
            model,
            onnx_bytes,
            metadata,
            regulated=regulated,
            reference=reference,
            inspected=inspected,
        ).info

    def _check(
        self,
        model: str,
        onnx_bytes: bytes,
        metadata: VersionMetadata,
        *,
        regulated: bool | None,
        reference: Reference | None,
        inspected: CandidateInfo | None,
    ) -> _Checked:
        _check_metadata(metadata)
        if reference is not None:
            reference.check(len(metadata.feature_names))
        # The stored model first: a version of another task or features is refused as
        # not fitting it (`task_mismatch`, `feature_names_mismatch`), as for a model the
        # config does not list; the config's check then sees the stored task and features
        # (or a first version's) and catches only what is the config's to correct.
        existing, regulated = self._fit(model, metadata, regulated)
        if existing is None:  # a stored model keeps the names it was registered with
            check_feature_names(metadata.feature_names)
        if self._check_features is not None:
            self._check_features(model, metadata.feature_names, task=metadata.task)
        # a classifier's outputs are checked on the rows the sandboxed probe scored, the
        # reference's among them: the candidate is never loaded in this process
        classifier = metadata.task in ("binary", "multiclass")
        check_rows = label_check_rows(reference) if classifier else None
        if inspected is None or not inspected.scored_on(onnx_bytes, check_rows):
            inspected = self._inspect(onnx_bytes, check_rows)
        if inspected.signature.n_features != len(metadata.feature_names):
            raise RegistrationError(
                f"the model takes {inspected.signature.n_features} features but "
                f"{len(metadata.feature_names)} `feature_names` were given",
                code="feature_count_mismatch",
            )
        if metadata.task in ("binary", "multiclass"):
            # one rank-1 output per class: its first, P(class 0), was read as P(class 1)
            check_class_columns(metadata.task, inspected)
        width = _primary_width(inspected.signature)
        if width is not None:
            out = inspected.signature.primary_output
            check_task_width(metadata.task, width, out)
            if existing is not None and metadata.task == "multiclass":
                check_class_count(self._store, self._artefacts, model, width, output=out)
        if metadata.task in ("binary", "multiclass"):
            _check_probabilities(metadata.task, inspected.signature)
            check_row_sums(metadata.task, inspected, width)
        multiclass = metadata.task == "multiclass" and width is not None
        if self._check_features is not None and multiclass:
            # a multiclass model's classes are its primary output's columns, known only
            # now: a cost matrix of another size failed every evaluation and trial
            self._check_features(model, metadata.feature_names, task=metadata.task, classes=width)
        if reference is not None:
            # a multiclass model's classes are its primary output's columns
            classes = width if metadata.task == "multiclass" else None
            reference.check_labels(metadata.task, classes=classes)
        if reference is not None and reference.scores is not None and width is not None:
            if reference.scores.shape[1] != width:
                # else the baseline silently used the version's own (in-sample) scores
                raise RegistrationError(
                    f"reference scores must have one column per column of the primary "
                    f"output ({width}), got {reference.scores.shape[1]}",
                    code="invalid_reference",
                )
        if reference is not None and reference.scores is not None:
            if metadata.task in ("binary", "multiclass"):
                reference.check_probabilities(
                    metadata.task,
                    tolerance=PROBABILITY_TOLERANCE,
                    row_sum_tolerance=ROW_SUM_TOLERANCE,
                )
        if metadata.task in ("binary", "multiclass"):
            check_label_output(metadata.task, inspected)
        if existing is not None:
            self._check_input(model, inspected.signature.input)
        return _Checked(info=inspected, regulated=regulated)

    def _check_input(self, model: str, candidate: TensorSpec) -> None:
        """A version takes the input its model's champion takes, by name and width:
        promoted, it must read the requests the champion's clients send (a request names
        its input). Its element type and output names may differ: rows read against the
        champion's signature are cast to a shadow's or a split arm's type, and a split arm
        answers its own outputs; promotion refuses such a version
        (``tunewatch._promotion_signature.check_promotion_signature``). A champion whose artefact
        cannot be read or loaded is logged and not checked against: registering the
        version that replaces it must not fail on it."""
        champion = self._store.champion(model)
        if champion is None:
            return
        served = served_signature(self._artefacts, champion, unchecked="a new version's input")
        if served is None:
            return
        expected = served.input
        if (candidate.name, candidate.shape[1:]) != (expected.name, expected.shape[1:]):
            raise ConflictError(
                f"the champion of model {model!r} (version {champion.version}) takes input "
                f"{describe_input(expected)}; a version must take an input of the same name and "
                f"width, got {describe_input(candidate)}",
                code="signature_mismatch",
            )

    def check_fit(
        self, model: str, metadata: VersionMetadata, *, regulated: bool | None = None
    ) -> None:
        """The checks :meth:`check` makes against the model as stored, alone: a version of
        a known model takes its features, is of its task and does not make it
        unregulated (``regulated`` as :meth:`register` takes it). A bundle import makes
        them once for the whole bundle, the versions the model holds already included."""
        self._fit(model, metadata, regulated)

    def _fit(
        self, model: str, metadata: VersionMetadata, regulated: bool | None
    ) -> tuple[ModelRow | None, bool | None]:
        """The model as stored (``None`` before its first version), checked against
        ``metadata``, and the regulated flag asked for once the config's is applied."""
        existing = self._existing_model(model)
        if model in self._regulated:
            # Regulation only tightens: where the config regulates the model, a caller's
            # "not regulated" (an unregulated bundle, say) is not a conflict.
            regulated = True
        if existing is not None:
            self._check_existing(existing, metadata, regulated=regulated)
        return existing, regulated

    def _inspect(self, onnx_bytes: bytes, check_rows: np.ndarray | None) -> CandidateInfo:
        with tempfile.TemporaryDirectory(prefix="tunewatch-candidate-") as tmp:
            path = Path(tmp) / "candidate.onnx"
            path.write_bytes(onnx_bytes)
            try:
                return inspect_candidate(
                    path,
                    memory_limit_bytes=self._memory_limit,
                    timeout_s=self._timeout,
                    check_rows=check_rows,
                )
            except CandidateRejectedError as exc:
                # the temporary file the candidate was probed from is this process's
                # business, not the caller's: it named the upload in every refusal
                message = exc.message.replace(f"{path}: ", "").replace(str(path), "the model")
                if exc.code == "load_memory":
                    message += self._memory_advice()
                elif exc.code == "load_timeout":
                    message += (
                        f"; the limit is `scoring.candidate_timeout_s` ({self._timeout:g} s): "
                        "raise it if the model needs longer"
                    )
                raise RegistrationError(message, code=exc.code) from exc

    def _memory_advice(self) -> str:
        """Which limit a candidate refused for memory met, and how to raise it: the probe
        runs under this process's hard ``RLIMIT_AS`` when it is below the setting, and
        raising the setting, as the refusal advised, changed nothing."""
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        setting = f"`scoring.candidate_memory_limit_mb` ({self._memory_limit // 2**20})"
        if hard != resource.RLIM_INFINITY and hard < self._memory_limit:
            return (
                f"; the limit is this process's hard address-space limit ({hard // 2**20} "
                f"MiB, RLIMIT_AS), below {setting}: raise the hard limit (`ulimit -Hv`, "
                "systemd's LimitAS=) if the model needs more"
            )
        return f"; the limit is {setting}: raise it if the model needs more"

    def _check_existing(
        self,
        existing: ModelRow,
        metadata: VersionMetadata,
        *,
        regulated: bool | None,
    ) -> None:
        """A new version of a known model must fit it, and cannot change what governance
        rests on: its task, its features, or its regulated flag back to false (setting it
        is allowed: regulation only tightens). (Nor its champion: the store refuses a
        second one, ``champion_exists``; promotion is where approvals apply.)"""
        model = existing.name
        if tuple(existing.feature_names) != metadata.feature_names:
            raise RegistrationError(
                f"model {model!r} has features {list(existing.feature_names)}; a version must "
                f"take the same features, got {list(metadata.feature_names)}",
                code="feature_names_mismatch",
            )
        if existing.task != metadata.task:
            raise ConflictError(
                f"model {model!r} is a {existing.task} model; a version cannot change its "
                f"task to {metadata.task}",
                code="task_mismatch",
            )
        if regulated is False and existing.regulated:
            raise ConflictError(
                f"model {model!r} is regulated; a registration cannot make it unregulated "
                "(regulation only tightens)",
                code="regulated_mismatch",
            )

    def _existing_model(self, model: str) -> ModelRow | None:
        try:
            return self._store.get_model(model)
        except NotFoundError:
            return None


#: How far outside [0, 1] a classifier's probability may be, on the probe's rows, before
#: it is taken for a logit: float32 sums such as a random forest's mean of its trees'
#: leaves give 1.0000001 and -1.2e-07.
PROBABILITY_TOLERANCE: Final = 1e-4


def _primary_width(signature: Signature) -> int | None:
    """The primary output's columns: as the graph declares them, else as the candidate
    probe saw them (``None`` when neither says: a signature not read by the probe)."""
    width = signature.primary_width
    if width is None and signature.probed is not None:
        return signature.probed.width
    return width


def _check_probabilities(task: str, signature: Signature) -> None:
    """Refuse (``task_output_mismatch``) a classifier whose primary output held values
    outside [0, 1] (give or take :data:`PROBABILITY_TOLERANCE`) on the candidate probe's
    rows (:func:`shadow._probe.probe`): its logits were served and recorded as the
    probabilities every objective, CBPE and comparison read, while the mirror route
    refused the very same answers. A signature the probe did not read passes."""
    probed = signature.probed
    if probed is None or probed.low is None or probed.high is None:
        return
    if probed.low >= -PROBABILITY_TOLERANCE and probed.high <= 1 + PROBABILITY_TOLERANCE:
        return
    raise RegistrationError(
        f"a {task} model's primary output must hold probabilities in [0, 1], got values "
        f"from {probed.low:.6g} to {probed.high:.6g} (output {signature.primary_output!r}) "
        "on the rows the registration scored (zeros, then 1, -1 and 1000 as the input's "
        "type holds them): export the probabilities (a Sigmoid or Softmax over the logits), "
        "or register the model under the task it was trained for",
        code="task_output_mismatch",
    )


def served_signature(
    artefacts: ArtefactStore, row: VersionRow, *, unchecked: str
) -> Signature | None:
    """``row``'s signature, read from its artefact; ``None`` (logged as a warning: what is
    ``unchecked`` then) when the artefact is missing, damaged or unreadable, or does not
    load. A check against the champion reads it so: a champion that cannot be read must
    not block what replaces it."""
    try:
        return OnnxModel.from_bytes(artefacts.get(row.artefact_sha256)).signature
    except (StoreError, ShadowError) as exc:
        logger.warning(
            "model=%s version=%d cannot be read or loaded, %s is not checked against it: %s",
            row.model,
            row.version,
            unchecked,
            exc,
        )
        return None


def describe_input(spec: TensorSpec) -> str:
    """``name: dtype[shape]``, as a message shows an input."""
    return f"{spec.name}: {spec.dtype.name}[{', '.join(str(d) for d in spec.shape)}]"


def check_caller_study(model: str, study: str | None) -> None:
    """Refuse a ``study`` a caller names like one of the model's tuning jobs' studies
    (``{model}-job{id}-{8 hex digits}``, or ``{model}-job{id}`` for jobs queued before
    names had the random part; the model's name cut to fit and ended with a hash, see
    :func:`tunewatch.store._jobs.new_study_name`): a study registers one version, so a
    version registered by hand under job 7's study would stand in for job 7's winner. A
    job's worker registers under its study through :meth:`Registry.register` directly."""
    if study is None:
        return
    job = re.fullmatch(r"(.+)-job[0-9]+(-[0-9a-f]{8})?", study, flags=re.DOTALL)
    if job is None:
        return
    named = job.group(1)
    cut = f"~{hashlib.sha256(model.encode()).hexdigest()[:16]}"  # a long name's, cut
    if (
        named == model
        or (job.group(2) and named.endswith(cut) and model.startswith(named[: -len(cut)]))
        # cut before the hash was added (jobs queued before 2026-12-06)
        or (job.group(2) and model.startswith(named) and len(study) >= 190)
    ):
        raise RegistrationError(
            f"`study` must not match `{model}-job<number>` or `{model}-job<number>-<8 hex "
            f"digits>`: those names are reserved for the studies of {model!r}'s tuning "
            f"jobs, got {study!r}",
            code="invalid_request",
        )


def feature_names_from(value: Sequence[str] | str) -> tuple[str, ...]:
    """Accept a list or a comma-separated string (the CLI's form)."""
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(",") if n.strip())
    return tuple(value)
