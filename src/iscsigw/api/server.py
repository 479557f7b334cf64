"""Serve the API with uvicorn inside the gateway's own asyncio loop.

The socket is bound here (so a busy port is a clear ``ConfigError`` instead of uvicorn's
``sys.exit``) and handed to ``uvicorn.Server.serve(sockets=…)`` running as a task. uvicorn's
signal capture is switched off: the gateway owns SIGTERM/SIGINT and stops the API itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from ..errors import ConfigError

START_TIMEOUT = 10.0


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"API address {where} is already in use; pick another with --api IP:PORT "
                "or api_port in iscsi-gateway.cfg"
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"API address {where}: {host} is not an address of this host")
        raise ConfigError(f"cannot listen for the API on {where}: {exc.strerror}")
    return sock


@dataclass
class ApiServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await asyncio.wait_for(self.task, 10)


def _check_tls(certfile: Path, keyfile: Path) -> None:
    for path, what in ((certfile, "certificate"), (keyfile, "key")):
        if not path.is_file():
            raise ConfigError(
                f"api_secure is true but the TLS {what} {path} does not exist; create "
                f"{certfile.name} and {keyfile.name} there or set api_secure = false"
            )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot use {certfile} / {keyfile} for HTTPS: {exc}")


async def start_api(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> ApiServer:
    if (certfile is None) != (keyfile is None):
        raise ConfigError("HTTPS needs both a certificate and a key")
    if certfile is not None and keyfile is not None:
        _check_tls(certfile, keyfile)
    sock = bind_socket(host, port)
    bound_port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="api-server")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not server.started:
        if task.done():
            sock.close()
            exc = task.exception() if not task.cancelled() else None
            raise ConfigError(f"the API server did not start: {exc!r}")
        if loop.time() > deadline:
            server.should_exit = True
            raise ConfigError("the API server did not start within 10 s")
        await asyncio.sleep(0.01)
    return ApiServer(server, task, host, bound_port, "https" if certfile else "http")


__all__ = ["ApiServer", "bind_socket", "start_api"]
