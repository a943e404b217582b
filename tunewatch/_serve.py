"""``tunewatch serve``: the daemon in the foreground under uvicorn, on sockets bound
before the store is opened, so a port it cannot listen on is refused before a migration,
the scheduler's lease or a worker."""

from __future__ import annotations

import contextlib
import dis
import faulthandler
import functools
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType, FrameType

from tunewatch._config import Config
from tunewatch._daemon import Daemon, request_grace_s
from tunewatch._data_dir_lock import DataDirLock, shared_data_dir_lock
from tunewatch._errors import TunewatchError
from tunewatch._fd_limit import LIMIT_ANSWER_CODE, answering_over_limit, raise_open_file_limit
from tunewatch.store import redact_url
from tunewatch.store._write_deadline import WRITE_DEADLINE_MARGIN_S

logger = logging.getLogger(__name__)


#: The listening socket's queue of connections not yet accepted (uvicorn's default).
BACKLOG = 2048
#: What a forced quit (Ctrl-C again during the stop) gives the tuning workers to exit
#: before they are killed, and the scheduler's running jobs before its lease is released.
FORCED_STOP_S = 3.0
SIGHUP_IGNORED = (
    "SIGHUP ignored: tunewatch reads its configuration at start; restart it to apply a change"
)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on every address ``host`` resolves to, as asyncio's
    ``create_server`` (which uvicorn calls) binds them: taken before the daemon touches its
    store, so that a port in use is refused before a migration, the scheduler's lease or a
    worker. A failure is a :class:`TunewatchError` naming ``host:port`` and the reason."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # the IPv4 address gets a socket of its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # listening at once: two processes may bind one port with SO_REUSEADDR until
            # either listens; a connection meanwhile waits for the app to start
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = exc.strerror or str(exc)
        raise TunewatchError(f"cannot listen on {shown}: {reason}", code="cannot_listen") from exc
    return sockets


def serve(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM, on sockets bound before the
    store is opened (see :func:`listen`), under an open-file limit raised as far as it goes
    (see :mod:`tunewatch._fd_limit`).

    SIGTERM or SIGINT: readiness answers 503 ``shutting_down`` at once; requests are
    served ``server.shutdown_delay_s`` more (with ``Connection: close``); then the listener
    closes, requests in flight get their grace (:func:`request_grace_s`) and the daemon
    closes (workers, scheduler, recorder, store). SIGINT again before that ends (uvicorn's
    "CTRL+C to force quit") cuts the delay and the grace short and closes the daemon with
    :data:`FORCED_STOP_S` for its workers and scheduled jobs. The process then ends by the
    signal it got (SIGINT if it got one), its threads still running abandoned: joined, a
    job stuck in the store kept the process, and its writes, past the scheduler's grace.
    SIGHUP is ignored (logged): there is no reload."""
    # a crash (SIGSEGV, SIGABRT) writes every thread's traceback to the log, not nothing
    faulthandler.enable(file=2, all_threads=True)  # fd 2: sys.stderr may have none
    with _ignoring_sighup():
        ended_by = _serve(config, host=host, port=port)
    if ended_by is not None:
        _end_by(ended_by)


def _serve(config: Config, *, host: str | None, port: int | None) -> int | None:
    """:func:`serve` until uvicorn returns; the signal the process is to end by, if any."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from tunewatch.api._http_protocol import bounded_protocol

    host = host or config.server.host
    port = config.server.port if port is None else port
    sockets = listen(host, port)
    data_dir_lock: DataDirLock | None = None
    try:
        # before the store takes its descriptors; after listen, whose refusal is one line
        connection_limit = raise_open_file_limit()
        if not config.scheduler.enabled and config.tuning.workers:
            # the launcher is a task of the leader's: a retune answered "taken" here stays
            # queued, holding a quota slot, until a leader starts it (the demo, which runs
            # its own launcher's ticks, does not come through here)
            logger.warning(
                "scheduler.enabled is false: this process starts no tuning job "
                "(tuning.workers: %d unused); queued jobs start on the scheduler's leader "
                "only",
                config.tuning.workers,
            )
        # where the records go, before the store is opened: an environment variable may
        # have overridden the file's (see tunewatch._config.build_config)
        logger.info("store %s, data directory %s", redact_url(config.store_url), config.data_dir)
        # held until the daemon closed: `tunewatch demo` clears only a directory no process
        # holds (a demo's, served as the README suggests after a demo, lost its store under
        # the daemon, which answered 200 on); a demo clearing it now is waited for
        data_dir_lock = shared_data_dir_lock(Path(config.data_dir))
        daemon = Daemon(config)
        grace_s = request_grace_s(config)
        commit_s = config.store.lock_timeout_s + WRITE_DEADLINE_MARGIN_S

        delay_s = config.server.shutdown_delay_s

        class Server(uvicorn.Server):
            def __init__(self, config: uvicorn.Config) -> None:
                super().__init__(config)
                self.signals: list[int] = []  # the stop's, in the order they came
                self.drain_until: float | None = None  # server.shutdown_delay_s's end

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                # uvicorn's, but the signal is not raised again from inside the event
                # loop (:func:`serve` ends the process by it once the daemon closed); a
                # signal handler: no logging here (a write to the log it interrupted
                # would be re-entered), on_tick and shutdown log
                first = not self.signals
                self.signals.append(sig)
                if first:  # readiness answers 503 from now on
                    # once: a later signal may run inside this set(), whose lock (not
                    # re-entrant) this thread holds, and a set() there waited for ever
                    daemon.stopping.set()
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True
                if delay_s > 0 and not self.force_exit:
                    # from the same moment as readiness, not the next tick: an answer
                    # given in between kept its connection open
                    self.close_connections()

            def close_connections(self) -> None:
                """Every answer from now on closes its connection (uvicorn sets its
                default headers anew each second: :meth:`on_tick` does this again)."""
                if _CLOSE not in self.server_state.default_headers:
                    self.server_state.default_headers = [
                        *self.server_state.default_headers,
                        _CLOSE,
                    ]

            async def on_tick(self, counter: int) -> bool:
                should_exit = await super().on_tick(counter)
                if not should_exit or self.force_exit or delay_s == 0:
                    return should_exit
                now = time.monotonic()
                if self.drain_until is None:
                    self.drain_until = now + delay_s
                    logger.info(
                        "shutting down: readiness answers 503 shutting_down; serving %.1f s "
                        "more (server.shutdown_delay_s), each answer closing its "
                        "connection, before closing the listener",
                        delay_s,
                    )
                self.close_connections()
                return now >= self.drain_until

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                # before uvicorn's grace starts: a request whose commit could not end
                # within it is answered 503 and not recorded, rather than cut off with a
                # bare 500 and recorded as the recorder closes; an Alertmanager delivery
                # stops between two alerts, each committed, and is answered 503 for its
                # retry (one waiting for a webhook thread at once)
                daemon.recorder.begin_shutdown(grace_s=grace_s, commit_s=commit_s)
                daemon.alert_stop.begin(grace_s=grace_s, commit_s=commit_s)
                await super().shutdown(sockets)
                if self.force_exit:  # uvicorn skips the app's shutdown: the daemon's close
                    _shorten_close(daemon)
                    await self.lifespan.shutdown()

        protocol = bounded_protocol(read_timeout_s=config.server.request_read_timeout_s)
        if connection_limit is not None:
            protocol = answering_over_limit(
                protocol, limit=connection_limit, counted=_counter_of_refusals(daemon)
            )
        server = Server(
            uvicorn.Config(
                daemon.app,
                host=host,
                port=port,
                access_log=False,
                log_level="info",
                # no handlers of uvicorn's own: its lines ("Started server process",
                # "Shutting down", its errors) reach the root logger's, as tunewatch's
                # records (UTC stamp, level, logger); access_log=False keeps uvicorn.access
                # without a handler and not propagating
                log_config=None,
                lifespan="on",
                backlog=BACKLOG,
                timeout_graceful_shutdown=grace_s,
                # connections and requests at once, below the open-file limit: past it a
                # request is answered 503, where a connection past the descriptors was
                # accepted and closed unanswered (see tunewatch._fd_limit)
                limit_concurrency=connection_limit,
                # whose X-Forwarded-Proto says the page was served over HTTPS (the
                # dashboard's session cookie is Secure then)
                forwarded_allow_ips=list(config.server.trusted_proxies),
                # httptools, with a bound on each request's head and on its time to arrive
                http=protocol,
                # no WebSocket route: an upgrade request is answered as HTTP/1.1
                ws="none",
            )
        )
        # given sockets, uvicorn does not say where it listens
        for sock in sockets:
            logger.info("listening on http://%s", _address_of(sock))
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: a Ctrl-C at start
            server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        if data_dir_lock is not None:
            data_dir_lock.close()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the app's startup failed
    if not server.signals:
        return None
    return signal.SIGINT if signal.SIGINT in server.signals else server.signals[-1]


_CLOSE = (b"connection", b"close")


def _shorten_close(daemon: Daemon) -> None:
    """Bound the daemon's close for a forced quit, which uvicorn ends without the app's
    shutdown (the daemon's close): the workers get :data:`FORCED_STOP_S` to exit (then
    are killed, their jobs queued again), the scheduler's running jobs as long before its
    lease is released. Skipped, the workers ran on orphaned, their jobs left ``running``,
    the lease stayed held until it expired and the recorder was not closed."""
    logger.warning(
        "forced quit (SIGINT during the stop): requests in flight are cut off; the tuning "
        "workers get %.0f s to exit and the scheduled jobs %.0f s before the scheduler's "
        "lease is released",
        FORCED_STOP_S,
        FORCED_STOP_S,
    )
    if daemon.config.scheduler.enabled:  # else no launcher, and no workers to stop
        daemon.launcher.stop_timeout_s = FORCED_STOP_S
    daemon.scheduler.stop_grace_s = FORCED_STOP_S


@contextlib.contextmanager
def _ignoring_sighup() -> Iterator[None]:
    """SIGHUP logged and ignored while serving: its default action ended the process at
    once (the workers orphaned, their jobs left ``running``, the scheduler's lease held)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are the main thread's
        return
    previous = signal.signal(signal.SIGHUP, _sighup_received)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def _sighup_received(signum: int, frame: FrameType | None) -> None:
    # logged from a thread: a signal handler's write could re-enter the one it interrupted
    threading.Thread(
        target=logger.warning, args=(SIGHUP_IGNORED,), name="tunewatch-sighup", daemon=True
    ).start()


def _end_by(sig: int) -> None:
    """End the process by ``sig`` (its default action), as uvicorn does after a graceful
    stop, once the daemon has closed: the threads still running (a scheduled job stuck in
    the store) are abandoned, not joined. Python's exit joins them: a stuck evaluation kept
    a process stopped by SIGINT alive, writing to the store, past the scheduler's grace."""
    frames = sys._current_frames()
    left = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread()
        and t.is_alive()
        and not t.daemon
        and not _idle_pool_worker(t, frames.get(t.ident or 0))
    ]
    if left:
        logger.warning(
            "ending with %d threads still running, abandoned: %s", len(left), ", ".join(left)
        )
    logging.shutdown()  # the log flushed
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or none
            stream.flush()
    signal.signal(sig, signal.SIG_DFL)
    signal.raise_signal(sig)
    os._exit(128 + sig)  # should the signal be blocked


def _idle_pool_worker(thread: threading.Thread, frame: FrameType | None) -> bool:
    """Whether ``thread`` is a worker of anyio's thread pool (sync routes run in it) not in
    a job: waiting for one, reporting the one it finished, or told to stop (when the event
    loop's main task ended) and ending. It is not left running: its stop command ends it
    once it is scheduled (warned of as abandoned, it paged every ordinary stop after a sync
    route had been called). A worker in a job (a sync route the grace cut off) is one still
    running: the frame ``WorkerThread.run`` calls is the job's, not the pool's own."""
    try:
        from anyio._backends._asyncio import WorkerThread
    except ImportError:  # anyio moved it: every worker counts as running, as before
        return False
    if not isinstance(thread, WorkerThread):
        return False
    if frame is None:  # not running Python: ending if what it took was its stop command
        return thread.stopping and thread.queue.empty()
    own = {queue.Queue.get.__code__, queue.Queue.task_done.__code__}
    for method in ("call_soon_threadsafe", "is_closed"):  # reporting the job's result
        code = getattr(getattr(type(thread.loop), method, None), "__code__", None)
        if code is not None:
            own.add(code)
    run = WorkerThread.run.__code__
    if frame.f_code is run:  # in its own lines, or on the call of a job of C code
        return frame.f_lasti not in _job_calls(run)
    while frame.f_back is not None:
        if frame.f_back.f_code is run:
            return frame.f_code in own
        frame = frame.f_back
    return True  # outside its loop: starting or ending


@functools.cache
def _job_calls(run: CodeType) -> frozenset[int]:
    """The offsets of ``WorkerThread.run``'s calls of the job (``context.run(func, *args)``):
    the instruction a frame of it stands on while the job runs."""
    calls, after_run = set(), False
    for instruction in dis.get_instructions(run):
        if instruction.argval == "run" and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            after_run = True
        elif after_run and instruction.opname.startswith("CALL"):
            calls.add(instruction.offset)
            after_run = False
    return frozenset(calls)


def _counter_of_refusals(daemon: Daemon) -> Callable[[], None]:
    """Count a request answered 503 past the connection limit as the app counts its own
    answers (route ``unmatched``: it was never routed); they were counted nowhere."""
    requests = daemon.metrics.http_requests.labels("unmatched", "503")
    errors = daemon.metrics.http_errors.labels(LIMIT_ANSWER_CODE)

    def counted() -> None:
        requests.inc()
        errors.inc()

    return counted


def _address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
