"""Config (read and replace), settings, sysinfo, session counts, liveness and apply status."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from ...config import edits
from ...config.model import DISK_CONTROLS, TARGET_CONTROLS, Control
from ...config.settings import GatewaySettings
from ...errors import ConfigError, ConfigNotFound
from ._common import ApiRoute, Call, changed, data, reply

API_VERSION = 2
BACKSTORES = ["user:rbd", "file", "memory"]
# RBD_FEATURE_EXCLUSIVE_LOCK, as ceph-iscsi requires it for user:rbd.
_REQUIRED_FEATURES = {"user:rbd": 4, "file": 0, "memory": 0}


def _limits(known: dict[str, Control]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ctl in known.items():
        if ctl.lo is None:
            out[name] = {"type": "bool"}
        else:
            out[name] = {"min": ctl.lo, "max": ctl.hi, "type": "int"}
    return out


def settings_reply(settings: GatewaySettings, default_backstore: str) -> dict[str, Any]:
    target_defaults = {n: settings.target_control_default(n) for n in TARGET_CONTROLS}
    disk_defaults = {n: settings.disk_control_default(n) for n in DISK_CONTROLS}
    default = "user:rbd" if default_backstore == "rbd" else default_backstore
    return {
        "target_default_controls": target_defaults,
        "target_controls_limits": _limits(TARGET_CONTROLS),
        "disk_default_controls": {bs: dict(disk_defaults) for bs in BACKSTORES},
        "disk_controls_limits": {bs: _limits(DISK_CONTROLS) for bs in BACKSTORES},
        "unsupported_rbd_features": {bs: 0 for bs in BACKSTORES},
        "required_rbd_features": dict(_REQUIRED_FEATURES),
        "backstores": list(BACKSTORES),
        "default_backstore": default,
        "config": {"minimum_gateways": settings.minimum_gateways},
        "api_version": API_VERSION,
    }


async def config(call: Call) -> JSONResponse:
    """Return (GET) or replace (PUT) the complete config object (includes CHAP secrets)

    PUT takes the whole document in the form field config, as GET returns it or gwcli export
    writes it (a ceph-iscsi gateway.conf version 11 with plain-text secrets also works). It is
    validated before anything is written; then every gateway applies it like any other change.
    :param decrypt_passwords: (bool) accepted for compatibility; secrets are stored in plain text
    :param config: (str) PUT: the JSON document
    """
    if call.method == "PUT":
        return await _replace_config(call)
    call.params.flag("decrypt_passwords")
    return data(await call.manager.config_dict())


async def _replace_config(call: Call) -> JSONResponse:
    raw = call.params.required("config", "the whole configuration as a JSON document")
    try:
        candidate = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
            "nothing was changed"
        )
    doc = edits.check_document(candidate)
    result = await call.change(lambda current: edits.replace_document(current, doc))
    return changed(result, "configuration replaced")


async def get_settings(call: Call) -> JSONResponse:
    """List settings: control defaults and limits, backstores, minimum_gateways, api_version"""
    return data(settings_reply(call.manager.settings, call.manager.default_backstore))


async def sysinfo(call: Call) -> JSONResponse:
    """Return system information: ip_addresses, hostname, checkconf or checkversions"""
    query = call.path("query_type")
    m = call.manager
    if query == "ip_addresses":
        return data({"data": m.local_addresses()})
    if query == "hostname":
        return data({"data": m.name})
    if query == "checkconf":
        return data({"data": m.settings.checkconf_hash()})
    if query == "checkversions":
        return data({"data": "checks passed"})
    return reply("Unknown /sysinfo query", 404)


async def ping(call: Call) -> JSONResponse:
    """Simple "is alive" ping responder (503 when this gateway's iSCSI portals are not listening)"""
    problems = call.manager.iscsi_problems()
    if problems:
        return reply(f"iSCSI is down on {call.manager.name}: {'; '.join(problems)}", 503)
    return reply("pong")


async def status(call: Call) -> JSONResponse:
    """This gateway's applied configuration epoch (and the outcome for ?epoch=N)"""
    raw = call.params.get("epoch")
    epoch = int(raw) if raw and raw.isdigit() else None
    return data(call.manager.status(epoch))


async def gatewayinfo(call: Call) -> JSONResponse:
    """Returns the number of active sessions on this gateway"""
    doc = await call.manager.config_dict()
    if call.manager.name not in (doc.get("gateways") or {}):
        raise ConfigNotFound(f"Gateway {call.manager.name} does not exist in configuration")
    return data({"num_sessions": call.manager.num_sessions()})


async def _require_target(call: Call) -> str:
    iqn = call.iqn()
    doc = await call.manager.config_dict()
    if iqn not in (doc.get("targets") or {}):
        raise ConfigNotFound(f"Target {iqn} does not exist")
    return iqn


async def targetinfo(call: Call) -> JSONResponse:
    """Returns the total number of active sessions for <target_iqn> over all gateways"""
    iqn = await _require_target(call)
    return data({"num_sessions": await call.manager.target_sessions(iqn)})


async def _targetinfo(call: Call) -> JSONResponse:
    """Returns the number of active sessions for <target_iqn> on this gateway"""
    iqn = await _require_target(call)
    return data({"num_sessions": call.manager.num_sessions(iqn)})


ROUTES = [
    ApiRoute("/api/config", ("GET", "PUT"), config),
    ApiRoute("/api/settings", ("GET",), get_settings),
    ApiRoute("/api/sysinfo/{query_type}", ("GET",), sysinfo, auth="basic"),
    ApiRoute("/api/gatewayinfo", ("GET",), gatewayinfo),
    ApiRoute("/api/targetinfo/{target_iqn}", ("GET",), targetinfo),
    ApiRoute("/api/_targetinfo/{target_iqn}", ("GET",), _targetinfo),
    ApiRoute("/api/_ping", ("GET",), ping),
    ApiRoute("/api/_status", ("GET",), status),
]
