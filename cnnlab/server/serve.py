"""Running the server: bind the socket first (a taken port fails before the model loads), then uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from cnnlab.deploy.predict import Predictor
from cnnlab.errors import ConfigError
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.server.limits import DEFAULT_LIMITS, Limits


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a ConfigError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        hint = " (in use? choose another with --port, or --port 0 for a free one)" if port else ""
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}{hint}"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(
    run: Run,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "auto",
    export_path: str | Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Load the run, listen, print the address, and serve until Ctrl-C."""
    import uvicorn

    # One thread per request: the server runs `limits.workers` requests at once, and a
    # single-image model gains little from splitting each layer over cores, while every
    # multi-threaded op waits for its slowest thread, badly so on a busy machine.
    torch.set_num_threads(1)
    sock = bind_socket(host, port)  # first: a taken port fails before the model is loaded
    predictor = Predictor(run, engine, export_path, threads=1)
    app = create_app(predictor, limits)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {run.path} on http://{shown}:{bound_port}/  (API docs: /docs; Ctrl-C stops)",
        flush=True,
    )
    print(predictor.choice.line(), flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
