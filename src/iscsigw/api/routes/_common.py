"""What every route handler gets (``Call``) and the reply shapes ceph-iscsi clients read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ...config.names import normalize_iscsi_name, split_disk_key
from ...errors import ConfigError
from ...gateway.management import ChangeResult, GatewayManager
from ..params import Params


@dataclass
class Call:
    request: Request
    params: Params
    manager: GatewayManager
    internal: bool = False  # an ``/api/_…`` twin: apply here, do not wait for the peers

    @property
    def method(self) -> str:
        return self.request.method

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def iqn(self, name: str = "target_iqn") -> str:
        raw = self.path(name)
        try:
            return normalize_iscsi_name(raw, "")
        except ConfigError as exc:
            raise ConfigError(f"Invalid iqn {raw} - {exc}")

    def disk_key(self) -> str:
        pool, image = split_disk_key(f"{self.path('pool')}/{self.path('image')}", "disk")
        return f"{pool}/{image}"

    async def change(self, mutator: Callable[[dict[str, Any]], None]) -> ChangeResult:
        return await self.manager.change(mutator, wait_peers=not self.internal)


Handler = Callable[[Call], Awaitable[JSONResponse]]


@dataclass(frozen=True)
class ApiRoute:
    """One path: its methods, handler and who may call it (none | basic | restricted)."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    auth: str = "restricted"

    @property
    def internal(self) -> bool:
        return any(part.startswith("_") for part in self.path.split("/"))

    @property
    def summary(self) -> str:
        doc = (self.handler.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def reply(message: Any, status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


def data(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def changed(result: ChangeResult, message: str) -> JSONResponse:
    """200 with ceph-iscsi's ``message`` plus what each gateway did with the change."""
    return JSONResponse({"message": message, "epoch": result.epoch, "gateways": result.gateways})


def bad_method(call: Call) -> JSONResponse:
    return reply(f"Method {call.method} is not supported here", 405)


__all__ = ["ApiRoute", "Call", "Handler", "bad_method", "changed", "data", "reply"]
