"""Helpers for the API tests: an ``Api`` client wrapper, names and settings used throughout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from iscsigw.config.settings import GatewaySettings
from iscsigw.gateway.management import GatewayManager

USER, PASSWORD = "admin", "not-the-default"
GW = "gw1.example.test"
T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
C = "iqn.1994-05.com.redhat:75c3d5efde0"
TRUSTED = "10.9.9.9"


class Api:
    """A few helpers over an ``httpx.AsyncClient`` bound to the ASGI app."""

    def __init__(self, client: httpx.AsyncClient, manager: GatewayManager, data_dir: Path) -> None:
        self.client = client
        self.manager = manager
        self.data_dir = data_dir

    async def call(self, method: str, path: str, status: int = 200, **form: Any) -> dict[str, Any]:
        data = {k: str(v) for k, v in form.items()}
        resp = await self.client.request(method, path, data=data or None)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        body = resp.json()
        assert isinstance(body, dict)
        return body

    async def get(self, path: str, status: int = 200, **form: Any) -> dict[str, Any]:
        return await self.call("GET", path, status, **form)

    async def put(self, path: str, status: int = 200, **form: Any) -> dict[str, Any]:
        return await self.call("PUT", path, status, **form)

    async def delete(self, path: str, status: int = 200, **form: Any) -> dict[str, Any]:
        return await self.call("DELETE", path, status, **form)

    async def config(self) -> dict[str, Any]:
        return await self.get("/api/config")

    async def seed(self, *, disk: bool = True, client: bool = True) -> None:
        """Target + this gateway's portal (+ a 1G disk mapped at LUN 0, + a client)."""
        await self.put(f"/api/target/{T}")
        await self.put(f"/api/gateway/{T}/{GW}", ip_address="127.0.0.1", skipchecks="true")
        if disk:
            await self.put("/api/disk/rbd/disk_1", mode="create", size="1G", pool="rbd")
            await self.put(f"/api/targetlun/{T}", disk="rbd/disk_1")
        if client:
            await self.put(f"/api/client/{T}/{C}")


def make_settings(**overrides: Any) -> GatewaySettings:
    base: dict[str, Any] = dict(
        api_user=USER,
        api_password=PASSWORD,
        api_secure=False,
        minimum_gateways=1,
        trusted_ip_list=(TRUSTED,),
    )
    base.update(overrides)
    return GatewaySettings(**base)


ApiFactory = Callable[..., Awaitable[Api]]
