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
from typing import TYPE_CHECKING

from ..config.edits import register_gateway
from ..config.names import format_endpoint
from ..config.settings import CephConnection, GatewaySettings
from ..config.store import ConfigStore
from .driver import IscsiProtocol
from .management import GatewayManager
from .options import ApiOptions
from .rawsock import Listener, listen
from .runtime import GatewayRuntime
from .watch import POLL_INTERVAL, ConfigWatcher

if TYPE_CHECKING:
    from ..api.server import ApiServer

log = logging.getLogger("iscsigw.server")


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


def _reachable_host(host: str, portals: list[tuple[str, int]]) -> str:
    """A wildcard API address is advertised to peers as the first portal IP."""
    if host in ("", "0.0.0.0", "::"):
        return portals[0][0] if portals else "127.0.0.1"
    return host


async def _start_api(
    options: ApiOptions, manager: GatewayManager, portals: list[tuple[str, int]]
) -> ApiServer:
    from ..api import build_app, start_api  # starlette/uvicorn only when the API is on

    api = await start_api(
        build_app(manager),
        options.host,
        options.port,
        certfile=options.certfile,
        keyfile=options.keyfile,
    )
    host = _reachable_host(options.host, portals)
    shown = f"[{host}]" if ":" in host else host
    manager.api_endpoint = f"{api.scheme}://{shown}:{api.port}"
    log.info("REST API listening on %s (advertised as %s)", api.url, manager.api_endpoint)
    if options.print_url:
        s = options.settings
        print(
            f"API URL: {api.scheme}://{s.api_user}:{s.api_password}@{shown}:{api.port}",
            flush=True,
        )
    return api


async def run_gateway(
    store: ConfigStore,
    data_dir: Path | str,
    name: str,
    portals: list[tuple[str, int]],
    *,
    api: ApiOptions | None = None,
    poll_interval: float = POLL_INTERVAL,
    ceph: CephConnection | None = None,
) -> int:
    config, epoch = store.load()
    runtime = GatewayRuntime(config, data_dir=Path(data_dir), name=name, ceph=ceph)
    await runtime.open()
    servers = await start_portals(runtime, portals)
    watcher = ConfigWatcher(store, runtime, interval=poll_interval)
    manager = GatewayManager(
        name=name,
        settings=api.settings if api else GatewaySettings(),
        store=store,
        data_dir=Path(data_dir),
        runtime=runtime,
        watcher=watcher,
        default_backstore=api.default_backstore if api else "file",
    )
    manager.portals = list(portals)
    manager.listeners = list(servers)  # GET /api/_ping answers 503 when one stops accepting
    api_server: ApiServer | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if api is not None:
            api_server = await _start_api(api, manager, portals)
        endpoints = [format_endpoint(ip, port) for ip, port in portals]
        await manager.commit(
            lambda doc: register_gateway(doc, name, manager.api_endpoint, endpoints)
        )
        await watcher.sync()
        watcher.start()
        log.info("gateway %s ready (config epoch %d)", name, watcher.applied_epoch or epoch)
        await stop.wait()
        log.info("stopping gateway %s", name)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await watcher.stop()
        if api_server is not None:
            await api_server.stop()
        for s in servers:
            s.close()
        await runtime.close()
    log.info("gateway %s stopped", name)
    return 0
