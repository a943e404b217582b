"""Servers the scoring benchmark starts as subprocesses (each pinned to one core).

``baseline``: the bare minimum — Starlette + onnxruntime, no validation, recording or
shadow. ``tunewatch``: the real daemon, with recording and shadowing switched by flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def baseline_app(model_path: str) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    async def infer(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        outputs = session.run(None, {name: x})
        return JSONResponse(
            {
                "model_name": "baseline",
                "outputs": [
                    {"name": o.name, "shape": list(v.shape), "data": v.ravel().tolist()}
                    for o, v in zip(session.get_outputs(), outputs, strict=True)
                ],
            }
        )

    return Starlette(routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["baseline", "tunewatch"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model")
    parser.add_argument("--config")
    parser.add_argument("--no-recording", action="store_true")
    parser.add_argument("--no-shadow", action="store_true")
    args = parser.parse_args()
    # the baseline runs uvicorn's own httptools protocol; tunewatch the one it ships with
    http: type[asyncio.Protocol] | str = "httptools"
    if args.kind == "baseline":
        app = baseline_app(args.model)
    else:
        from tunewatch._config import load_config
        from tunewatch._daemon import Daemon
        from tunewatch.api._http_protocol import BoundedHttpToolsProtocol

        app = Daemon(
            load_config(args.config), recording=not args.no_recording, shadowing=not args.no_shadow
        ).app
        http = BoundedHttpToolsProtocol
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http=http,
        # tunewatch has no WebSocket route: `tunewatch serve` answers upgrades as HTTP/1.1
        ws="auto" if args.kind == "baseline" else "none",
    )


if __name__ == "__main__":
    main()
