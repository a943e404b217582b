"""``tunewatch serve``: the daemon in the foreground under uvicorn, on sockets bound
before the store is opened, so a port it cannot listen on is refused before a migration,
the scheduler's lease or a worker."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import socket
import sys
from collections.abc import Callable

from tunewatch._config import Config
from tunewatch._daemon import Daemon, request_grace_s
from tunewatch._errors import TunewatchError
from tunewatch._fd_limit import LIMIT_ANSWER_CODE, answering_over_limit, raise_open_file_limit
from tunewatch.store import redact_url
from tunewatch.store._write_deadline import WRITE_DEADLINE_MARGIN_S

logger = logging.getLogger(__name__)


#: The listening socket's queue of connections not yet accepted (uvicorn's default).
BACKLOG = 2048


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
    (see :mod:`tunewatch._fd_limit`)."""
    # a crash (SIGSEGV, SIGABRT) writes every thread's traceback to the log, not nothing
    faulthandler.enable(file=2, all_threads=True)  # fd 2: sys.stderr may have none
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from tunewatch.api._http_protocol import bounded_protocol

    host = host or config.server.host
    port = config.server.port if port is None else port
    sockets = listen(host, port)
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
        daemon = Daemon(config)
        grace_s = request_grace_s(config)
        commit_s = config.store.lock_timeout_s + WRITE_DEADLINE_MARGIN_S

        class Server(uvicorn.Server):
            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                # before uvicorn's grace starts: a request whose commit could not end
                # within it is answered 503 and not recorded, rather than cut off with a
                # bare 500 and recorded as the recorder closes; an Alertmanager delivery
                # stops between two alerts, each committed, and is answered 503 for its
                # retry (one waiting for a webhook thread at once)
                daemon.recorder.begin_shutdown(grace_s=grace_s, commit_s=commit_s)
                daemon.alert_stop.begin(grace_s=grace_s, commit_s=commit_s)
                await super().shutdown(sockets)

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
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: a second Ctrl-C
            server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the app's startup failed


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
