"""Running the server: bind the socket first (a taken port fails before the model loads), then uvicorn.

uvicorn closes idle keep-alive connections, but not one whose request headers never end:
`HeaderTimeoutH11` closes a connection whose headers take over `header_timeout_s`.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import torch
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.deploy.predict import Predictor
from cnnlab.errors import ConfigError
from cnnlab.i18n import _
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


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not in after a time.

    The clock starts when the connection opens and again after each response (the next
    request's headers); it stops when a request's headers are complete.
    """

    header_timeout_s = 10.0  # set per server by `uvicorn_config`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # before: a pipelined request in super() disarms it
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self.transport.close()  # connection_lost() then tidies h11's state


def uvicorn_config(app: Any, limits: Limits = DEFAULT_LIMITS) -> uvicorn.Config:
    """uvicorn's settings for `app`: quiet, and headers bounded by `limits.header_timeout_s`."""
    protocol = type("H11", (HeaderTimeoutH11,), {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(
        app,
        http=protocol,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="off",
    )


def serve(
    run: Run,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "auto",
    export_path: str | Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Load the run, listen, print the address, and serve until Ctrl-C."""
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
        _("serving {path} on {url}  (run report: /run; API docs: /docs; Ctrl-C stops)").format(
            path=run.path, url=f"http://{shown}:{bound_port}/"
        ),
        flush=True,
    )
    print(predictor.choice.line(), flush=True)
    uvicorn.Server(uvicorn_config(app, limits)).run(sockets=[sock])
