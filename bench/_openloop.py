"""An open-loop HTTP load generator: requests leave at fixed Poisson arrival times,
whatever the server's answers are doing (wrk is closed-loop: each connection waits for
its answer, so it measures latency at saturation only).

Latency is taken from each request's scheduled time to the last byte of its answer, so
a server that falls behind is charged for the queue it builds (no coordinated
omission). The dispatch loop spins on the clock (the generator owns its core, as wrk
does) so requests leave within microseconds of their schedule. Connections are a fixed
pool, as wrk2's and a load balancer's upstream pool are: a request due while every
connection is busy waits for the first one free, and its wait counts in its latency.
(Opening a connection whenever every open one was busy turned a server's hiccup into a
storm of new connections, thousands in six seconds, which the server then had to accept
as well as answer.) Answers must carry ``Content-Length`` (no chunked encoding), as
tunewatch's and Starlette's JSON answers do. Prints one JSON object.

    python bench/_openloop.py --port P --path /v2/models/m/infer --body body.json \\
        --header "Authorization: Bearer T" --rate 3000 --duration 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque
from pathlib import Path
from typing import cast

import numpy as np


class _Pool:
    """The connections, those free to send, and requests waiting for one."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.done: list[tuple[float, float, float, int]] = []
        self.idle: deque[_Connection] = deque()
        self.waiting: deque[float] = deque()  # scheduled times of requests not yet sent
        self.alive = 0

    def dispatch(self, scheduled: float) -> None:
        while self.idle and self.idle[0].lost:
            self.idle.popleft()
        if self.idle:
            self.idle.popleft().send(self.request, scheduled)
        else:
            self.waiting.append(scheduled)

    def free(self, conn: _Connection) -> None:
        if self.waiting:
            conn.send(self.request, self.waiting.popleft())
        else:
            self.idle.append(conn)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._buffer = b""
        self._sent: deque[tuple[float, float]] = deque()  # (scheduled, sent) in flight
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._pool.alive += 1

    def send(self, request: bytes, scheduled: float) -> None:
        assert self.transport is not None
        self._sent.append((scheduled, time.perf_counter()))
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            status = int(head.split(" ", 2)[1])
            self._buffer = self._buffer[total:]
            self._pool.done.append((*self._sent.popleft(), time.perf_counter(), status))
            if not self._sent:
                self._pool.free(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._pool.alive -= 1


async def _run(args: argparse.Namespace) -> dict[str, float | int]:
    loop = asyncio.get_running_loop()
    body = Path(args.body).read_bytes()
    headers = "".join(f"{h}\r\n" for h in args.header)
    request = (
        f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
        f"Content-Type: application/json\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body
    rng = np.random.default_rng(args.seed)
    n = int(args.rate * args.duration)
    arrivals = np.cumsum(rng.exponential(1 / args.rate, size=n))
    pool = _Pool(request)
    opened = 0

    async def connect() -> None:
        nonlocal opened
        _, conn = await loop.create_connection(lambda: _Connection(pool), "127.0.0.1", args.port)
        opened += 1
        pool.free(conn)

    for _ in range(args.connections):
        await connect()
    start = time.perf_counter() + 0.05
    late = 0.0
    for due in arrivals:
        scheduled = start + float(due)
        while time.perf_counter() < scheduled:
            await asyncio.sleep(0)  # let answers in while we wait for the schedule
        late = max(late, time.perf_counter() - scheduled)
        if pool.alive < args.connections:  # the server closed one: the pool keeps its size
            await connect()
        pool.dispatch(scheduled)
    deadline = time.perf_counter() + args.drain_timeout
    done = pool.done
    while len(done) < n and time.perf_counter() < deadline:
        await asyncio.sleep(0.001)
    if not done:
        raise SystemExit(f"no answer to any of {n} requests")
    latencies = np.array([end - scheduled for scheduled, _, end, _ in done])
    from_send = np.array([end - sent for _, sent, end, _ in done])
    errors = sum(1 for *_, status in done if status != 200)
    span = max(end for _, _, end, _ in done) - start
    return {
        "sent": n,
        "answered": len(done),
        "lost": n - len(done),  # in flight on a connection the server closed, or too late
        "errors": errors,
        "offered_rps": args.rate,
        "achieved_rps": len(done) / span if span else 0.0,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "p999_s": float(np.percentile(latencies, 99.9)),
        # The same, from the moment the request was written: tells the generator's own
        # hiccups (p99_s well above this) from the server's.
        "p99_from_send_s": float(np.percentile(from_send, 99)),
        "max_dispatch_lateness_s": late,
        "connections_opened": opened,
        "connections": args.connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--drain-timeout", type=float, default=10.0, help="seconds to wait for late answers"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
