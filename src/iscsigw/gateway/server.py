"""Listen on the portals, run until SIGTERM/SIGINT, then stop cleanly.

Clean stop: stop accepting, let running commands finish (their writes are acknowledged or
never were), close every connection, flush every backend (fdatasync), exit 0.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from pathlib import Path
from typing import Protocol

from ..config.model import GatewayConfig
from .driver import IscsiProtocol
from .rawsock import Listener, listen
from .runtime import GatewayRuntime

log = logging.getLogger("iscsigw.server")


class _Store(Protocol):
    def load(self) -> tuple[GatewayConfig, int]: ...


async def start_portals(runtime: GatewayRuntime, portals: list[tuple[str, int]]) -> list[Listener]:
    loop = asyncio.get_running_loop()
    listeners: list[Listener] = []
    try:
        for ip, port in portals:
            label = f"{ip}:{port}"
            sock = listen(ip, port)
            listeners.append(Listener(loop, sock, functools.partial(IscsiProtocol, runtime, label)))
            log.info("listening for iSCSI on %s", label)
    except BaseException:
        for s in listeners:
            s.close()
        raise
    return listeners


async def run_gateway(
    store: _Store, data_dir: Path | str, name: str, portals: list[tuple[str, int]]
) -> int:
    config, epoch = store.load()
    runtime = GatewayRuntime(config, data_dir=Path(data_dir), name=name)
    await runtime.open()
    servers = await start_portals(runtime, portals)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway %s ready (config epoch %d)", name, epoch)
    try:
        await stop.wait()
        log.info("stopping gateway %s", name)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for s in servers:
            s.close()
        await runtime.close()
    log.info("gateway %s stopped", name)
    return 0
