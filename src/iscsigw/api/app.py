"""The ASGI application: the route table wired to auth, parameter parsing and error replies.

Besides the ``/api`` routes it serves ``/metrics`` (Prometheus, see ``metrics.py``) and the
web dashboard ``/dashboard`` (``/`` redirects there).

Errors become ceph-iscsi-shaped JSON replies ``{"message": …}``: a refused change
(``ConfigError``) is 400, a missing object (``ConfigNotFound``) 404, a store that kept changing
(``StoreBusy``) 503, anything unexpected 500 "Unhandled exception: …". A refused change has
written nothing.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import ConfigError, ConfigNotFound, IscsiGwError, StoreBusy
from ..gateway.management import GatewayManager
from .auth import check_access
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import metrics_text
from .openapi import openapi_spec
from .params import read_params
from .routes import ROUTES, ApiRoute, Call

log = logging.getLogger("iscsigw.api")

ALL_METHODS = ["GET", "PUT", "DELETE", "POST", "PATCH"]
_DASHBOARD = Path(__file__).with_name("static") / "dashboard.html"


def _endpoint(route: ApiRoute):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        manager: GatewayManager = request.app.state.manager
        if request.method not in route.methods:
            return JSONResponse(
                {"message": f"Method {request.method} is not allowed on {route.path}; "
                            f"use {', '.join(route.methods)}"},
                status_code=405, headers={"Allow": ", ".join(route.methods)},
            )  # fmt: skip
        denied = await check_access(request, manager, route.auth)
        if denied is not None:
            return denied
        try:
            params = await read_params(request)
            return await route.handler(Call(request, params, manager, internal=route.internal))
        except ConfigNotFound as exc:
            return JSONResponse({"message": str(exc)}, status_code=404)
        except StoreBusy as exc:
            return JSONResponse({"message": str(exc)}, status_code=503)
        except ConfigError as exc:
            log.info("%s %s refused: %s", request.method, request.url.path, exc)
            return JSONResponse({"message": str(exc)}, status_code=400)
        except IscsiGwError as exc:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
            return JSONResponse({"message": str(exc)}, status_code=500)
        except Exception as exc:
            log.exception("%s %s: unhandled exception", request.method, request.url.path)
            return JSONResponse({"message": f"Unhandled exception: {exc}"}, status_code=500)

    return endpoint


def _ceph_style(path: str) -> str:
    return re.sub(r"{(\w+)}", r"<\1>", path)


async def api_index(request: Request) -> Response:
    """Display all the available API endpoints"""
    links = []
    for route in sorted(ROUTES, key=lambda r: r.path):
        if route.internal:
            continue
        doc = (route.handler.__doc__ or "").strip().splitlines()
        links.append([
            f"{_ceph_style(route.path)} : {doc[0] if doc else ''}",
            f"Methods: {','.join(route.methods)}",
            [line.strip() for line in doc[1:] if line.strip()],
        ])  # fmt: skip
    return JSONResponse({"api": links})


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_spec())


async def metrics(request: Request) -> Response:
    """Prometheus text format, no authentication (like ceph-iscsi's rbd-target-gw)."""
    try:
        text = await metrics_text(request.app.state.manager)
    except Exception as exc:
        log.exception("GET /metrics failed")
        return JSONResponse({"message": f"Could not get metrics: {exc}"}, status_code=500)
    return Response(text, media_type=None, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def dashboard(request: Request) -> Response:
    """The web dashboard (HTML + JS polling /api/config and /api/overview); Basic auth."""
    manager: GatewayManager = request.app.state.manager
    denied = await check_access(request, manager, "restricted")
    if denied is not None:
        return denied
    page = _DASHBOARD.read_text(encoding="utf-8").replace(
        "<body>", f'<body data-gateway="{html.escape(manager.name)}">', 1
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def root(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Not found" if exc.status_code == 404 else exc.detail
    return JSONResponse({"message": message}, status_code=exc.status_code)


def build_app(manager: GatewayManager) -> Starlette:
    routes = [
        Route("/api", api_index, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/", root, methods=["GET"]),
    ]
    routes += [Route(r.path, _endpoint(r), methods=ALL_METHODS) for r in ROUTES]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.manager = manager
    return app


__all__ = ["build_app"]
