"""Models and model versions: registration, stage changes and the champion rule.

Every function runs inside the caller's transaction. Version numbers are assigned
under a lock on the model's row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), and the partial unique index on
``model_versions(model) WHERE stage = 'champion'`` backs the one-champion rule. A version
is registered as the champion only when the model has none and, read under that lock, is
not regulated (its promotion would wait for an approver); for the same reason a regulated
model's version is promoted only by deciding its approval.

This module is the front :class:`~._store.Store` and :mod:`._governance` call; the work
is in one module per concern:

- ``_registry_text``: what a row may hold (model names; a version's text and JSON);
- ``_registry_reads``: models and versions read (whole, a page at a time, those a
  line-up serves or served since a time, or as line-ups and a count), and the lock on
  a model's row;
- ``_registration``: a model added or regulated, a version registered;
- ``_stage_changes``: promotion, the other stage moves, and the checks that a decision
  still holds under the lock (the champion and the stage it was taken on).

It also passes on private helpers imported from here: the lock on a model's row and the
stage write to ``_governance``, a version row's query and reading to the dashboard's
queries.
"""

from __future__ import annotations

from ._registration import add_version, ensure_model, register_version, regulate_model
from ._registry_reads import _lock_model as _lock_model
from ._registry_reads import _version as _version
from ._registry_reads import _version_select as _version_select
from ._registry_reads import (
    champion,
    get_model,
    get_version,
    get_versions,
    lineup_versions,
    lineups,
    list_models,
    list_versions,
    version_lineup,
    version_page,
    versions_served_since,
)
from ._registry_text import MAX_NAME, check_feature_names, check_version_text, valid_model_name
from ._stage_changes import NO_CHAMPION, check_champion, check_stage, promote
from ._stage_changes import _set_stage_row as _set_stage_row

__all__ = [
    "MAX_NAME",
    "NO_CHAMPION",
    "add_version",
    "champion",
    "check_champion",
    "check_stage",
    "check_feature_names",
    "check_version_text",
    "ensure_model",
    "get_model",
    "get_version",
    "get_versions",
    "lineup_versions",
    "lineups",
    "list_models",
    "list_versions",
    "promote",
    "register_version",
    "regulate_model",
    "valid_model_name",
    "version_lineup",
    "version_page",
    "versions_served_since",
]
