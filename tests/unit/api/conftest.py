"""An API app over a real file store, runtime and watcher, driven in-process via httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from apikit import GW, PASSWORD, USER, Api, ApiFactory, make_settings

from iscsigw.api import build_app
from iscsigw.config.file_store import FileConfigStore
from iscsigw.config.settings import GatewaySettings
from iscsigw.gateway.management import GatewayManager
from iscsigw.gateway.runtime import GatewayRuntime
from iscsigw.gateway.watch import ConfigWatcher


@pytest.fixture
async def api_factory(tmp_path: Path) -> AsyncIterator[ApiFactory]:
    clients: list[httpx.AsyncClient] = []
    runtimes: list[GatewayRuntime] = []

    async def make(
        *, ip: str = "127.0.0.1", auth: tuple[str, str] | None = (USER, PASSWORD),
        settings: GatewaySettings | None = None,
    ) -> Api:  # fmt: skip
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        store = FileConfigStore(data_dir / "gateway.conf")
        if not store.exists():
            store.commit(lambda doc: None)
        config, _ = store.load()
        runtime = GatewayRuntime(config, data_dir=data_dir, name=GW)
        await runtime.open()
        runtimes.append(runtime)
        manager = GatewayManager(
            name=GW,
            settings=settings or make_settings(),
            store=store,
            data_dir=data_dir,
            runtime=runtime,
            watcher=ConfigWatcher(store, runtime),
            peer_wait=0.3,
        )
        transport = httpx.ASGITransport(app=build_app(manager), client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://gw", auth=auth)
        clients.append(client)
        return Api(client, manager, data_dir)

    yield make
    for client in clients:
        await client.aclose()
    for runtime in runtimes:
        await runtime.close()


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    return await api_factory()
