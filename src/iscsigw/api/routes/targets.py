"""Targets, their gateways (portals), CHAP/ACL settings and LUN mapping."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from ...config import edits
from ...config.edits._doc import disk_key, parse_lun_id
from ...errors import ConfigError, ConfigNotFound
from ._common import ApiRoute, Call, bad_method, changed, data, reply


def _creds(call: Call) -> tuple[str, str, str, str]:
    p = call.params
    return (p.text("username"), p.text("password"), p.text("mutual_username"),
            p.text("mutual_password"))  # fmt: skip


async def get_targets(call: Call) -> JSONResponse:
    """List the iSCSI targets defined in the configuration"""
    doc = await call.manager.config_dict()
    return data({"targets": list((doc.get("targets") or {}).keys())})


async def target(call: Call) -> JSONResponse:
    """Define (PUT) or delete (DELETE) a target; PUT mode=reconfigure changes its controls

    :param mode: (str) empty to define the target, 'reconfigure' to change controls
    :param controls: (JSON dict) target control overrides, e.g. {"cmdsn_depth": 64}
    """
    iqn = call.iqn()
    if call.method == "DELETE":

        def drop(doc: dict[str, Any]) -> None:
            if call.internal and iqn not in (doc.get("targets") or {}):
                return  # clearconfig calls every portal; the first one already deleted it
            edits.delete_target(doc, iqn)

        return changed(await call.change(drop), "Target deleted.")
    mode = call.params.text("mode")
    if mode not in ("", "reconfigure"):
        raise ConfigError(f"Unexpected mode provided for {iqn} - {mode}; use mode=reconfigure")
    controls = call.params.controls()
    if mode == "reconfigure":
        result = await call.change(lambda doc: edits.reconfigure_target(doc, iqn, controls))
        return changed(result, "Target reconfigured.")
    result = await call.change(lambda doc: _define(doc, iqn, controls))
    return changed(result, "Target defined successfully")


def _define(doc: dict[str, Any], iqn: str, controls: dict[str, Any]) -> None:
    edits.create_target(doc, iqn, controls)


async def gateways(call: Call) -> JSONResponse:
    """Show the portals (gateways) of <target_iqn>"""
    iqn = call.iqn()
    doc = await call.manager.config_dict()
    t = (doc.get("targets") or {}).get(iqn)
    if t is None:
        raise ConfigNotFound(f"Target {iqn} is not defined")
    return data(t.get("portals") or {})


async def gateway(call: Call) -> JSONResponse:
    """Add (PUT) or remove (DELETE) a gateway (its portal TPG) on a target

    :param ip_address: (str) comma separated portal IPs (IP or IP:PORT) of the gateway
    :param nosync: (bool) accepted for compatibility (every gateway syncs from the store)
    :param skipchecks: (bool) do not check that the gateway listens on these addresses
    :param force: (bool) accepted for compatibility (a down gateway is removed anyway)
    """
    iqn = call.iqn()
    name = call.path("gateway_name")
    if call.method == "GET":
        doc = await call.manager.config_dict()
        portal = ((doc.get("targets") or {}).get(iqn) or {}).get("portals", {}).get(name)
        if portal is None:
            raise ConfigNotFound("Gateway doesn't exist in the configuration")
        return data(portal)
    if call.method == "DELETE":
        call.params.flag("force")

        def drop(doc: dict[str, Any]) -> None:
            portals = ((doc.get("targets") or {}).get(iqn) or {}).get("portals", {})
            if call.internal and iqn in (doc.get("targets") or {}) and name not in portals:
                return
            edits.remove_portal(doc, iqn, name)

        return changed(await call.change(drop), "Gateway deletion successful")
    ips = call.params.csv("ip_address")
    if not ips:
        raise ConfigError("ip_address is required: the portal IP address(es) of the gateway")
    call.params.flag("nosync")
    skip = call.params.flag("skipchecks")

    def add(doc: dict[str, Any]) -> None:
        portals = ((doc.get("targets") or {}).get(iqn) or {}).get("portals", {})
        if call.internal and name in portals:
            return
        edits.add_portal(doc, iqn, name, ips, skipchecks=skip)

    return changed(await call.change(add), "Gateway creation successful")


async def targetauth(call: Call) -> JSONResponse:
    """Set target-level CHAP (username/password/mutual_*) and/or action=enable_acl|disable_acl

    ceph-iscsi clients send an action or the credentials; an action alone keeps the CHAP.
    disable_acl with no target CHAP opens the target (any initiator, no authentication) as in
    ceph-iscsi; otherwise iscsigw requires CHAP.
    :param action: (str) enable_acl or disable_acl
    :param username: (str) 8-64 chars of letters, digits and . : @ _ -
    :param password: (str) 12-16 chars of letters, digits and @ - _ /
    :param mutual_username: (str) as username, for mutual CHAP
    :param mutual_password: (str) as password, for mutual CHAP
    :param auth_required: (bool) iscsigw extension: false lets initiators log in without CHAP (ACL by name only, or an open target), true requires CHAP
    """
    iqn = call.iqn()
    action = call.params.get("action") or None
    p = call.params
    names = ("username", "password", "mutual_username", "mutual_password")
    u, pw, mu, mpw = (p.text(n) if n in p else None for n in names)
    required = p.flag("auth_required") if p.get("auth_required") not in (None, "") else None
    outcome: list[bool] = []

    def edit(doc: dict[str, Any]) -> None:
        outcome[:] = [
            edits.set_target_auth(doc, iqn, action, u, pw, mu, mpw, auth_required=required)
        ]

    result = await call.change(edit)
    message = f"target auth {action or 'chap'} - successful"
    if outcome and not outcome[0]:
        message += " (CHAP not required on this target)"
    return changed(result, message)


async def discoveryauth(call: Call) -> JSONResponse:
    """Set discovery CHAP (empty username and password = no discovery authentication)

    :param username: (str) 8-64 chars of letters, digits and . : @ _ -
    :param password: (str) 12-16 chars of letters, digits and @ - _ /
    """
    creds = _creds(call)
    result = await call.change(lambda doc: edits.set_discovery_auth(doc, *creds))
    return changed(result, "discovery auth successful")


async def targetlun(call: Call) -> JSONResponse:
    """Map (PUT) or unmap (DELETE) a disk to/from a target

    :param disk: (str) pool/image of a disk defined in /api/disk
    :param lun_id: (int) LUN id 0-255 (default: the lowest free one)
    """
    iqn = call.iqn()
    key = disk_key(call.params.required("disk", "pool/image"))
    minimum = call.manager.settings.minimum_gateways
    if call.method == "PUT":
        lun_id = parse_lun_id(call.params.get("lun_id"))

        def add(doc: dict[str, Any]) -> None:
            t = (doc.get("targets") or {}).get(iqn) or {}
            if call.internal and key in t.get("disks", {}):
                return
            edits.map_lun(doc, iqn, key, lun_id, minimum)

        result = await call.change(add)
    elif call.method == "DELETE":

        def drop(doc: dict[str, Any]) -> None:
            t = (doc.get("targets") or {}).get(iqn) or {}
            if call.internal and t and key not in t.get("disks", {}):
                return
            edits.unmap_lun(doc, iqn, key)

        result = await call.change(drop)
    else:
        return bad_method(call)
    return changed(result, "Target LUN mapping updated successfully")


async def internal_targetauth(call: Call) -> JSONResponse:
    """Internal: apply target auth on this gateway"""
    await targetauth(call)
    return reply("OK")


async def internal_discoveryauth(call: Call) -> JSONResponse:
    """Internal: apply discovery auth on this gateway"""
    await discoveryauth(call)
    return reply("OK")


ROUTES = [
    ApiRoute("/api/targets", ("GET",), get_targets),
    ApiRoute("/api/target/{target_iqn}", ("PUT", "DELETE"), target),
    ApiRoute("/api/gateways/{target_iqn}", ("GET",), gateways),
    ApiRoute("/api/gateway/{target_iqn}/{gateway_name}", ("PUT", "DELETE"), gateway),
    ApiRoute("/api/targetlun/{target_iqn}", ("PUT", "DELETE"), targetlun),
    ApiRoute("/api/discoveryauth", ("PUT",), discoveryauth),
    ApiRoute("/api/targetauth/{target_iqn}", ("PUT",), targetauth),
    ApiRoute("/api/_target/{target_iqn}", ("PUT", "DELETE"), target),
    ApiRoute("/api/_gateway/{target_iqn}/{gateway_name}", ("GET", "PUT", "DELETE"), gateway),
    ApiRoute("/api/_targetlun/{target_iqn}", ("PUT", "DELETE"), targetlun),
    ApiRoute("/api/_discoveryauth", ("PUT",), internal_discoveryauth),
    ApiRoute("/api/_discoveryauth/", ("PUT",), internal_discoveryauth),
    ApiRoute("/api/_targetauth/{target_iqn}", ("PUT",), internal_targetauth),
]
