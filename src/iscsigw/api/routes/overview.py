"""Live state for the dashboard (iscsigw extension): gateways up/down, sessions, LUN I/O.

``GET /api/_overview`` is one gateway's own view (its iSCSI portals, sessions and per-LUN
counters); ``GET /api/overview`` asks every gateway of the configuration for theirs and says
per gateway ``up`` (API and iSCSI answer), ``partial`` (API answers, iSCSI portals down),
``down`` (API unreachable) or ``unknown`` (never registered its API).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from ...gateway.management import GatewayManager
from ...gateway.peers import peer_get_all
from ...iostats import io_counters
from ._common import ApiRoute, Call, data


def local_overview(manager: GatewayManager) -> dict[str, Any]:
    """This gateway's live state (what ``/api/_overview`` returns)."""
    problems = manager.iscsi_problems()
    runtime = manager.runtime
    luns: dict[str, dict[str, int]] = {}
    if runtime is not None:
        for key, lu in sorted(runtime.lus.items()):
            luns[key] = {"size": int(lu.backend.size), **io_counters(lu).as_dict()}
    sessions = [
        {"initiator": s.initiator, "target": s.target, "ip_address": s.peer_ip,
         "alias": s.alias, "portal": s.portal, "auth": s.auth, "luns": s.luns}
        for s in manager.sessions()
    ]  # fmt: skip
    return {
        "gateway": manager.name,
        "state": "partial" if problems else "up",
        "problems": problems,
        "portals": [f"{ip}:{port}" for ip, port in manager.portals],
        "applied_epoch": manager.watcher.applied_epoch if manager.watcher else 0,
        "sessions": sorted(sessions, key=lambda s: (s["target"], s["initiator"])),
        "luns": luns,
    }


async def _overview(call: Call) -> JSONResponse:
    """Internal: this gateway's live state (iSCSI portals, sessions, per-LUN I/O counters)"""
    return data(local_overview(call.manager))


async def overview(call: Call) -> JSONResponse:
    """Live state of every gateway: up/partial/down, sessions, per-LUN I/O (iscsigw extension)"""
    m = call.manager
    doc = await m.config_dict()
    peers = m.peers(doc)
    answers = await peer_get_all(peers, "/api/_overview", auth=m.auth)
    gateways: dict[str, Any] = {m.name: local_overview(m)}
    for name, endpoint in peers.items():
        body = answers.get(name)
        if isinstance(body, dict):
            gateways[name] = body
        else:
            state = "down" if endpoint else "unknown"
            reason = (
                f"API not reachable at {endpoint}"
                if endpoint
                else "this gateway has not registered its API (never started)"
            )
            gateways[name] = {"gateway": name, "state": state, "problems": [reason],
                              "sessions": [], "luns": {}}  # fmt: skip
    return data({"epoch": doc.get("epoch", 0), "gateways": dict(sorted(gateways.items()))})


ROUTES = [
    ApiRoute("/api/overview", ("GET",), overview),
    ApiRoute("/api/_overview", ("GET",), _overview),
]
