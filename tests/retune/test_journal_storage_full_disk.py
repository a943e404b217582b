"""A journal-file storage (``tuning.storage_url``: a path) whose append fails part-way —
a full disk, a quota, the file-size limit — keeps its journal whole: the failed line is
taken back, the error is :class:`StudyStorageUnavailableError` (the storage's condition,
which a job waits out), and once the room is back the study goes on in the same process
and opens again in the next.

Optuna's append left half a line: the next append glued a whole line onto it, and from
then on every read of the journal failed with ``JSONDecodeError`` — every study in the
file, the warm-start history with them, unreadable for good. The error itself was a
plain ``StudyError``, so the job was failed as the study's fault.

The failing append runs in a child process under ``RLIMIT_FSIZE`` with ``SIGXFSZ``
ignored: a write past the limit is cut short and the next fails with ``EFBIG``, as one
on a full disk fails with ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from retune import StudyError
from retune._errors import StudyStorageUnavailableError
from retune._optuna import SAMPLER_SEED_ATTR, TrialHandle, open_study
from retune._optuna._storage import _study_error

#: Opens the study at argv[1], fails a write of a study attribute longer than the room
#: argv[2] bytes of file-size limit leave, then lifts the limit and goes on: an attribute
#: and one trial. Prints what it saw as JSON.
_APPEND_PAST_A_SIZE_LIMIT = """
import json, os, resource, signal, sys
from retune import StudyError
from retune._optuna import open_study

storage, room = sys.argv[1], int(sys.argv[2])
handle = open_study(
    storage=storage, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=None
)
before = open(storage, "rb").read()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + room, hard))
try:
    handle.set_user_attr("notes", "x" * 6000)
except StudyError as exc:
    raised = exc
else:
    sys.exit("the write past the file-size limit did not fail")
kept = open(storage, "rb").read() == before
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the room is back
handle.set_user_attr("after", 1)
stops = iter([None, "done"])
handle.optimize(
    lambda t: t.suggest_float("C", 1e-3, 10.0, step=None, log=True),
    should_stop=lambda: next(stops),
)
print(json.dumps({
    "type": type(raised).__name__,
    "message": str(raised),
    "journal_kept": kept,
    "trials": len(handle.trials()),
}))
handle.close()
"""


def _objective(trial: TrialHandle) -> float:
    return trial.suggest_float("C", 1e-3, 10.0, step=None, log=True)


def _run_trials(storage: str, n: int) -> list[str]:
    """Run ``n`` trials of study ``s`` on ``storage``; the states of all its trials."""
    handle = open_study(
        storage=storage, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=None
    )
    stops = iter([*[None] * n, "done"])  # asked before the first trial and after each
    try:
        handle.optimize(_objective, should_stop=lambda: next(stops))
        return [t.state for t in handle.trials()]
    finally:
        handle.close()


def test_an_append_cut_short_is_taken_back_and_the_study_goes_on(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    assert _run_trials(storage, 3) == ["COMPLETE"] * 3
    ran = subprocess.run(
        [sys.executable, "-c", _APPEND_PAST_A_SIZE_LIMIT, storage, "100"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    # the storage's condition, named, and the file it could not write
    assert seen["type"] == StudyStorageUnavailableError.__name__, seen
    assert "writing a study attribute failed: the storage is unavailable" in seen["message"]
    assert "File too large" in seen["message"] and storage in seen["message"], seen
    assert seen["journal_kept"], "the failed append left part of its line in the journal"
    assert seen["trials"] == 4  # the same process went on once the room was back
    # every line of the journal is whole, and the next process opens the study and goes on
    raw = Path(storage).read_bytes()
    assert raw.endswith(b"\n")
    assert all(json.loads(line) for line in raw.splitlines())
    assert _run_trials(storage, 1) == ["COMPLETE"] * 5
    handle = open_study(
        storage=storage, study_name="s", seed=0, plan=None, pruner="none", heartbeat_interval=None
    )
    try:
        attrs = {k: v for k, v in handle.user_attrs.items() if k != SAMPLER_SEED_ATTR}
        assert attrs == {"after": 1}  # not the attribute whose write failed
    finally:
        handle.close()


@pytest.mark.parametrize("name", ["ENOSPC", "EDQUOT", "EIO", "EFBIG"])
def test_a_journal_file_s_disk_full_or_failing_is_the_storage_unavailable(name: str) -> None:
    code = getattr(errno, name)
    exc = OSError(code, "the system's reason", "/data/optuna.journal")
    error = _study_error(exc, "s", "telling a trial", "/data/optuna.journal")
    assert isinstance(error, StudyStorageUnavailableError)
    assert "telling a trial failed: the storage is unavailable" in str(error)


def test_a_journal_file_this_process_may_not_write_stays_a_study_error() -> None:
    """Not a condition that passes (another user's file): the study's, as before."""
    exc = PermissionError(errno.EACCES, "Permission denied", "/data/optuna.journal")
    error = _study_error(exc, "s", "telling a trial", "/data/optuna.journal")
    assert type(error) is StudyError
