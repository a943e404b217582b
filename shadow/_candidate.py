"""Inspection of a candidate ONNX file before it is ever loaded in the daemon.

In-process, the file is only read and hashed. A child process (``python -P -m
shadow._probe``), started with only the environment it needs to run
(:data:`PROBE_ENV_KEPT`: no credentials), under ``RLIMIT_AS`` and a timeout, parses it
(``not_onnx`` if it does not parse; its protobuf tree can be ~80 times the file, so the
parse is the child's, under the limit), refuses it if any tensor anywhere keeps its data
in an external file (``external_data``: served models must be self-contained, and ORT
would resolve such paths on our disk), creates an onnxruntime session — a crafted model
can crash or exhaust the process creating its session — reads the signature and opset
imports and scores rows (:func:`shadow._probe.probe`): its own, and those a registration
checks a classifier's outputs on, whose outputs it sends back
(:attr:`CandidateInfo.scored`), so that the registering process never loads the
candidate itself. Crash or non-zero exit → ``load_failed`` (with the child's last stderr
line), as is a probe process that cannot start; timeout → ``load_timeout``, memory
exhaustion → ``load_memory``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

import numpy as np

from shadow._errors import CANDIDATE_REJECTED_CODES, CandidateRejectedCode, CandidateRejectedError
from shadow._onnx import (
    MEMORY_MARKERS,
    Signature,
)

logger = logging.getLogger(__name__)

_PACKAGE_ROOT: Final[str] = str(Path(__file__).resolve().parent.parent)

#: How many passed candidates this process remembers (see :func:`inspect_candidate`).
PASSED_KEPT: Final = 64


class _Passed:
    """Candidates that passed, by (sha256, memory limit, timeout, the check rows' digest),
    newest kept last; the
    least recently used goes past :data:`PASSED_KEPT`. Registrations run on several
    threads, so reads and writes hold a lock."""

    def __init__(self) -> None:
        self._infos: OrderedDict[tuple[str, int, float, str], CandidateInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, float, str]) -> CandidateInfo | None:
        with self._lock:
            info = self._infos.get(key)
            if info is not None:
                self._infos.move_to_end(key)
            return info

    def put(self, key: tuple[str, int, float, str], info: CandidateInfo) -> None:
        with self._lock:
            self._infos[key] = info
            self._infos.move_to_end(key)
            while len(self._infos) > PASSED_KEPT:
                self._infos.popitem(last=False)


_PASSED: Final = _Passed()


@dataclass(frozen=True, slots=True)
class ScoredRows:
    """The candidate's outputs on one batch of the rows a registration checks a
    classifier on, as the probe scored them (:func:`shadow._probe.score_check_rows`):
    ``rows`` of them, every numeric output by name (read-only arrays, one row per input
    row) or, for a run that failed or passed its deadline, ``error``, its message."""

    rows: int
    primary_output: str
    outputs: Mapping[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    error: str | None = None

    def primary(self) -> np.ndarray[Any, Any]:
        """The primary output as a float32 2-D array (``[N]`` becomes ``[N, 1]``), as
        :meth:`shadow.OnnxModel.primary` gives it."""
        out = np.asarray(self.outputs[self.primary_output], dtype=np.float32)
        return out.reshape(-1, 1) if out.ndim == 1 else out

    @classmethod
    def from_payload(cls, entry: Mapping[str, Any], primary_output: str) -> ScoredRows:
        outputs = {}
        for name, out in dict(entry.get("outputs", {})).items():
            array = np.asarray(out["values"], dtype=np.dtype(out["dtype"]))
            array = array.reshape([int(d) for d in out["shape"]])
            array.flags.writeable = False  # shared by every caller of a remembered pass
            outputs[str(name)] = array
        error = entry.get("error")
        return cls(
            rows=int(entry["rows"]),
            primary_output=primary_output,
            outputs=outputs,
            error=None if error is None else str(error),
        )


def rows_digest(rows: np.ndarray[Any, Any] | None) -> str:
    """The digest of the check rows given to :func:`inspect_candidate` (``""`` for none):
    their shape and float64 values."""
    if rows is None:
        return ""
    x = np.ascontiguousarray(rows, dtype=np.float64)
    return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """What inspection learnt about a candidate that may be served.

    ``scored``: its outputs on the rows a registration checks a classifier on, by batch:
    ``"constant"``, rows of 0, 1 and -1 (:data:`shadow._probe.CHECK_VALUES`, as the input's
    type holds them), and ``"given"``, the ``check_rows`` inspection was given that the
    input's type holds (absent without them). Not compared: two inspections of the same
    bytes are equal whatever rows they scored."""

    signature: Signature
    load_memory_bytes: int
    opset: dict[str, int]
    size_bytes: int
    sha256: str
    scored: Mapping[Literal["constant", "given"], ScoredRows] = field(
        default_factory=dict, compare=False
    )
    check_rows_sha256: str = field(default="", compare=False)

    def scored_on(self, data: bytes, check_rows: np.ndarray[Any, Any] | None) -> bool:
        """Whether this inspection is of ``data`` and scored ``check_rows`` (none: none):
        a registration takes it for its own then."""
        return self.sha256 == hashlib.sha256(
            data
        ).hexdigest() and self.check_rows_sha256 == rows_digest(check_rows)


def _limit_address_space(limit: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


#: The (asked, hard) pairs :func:`_probe_limit` warned of: once each per process.
_WARNED_CAPS: Final[set[tuple[int, int]]] = set()
_WARNED_LOCK: Final = threading.Lock()


def _probe_limit(asked: int) -> int:
    """The address-space limit the probe runs under: ``asked``, capped at this process's
    hard ``RLIMIT_AS``, which an unprivileged child cannot raise (a container without
    ``CAP_SYS_RESOURCE``, systemd's ``LimitAS=``): asking for more made the child's
    ``setrlimit`` fail, and with it every probe. Warns once when it caps."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard == resource.RLIM_INFINITY or asked <= hard:
        return asked
    with _WARNED_LOCK:
        first = (asked, hard) not in _WARNED_CAPS
        _WARNED_CAPS.add((asked, hard))
    if first:
        logger.warning(
            "the candidate memory limit (%d bytes) is above this process's hard "
            "address-space limit (%d bytes, RLIMIT_AS): candidates are probed under %d bytes",
            asked,
            hard,
            hard,
        )
    return hard


#: The only variables of this process's environment the probe is started with (where
#: set): it parses and loads an untrusted model, so it gets what runs Python and
#: onnxruntime and nothing else — not the admin token, the store URL (which may hold a
#: password), libpq's ``PGPASSWORD``, the configuration path nor any other secret.
#: Finding the interpreter and its libraries: ``PATH``, ``PYTHONHOME``,
#: ``LD_LIBRARY_PATH`` (a shared libpython or onnxruntime's libraries outside the loader's
#: paths) and ``PYTHONPATH`` (with shadow's own root put first: a source checkout);
#: how the interpreter runs: bytecode, hash seed, UTF-8 mode; locale, ``TZ``, ``TMPDIR``.
#: ``ORT_DISABLE_TELEMETRY`` is left out: the probe's onnxruntime stays silent
#: (:mod:`shadow._onnx` sets it), whatever the daemon's.
PROBE_ENV_KEPT: Final[frozenset[str]] = frozenset(
    {
        "PATH",
        "PYTHONHOME",
        "PYTHONPATH",
        "LD_LIBRARY_PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPYCACHEPREFIX",
        "PYTHONHASHSEED",
        "PYTHONUTF8",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_ADDRESS",
        "LC_COLLATE",
        "LC_CTYPE",
        "LC_IDENTIFICATION",
        "LC_MEASUREMENT",
        "LC_MESSAGES",
        "LC_MONETARY",
        "LC_NAME",
        "LC_NUMERIC",
        "LC_PAPER",
        "LC_TELEPHONE",
        "LC_TIME",
        "TZ",
        "TMPDIR",
    }
)
#: Set to 1 in the probe's environment, whatever this process's: thread pools reserve
#: address space per thread, and the probe runs under an address-space limit.
PROBE_THREAD_VARS: Final[tuple[str, ...]] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def _child_env() -> dict[str, str]:
    """The probe's environment: :data:`PROBE_ENV_KEPT` from this process's, shadow's root
    first on ``PYTHONPATH`` and :data:`PROBE_THREAD_VARS` at 1."""
    env = {k: v for k, v in os.environ.items() if k in PROBE_ENV_KEPT}
    env.update(dict.fromkeys(PROBE_THREAD_VARS, "1"))
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT if not path else f"{_PACKAGE_ROOT}{os.pathsep}{path}"
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def inspect_candidate(
    path: Path,
    *,
    memory_limit_bytes: int = 2 * 1024**3,
    timeout_s: float = 60.0,
    check_rows: np.ndarray[Any, Any] | None = None,
) -> CandidateInfo:
    """Check that ``path`` is a self-contained ONNX model that loads and scores.

    ``memory_limit_bytes`` caps the probe process's whole address space (interpreter,
    numpy and onnxruntime included — about 200 MiB of it before any model is
    loaded), capped itself at this process's hard ``RLIMIT_AS`` (which the probe cannot
    raise; a warning says so once); ``timeout_s`` bounds its wall time. Raises
    :class:`~shadow.CandidateRejectedError` with the reason as ``code``.

    ``check_rows`` (``[n, n_features]``, taken as float64): rows the probe scores besides
    rows of 0, 1 and -1, those of them the input's type holds; the outputs on both are
    :attr:`CandidateInfo.scored`, which a registration's checks of a classifier read.

    A pass is remembered by the file's content, the check rows and the two limits: the
    same bytes and rows under
    the same limits pass again without another child process (a re-registration after a
    refusal, an imported artefact the store holds, the example models a test suite
    registers again and again). A refusal is not remembered: it may be the machine's (a
    probe that started slowly under load).
    """
    if memory_limit_bytes <= 0:
        raise ValueError(f"`memory_limit_bytes` must be > 0, got {memory_limit_bytes}")
    if timeout_s <= 0:
        raise ValueError(f"`timeout_s` must be > 0, got {timeout_s}")
    path = Path(path)
    # one read: what is checked, hashed, probed and recorded are the same bytes
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CandidateRejectedError(
            f"{path} is not an ONNX model: {type(exc).__name__}: {exc}", code="not_onnx"
        ) from exc
    # Parsed in the probe, under its limit, not here: the protobuf tree of a crafted file
    # is ~80 times its size (empty nodes), and a 19 MiB upload took the daemon from 270 MiB
    # to 1.8 GB and 10 s of its CPU before any limit applied. The probe's session refuses
    # external data (not_onnx and external_data come back as its refusals).
    limit = _probe_limit(memory_limit_bytes)
    rows = None if check_rows is None else np.asarray(check_rows, dtype=np.float64)
    key = (hashlib.sha256(data).hexdigest(), limit, timeout_s, rows_digest(rows))
    passed = _PASSED.get(key)
    if passed is not None:  # its own opset dict: a caller keeps it in the version's details
        return dataclasses.replace(passed, opset=dict(passed.opset))

    # the probe loads the bytes hashed above, from its stdin: a file swapped meanwhile
    # passed for bytes no probe loaded, and the pass was remembered under their hash
    # -P: `python -m` would put the working directory first on sys.path, and a shadow/
    # package or a numpy.py there ran in the probe instead of ours (PYTHONPATH still counts)
    with tempfile.TemporaryDirectory(prefix="shadow-probe-") as tmp:
        command = [sys.executable, "-P", "-m", "shadow._probe", "-"]
        if rows is not None:
            np.save(Path(tmp) / "rows.npy", rows, allow_pickle=False)
            command.append(str(Path(tmp) / "rows.npy"))
        ran = _run_probe(command, data, path, limit, timeout_s)
    done = subprocess.CompletedProcess(
        ran.args,
        ran.returncode,
        ran.stdout.decode("utf-8", "replace"),
        ran.stderr.decode("utf-8", "replace"),
    )
    payload = _parse_payload(done.stdout)
    if done.returncode == 0 and payload is not None and "signature" in payload:
        signature = Signature.from_dict(payload["signature"])
        scored = dict(payload.get("scored", {}))
        info = CandidateInfo(
            signature=signature,
            load_memory_bytes=max(0, int(payload.get("memory_bytes", 0))),
            opset={str(k): int(v) for k, v in dict(payload.get("opset", {})).items()},
            size_bytes=len(data),
            sha256=key[0],
            scored={
                batch: ScoredRows.from_payload(scored[batch], signature.primary_output)
                for batch in ("constant", "given")
                if batch in scored
            },
            check_rows_sha256=key[3],
        )
        _PASSED.put(key, info)
        return dataclasses.replace(info, opset=dict(info.opset))
    raise _rejection(path, done, payload, limit, asked=memory_limit_bytes)


def _run_probe(
    command: list[str], data: bytes, path: Path, limit: int, timeout_s: float
) -> subprocess.CompletedProcess[bytes]:
    """Run the probe ``command`` on ``data`` (its stdin) under ``limit`` and ``timeout_s``."""
    try:
        return subprocess.run(
            command,
            input=data,
            capture_output=True,
            timeout=timeout_s,
            preexec_fn=_limit_address_space(limit),
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CandidateRejectedError(
            f"loading {path} took longer than {timeout_s:g} s", code="load_timeout"
        ) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        # SubprocessError: the child failed before exec, setting its limit (its own
        # exception stays in the child)
        logger.warning("candidate %s: the probe process did not start: %s", path, exc)
        raise CandidateRejectedError(
            f"could not start the probe process for {path}: {exc}", code="load_failed"
        ) from exc


def _parse_payload(stdout: str) -> dict[str, Any] | None:
    line = _last_line(stdout)
    try:
        payload = json.loads(line)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _rejection(
    path: Path,
    done: subprocess.CompletedProcess[str],
    payload: dict[str, Any] | None,
    memory_limit_bytes: int,
    *,
    asked: int,
) -> CandidateRejectedError:
    stderr_line = _last_line(done.stderr)
    if memory_limit_bytes < asked:  # capped at the hard limit (see _probe_limit)
        capped = f", this process's hard limit, below the {asked} bytes asked for"
    else:
        capped = ""
    if payload is not None and payload.get("error") in CANDIDATE_REJECTED_CODES:
        code = cast(CandidateRejectedCode, str(payload["error"]))
        message = str(payload.get("message", ""))
        if code == "load_memory":
            message = f"{message} (address-space limit {memory_limit_bytes} bytes{capped})"
        logger.info("candidate %s rejected by probe: %s: %s", path, code, message)
        return CandidateRejectedError(f"{path}: {message}", code=code)
    if any(marker in done.stderr for marker in MEMORY_MARKERS):
        return CandidateRejectedError(
            f"{path}: the probe ran out of memory under an address-space limit of "
            f"{memory_limit_bytes} bytes{capped}: {stderr_line}",
            code="load_memory",
        )
    how = (
        f"was killed by signal {-done.returncode}"
        if done.returncode < 0
        else f"exited with status {done.returncode}"
    )
    logger.warning("candidate %s: probe %s; stderr: %s", path, how, done.stderr[-2000:])
    return CandidateRejectedError(
        f"{path}: loading the model {how}: {stderr_line}", code="load_failed"
    )
