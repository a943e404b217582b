"""An open-loop HTTP load generator: requests leave at fixed Poisson arrival times,
whatever the server's answers are doing (wrk is closed-loop: each connection waits for
its answer, so it measures latency at saturation only).

Latency is taken from each request's scheduled time to the last byte of its answer, so
a server that falls behind is charged for the queue it builds (no coordinated
omission). The dispatch loop spins on the clock (the generator owns its core, as wrk
does) so requests leave within microseconds of their schedule; a connection is opened
whenever every open one is busy. Answers must carry ``Content-Length`` (no chunked
encoding), as tunewatch's and Starlette's JSON answers do. Prints one JSON object.

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


class _Connection(asyncio.Protocol):
    def __init__(
        self, done: list[tuple[float, float, float, int]], idle: deque[_Connection]
    ) -> None:
        self._done = done
        self._idle = idle
        self._buffer = b""
        self._sent: deque[tuple[float, float]] = deque()  # (scheduled, sent) in flight
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

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
            self._done.append((*self._sent.popleft(), time.perf_counter(), status))
            if not self._sent:
                self._idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


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
    done: list[tuple[float, float, float, int]] = []
    idle: deque[_Connection] = deque()
    opened = 0

    async def connection() -> _Connection:
        nonlocal opened
        _, conn = await loop.create_connection(
            lambda: _Connection(done, idle), "127.0.0.1", args.port
        )
        opened += 1
        return conn

    for _ in range(args.connections):
        idle.append(await connection())
    start = time.perf_counter() + 0.05
    late = 0.0
    for due in arrivals:
        scheduled = start + float(due)
        while time.perf_counter() < scheduled:
            await asyncio.sleep(0)  # let answers in while we wait for the schedule
        late = max(late, time.perf_counter() - scheduled)
        while idle and idle[0].lost:
            idle.popleft()
        conn = idle.popleft() if idle else await connection()
        conn.send(request, scheduled)
    deadline = time.perf_counter() + args.drain_timeout
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
