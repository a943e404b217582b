"""The ``tunewatch`` command line's handlers: each takes the parsed arguments (see
:func:`tunewatch._cli.build_parser`) and returns the process's exit status. One module
per concern; this front lists them all."""

from __future__ import annotations

from ._backup import cmd_backup
from ._evaluation import cmd_compare, cmd_comparisons, cmd_evaluate, cmd_show_evaluations
from ._export import cmd_export, cmd_import, cmd_report
from ._governance import (
    cmd_approvals,
    cmd_audit,
    cmd_decide,
    cmd_models,
    cmd_promote,
    cmd_register,
    cmd_rollback,
    cmd_tokens,
)
from ._serve import cmd_demo, cmd_migrate, cmd_serve
from ._tags import cmd_tag
from ._tuning import cmd_cancel, cmd_jobs, cmd_retune, cmd_worker

__all__ = [
    "cmd_approvals",
    "cmd_audit",
    "cmd_backup",
    "cmd_cancel",
    "cmd_compare",
    "cmd_comparisons",
    "cmd_decide",
    "cmd_demo",
    "cmd_evaluate",
    "cmd_export",
    "cmd_import",
    "cmd_jobs",
    "cmd_migrate",
    "cmd_models",
    "cmd_promote",
    "cmd_register",
    "cmd_report",
    "cmd_retune",
    "cmd_rollback",
    "cmd_serve",
    "cmd_show_evaluations",
    "cmd_tag",
    "cmd_tokens",
    "cmd_worker",
]
