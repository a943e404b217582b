"""A process whose hard ``RLIMIT_AS`` is below the candidate memory limit (a container
without ``CAP_SYS_RESOURCE``, systemd's ``LimitAS=``) probes candidates under its hard
limit, and says once that the configured limit is above it.

The probe's ``setrlimit`` raised ``ValueError`` in the child, ``subprocess.run`` raised
``SubprocessError: Exception occurred in preexec_fn``, and every registration was a 500
``internal``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import onnx
from probe_models import softmax

HARD_LIMIT = 1536 << 20  # below inspect_candidate's default, 2 GiB

#: Probes ``argv[1]`` twice (another timeout the second time: a pass is remembered by the
#: limits) under the default memory limit and prints the outcome; logs to stderr.
_PROBE_TWICE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from shadow import CandidateRejectedError, inspect_candidate
outcomes = []
for timeout_s in (60.0, 59.5):
    try:
        info = inspect_candidate(sys.argv[1], timeout_s=timeout_s)
    except CandidateRejectedError as exc:
        outcomes.append({"code": exc.code, "message": exc.message})
    else:
        outcomes.append({"inputs": info.signature.input.name})
print(json.dumps(outcomes))
"""


def _lower_hard_limit() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (HARD_LIMIT, HARD_LIMIT))


def test_a_hard_address_space_limit_below_the_candidate_limit_caps_the_probe(
    tmp_path: Path,
) -> None:
    path = tmp_path / "candidate.onnx"
    onnx.save_model(softmax(), path)
    ran = subprocess.run(
        [sys.executable, "-c", _PROBE_TWICE, str(path)],
        capture_output=True,
        text=True,
        preexec_fn=_lower_hard_limit,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [{"inputs": "input"}, {"inputs": "input"}], ran.stderr
    warnings = [line for line in ran.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, ran.stderr  # once per process, not per probe
    assert f"candidate memory limit ({2 << 30} bytes)" in warnings[0]
    assert f"hard address-space limit ({HARD_LIMIT} bytes" in warnings[0]
