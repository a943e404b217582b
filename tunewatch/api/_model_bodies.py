"""The request bodies of the model, version and approval routes
(:mod:`tunewatch.api._models`), read strictly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunewatch.api._context import Reason
from tunewatch.store import MAX_ID


class _Body(BaseModel):
    """A ``/v1`` request body, read strictly: a number must be a JSON number (an integer
    for an ``int``), a boolean ``true`` or ``false``. Lax reading took ``true`` and
    ``"2"`` as version numbers and ``"yes"`` or ``1`` as ``regulated``, irreversibly."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RegisterVersion(_Body):
    onnx_base64: str = Field(description="The ONNX file, base64-encoded.")
    task: Literal["binary", "multiclass", "regression"]
    feature_names: list[str] = Field(min_length=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dataset_version: str | None = None
    parent_version: int | None = Field(default=None, ge=1, le=MAX_ID)
    study: str | None = Field(
        default=None,
        description="The study that produced the version; `{model}-job<number>` is reserved "
        "for this store's tuning jobs.",
    )
    stage: Literal["shadow", "champion"] = "shadow"
    regulated: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    reference_npz_base64: str | None = Field(
        default=None,
        description="The training window as an .npz with `features` [rows, n_features] "
        "and optionally `labels` [rows]: the drift reference while this version serves.",
    )


class StageChange(_Body):
    reason: Reason


class Promote(StageChange):
    champion: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ID,
        description="The champion version the promotion replaces, as the caller saw it "
        "serve (0: it saw none): when another serves instead (another promotion won "
        "meanwhile), 409 `champion_changed` and nothing changes, no approval requested "
        "either; a version the model does not have, 404 `version_not_found`. A version "
        "that already is the champion is answered 200 `unchanged` whatever it names (a "
        "retry).",
    )


class Rollback(StageChange):
    champion: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="The champion version to roll back, as the caller saw it serve: when "
        "another serves instead (a rollback already restored its predecessor), 409 "
        "`champion_changed` and nothing changes (a version the model does not have: 404 "
        "`version_not_found`). Without it, the champion read when the "
        "request arrives, and 409 `champion_changed` when another replaced it before the "
        "write, or when a rollback restored it (a retry whose answer was lost, one sent "
        "after the rollback watch's).",
    )
