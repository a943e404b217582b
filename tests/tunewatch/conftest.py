"""Fixtures for the application layer: example models, a daemon, tokens per role."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

import tunewatch._registry as registry_module
from shadow import OnnxModel
from tunewatch._artefacts import ArtefactStore
from tunewatch._auth import ROLES, hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data, feature_names
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store

MODEL = "credit"


class HeldCalls:
    """``func``, whose first ``n`` calls wait until :attr:`release` is set (each releasing
    :attr:`entered` once it waits); any later call runs through. Slot tests hold a route's
    work with it, so the requests in progress keep their slots while another is tried;
    set :attr:`release` when done, or the daemon's threads wait for ``wait_s``."""

    def __init__(self, func: Callable[..., Any], n: int, *, wait_s: float = 60) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._func = func
        self._to_hold = n
        self._wait_s = wait_s
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            hold, self._to_hold = self._to_hold > 0, self._to_hold - 1
        if hold:
            self.entered.release()
            assert self.release.wait(self._wait_s), "the held call was never released"
        return self._func(*args, **kwargs)


@contextlib.contextmanager
def holding(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, n: int, *, wait_s: float = 60
) -> Iterator[HeldCalls]:
    """``owner.name`` replaced by a :class:`HeldCalls` of it holding its first ``n`` calls,
    released when the block ends, so the daemon's threads are never left waiting."""
    holder = HeldCalls(getattr(owner, name), n, wait_s=wait_s)
    monkeypatch.setattr(owner, name, holder)
    try:
        yield holder
    finally:
        holder.release.set()


@dataclass
class Running:
    daemon: Daemon
    server: BackgroundServer
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_daemon(
    data_dir: Path,
    trained: list[ExampleModel],
    *,
    store_url: str | None = None,
    extra: dict[str, object] | None = None,
) -> tuple[Daemon, dict[str, str]]:
    raw: dict[str, object] = {"data_dir": str(data_dir), **(extra or {})}
    if store_url:
        raw["store"] = {"url": store_url}
    daemon = Daemon(build_config(raw, env={}), env={})
    for model, stage in zip(trained, ("champion", "shadow"), strict=True):
        daemon.registry.register(
            MODEL, model.onnx, model.metadata, actor="test", stage=stage, reference=model.reference
        )  # type: ignore[arg-type]
    tokens = {}
    for role in ROLES:
        tokens[role] = new_token()
        daemon.store.add_token(
            name=f"test-{role}", role=role, token_hash=hash_token(tokens[role]), actor="test"
        )
    return daemon, tokens


def in_flight(
    requests: list[Callable[[], httpx.Response]],
) -> tuple[list[threading.Thread], list[httpx.Response]]:
    """Each of ``requests`` sent from a thread of its own, started: the threads, and the
    list their answers are appended to as they come."""
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda r=r: answers.append(r())) for r in requests]
    for t in threads:
        t.start()
    return threads, answers


def evaluating_daemon(
    data_dir: Path, trained: list[ExampleModel], *, window_rows: int
) -> tuple[Daemon, dict[str, str]]:
    """:func:`make_daemon` with the scheduler off and evaluation windows of ``window_rows``
    rows: the test evaluates when it chooses."""
    return make_daemon(
        data_dir,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "models": [
                {"name": MODEL, "task": "binary", "evaluation": {"window_rows": window_rows}}
            ],
        },
    )


def break_audit_appends(store: Store) -> None:
    """Make every later audit append fail: delete the chain's head, past the trigger
    that keeps it from moving anywhere but forward."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(sa.text("DROP TRIGGER audit_head_no_delete"))
        else:
            conn.execute(sa.text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        conn.execute(sa.text("DELETE FROM audit_head"))


def logistic_variant(
    *, input_dtype: str = "float32", outputs: tuple[str, str] = ("label", "probabilities")
) -> ExampleModel:
    """A logistic version of the example model with the same features but its own input
    dtype (``float32`` or ``float64``) and output names (label, probabilities)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from sklearn.linear_model import LogisticRegression

    x, y = example_data(600, seed=11)
    estimator = LogisticRegression(C=0.5).fit(x, y)
    tensor = DoubleTensorType if input_dtype == "float64" else FloatTensorType
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", tensor([None, 8]))],
        final_types=[(outputs[0], Int64TensorType([None])), (outputs[1], tensor([None, 2]))],
        options={id(estimator): {"zipmap": False}},
    )
    return ExampleModel(
        name=f"logistic-{input_dtype}-{outputs[1]}",
        onnx=proto.SerializeToString(),
        metadata=VersionMetadata(
            task="binary",
            feature_names=feature_names(8),
            # a pipeline's parameters only: one the pipeline does not know (the input's
            # dtype) would need an approver to promote it, and hold a live split of it
            hyperparameters={"estimator": "logistic", "C": 0.5},
            dataset_version=f"example-seed11-n600-{input_dtype}",
        ),
    )


@contextlib.contextmanager
def serving(
    data_dir: Path,
    trained: list[ExampleModel],
    *,
    store_url: str | None = None,
    extra: dict[str, object] | None = None,
) -> Iterator[Running]:
    """A daemon of the example models (:func:`make_daemon`), its scheduler off unless
    ``extra`` says otherwise, served over loopback HTTP until the block ends, then
    closed."""
    daemon, tokens = make_daemon(
        data_dir,
        trained,
        store_url=store_url,
        extra={"scheduler": {"enabled": False}, **(extra or {})},
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


@pytest.fixture
def registry(store: Store, tmp_path: Path) -> registry_module.Registry:
    """A registry over the test's ``store`` (its module's own, where it defines one) and
    artefacts under ``tmp_path``."""
    return registry_module.Registry(store, ArtefactStore(tmp_path / "artefacts"))


@pytest.fixture
def empty_store(sqlite_url: str) -> Iterator[Store]:
    """An SQLite store holding no model: a module's ``store`` for the registry's tests."""
    s = Store.open(sqlite_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def m_store(store_url: str) -> Iterator[Store]:
    """A store on each backend (``store_url``) holding model ``m`` (binary, features ``a``
    and ``b``): a module's ``store`` for tests of both backends."""
    s = Store.open(store_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store(empty_store: Store) -> Store:
    """An SQLite store holding model ``m`` (binary, features ``a`` and ``b``), as the
    launcher's tests queue jobs for; a module defining its own ``store`` overrides it."""
    empty_store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    return empty_store


@pytest.fixture(scope="module")
def running(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A daemon on SQLite serving the example models over loopback HTTP."""
    daemon, tokens = make_daemon(
        tmp_path_factory.mktemp("daemon"),
        trained,
        extra={
            "server": {"max_body_bytes": 65536, "max_batch_rows": 64},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "features": [{"name": "x0", "low": -10.0, "high": 10.0}],
                }
            ],
        },
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)


class Clock:
    """An injected clock for evaluators, dispatchers and fed records."""

    def __init__(self, start: datetime | None = None) -> None:
        # request times lie in the recent past: labels are stamped with the real time
        self.now = start or datetime.now(UTC) - timedelta(hours=6)

    def __call__(self) -> datetime:
        return self.now


def next_midnight() -> datetime:
    """The next UTC midnight: a stream of days starting there lies on decay's daily
    window edges (:mod:`tunewatch._decay_windows`), so each day is one window whenever
    the test runs."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def champion_answered(
    request_id: str, at: datetime, inputs: np.ndarray, output: np.ndarray, *, version: int
) -> tuple[RequestRecord, OutputRecord]:
    """One request of ``MODEL`` (``inputs``, a row or more) and the champion's answer
    (``output``), both at ``at``, as the recorder writes them: inputs as float32."""
    request = RequestRecord(
        model=MODEL,
        request_id=request_id,
        received_at=at,
        source="infer",
        n_rows=inputs.shape[0],
        n_cols=inputs.shape[1],
        inputs=np.ascontiguousarray(inputs, dtype=np.float32).tobytes(),
    )
    answer = OutputRecord(
        model=MODEL,
        request_id=request_id,
        version=version,
        role="champion",
        latency_s=1e-4,
        n_rows=output.shape[0],
        n_cols=output.shape[1],
        values=np.ascontiguousarray(output, dtype=np.float32).tobytes(),
        created_at=at,
    )
    return request, answer


def feed(
    d: Daemon,
    clock: Clock,
    start: int,
    n: int,
    *,
    shift: float,
    seed: int,
    labels: bool = True,
    edit: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Score ``n`` single-row requests of seeded example data with the champion and write
    them (and their labels) the way the daemon records them, ``clock`` advancing 1 s each.
    ``edit`` may change the rows in place first."""
    x, y = example_data(n, seed=seed, shift=shift)
    if edit is not None:
        edit(x)
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    probs = session.primary(session.run(x))
    requests, outputs = [], []
    for i in range(n):
        clock.now += timedelta(seconds=1)
        request, output = champion_answered(
            f"r{start + i}", clock.now, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)
    if labels:
        d.store.add_labels(
            MODEL, [LabelItem(request_id=f"r{start + i}", value=float(y[i])) for i in range(n)]
        )


@pytest.fixture
def inspected(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every candidate the registry inspects (each a child process, unless
    the same bytes passed before), in order."""
    seen: list[bytes] = []
    inspect = registry_module.inspect_candidate

    def counted(path: Path, **kwargs: Any) -> Any:
        seen.append(path.read_bytes())
        return inspect(path, **kwargs)

    monkeypatch.setattr(registry_module, "inspect_candidate", counted)
    return seen


@pytest.fixture
def store_with_model_a(store_url: str) -> Iterator[Store]:
    """A store (each backend) holding binary model ``a`` of one feature ``x``."""
    s = Store.open(store_url)
    s.ensure_model(name="a", task="binary", feature_names=["x"])
    try:
        yield s
    finally:
        s.close()
