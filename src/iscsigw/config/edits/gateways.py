"""Gateways: portals of a target (one TPG per gateway) and the gateway registry.

Each running gateway registers itself in the top-level ``gateways`` map with where its REST
API listens (``api_endpoint``) and where it listens for iSCSI (``portal_endpoints``). That is
how peers find each other for status reports, and how ``PUT /api/gateway`` learns the port of
a portal IP when the request names only the IP (as gwcli does).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import ConfigError, ConfigNotFound
from ..model import DEFAULT_PORTAL_PORT
from ..names import format_endpoint, parse_endpoint, validate_gateway_name
from ._doc import Doc, count_lun, gateways, now, pick_owner, refresh_ip_lists, target, touch


def registered_endpoints(doc: Doc, name: str) -> list[tuple[str, int]]:
    entry = gateways(doc).get(name) or {}
    out: list[tuple[str, int]] = []
    for text in entry.get("portal_endpoints", []) or []:
        try:
            out.append(parse_endpoint(text, DEFAULT_PORTAL_PORT))
        except ConfigError:
            continue
    return out


def _has_port(text: str) -> bool:
    s = text.strip()
    return "]:" in s if s.startswith("[") else s.count(":") == 1


def add_portal(
    doc: Doc, iqn: str, gateway: str, ip_addresses: Sequence[str], skipchecks: bool = False
) -> list[str]:
    """Give ``gateway`` a TPG with these portal addresses; returns them as stored."""
    name, t = target(doc, iqn)
    validate_gateway_name(gateway, "gateway")
    portals = t.setdefault("portals", {})
    if gateway in portals:
        raise ConfigError("Gateway already exists in configuration")
    if not ip_addresses:
        raise ConfigError("ip_address is required: the portal IP address(es) of the gateway")
    known = registered_endpoints(doc, gateway)
    port_of = {ip: port for ip, port in known}
    endpoints: list[tuple[str, int]] = []
    for text in ip_addresses:
        ip, port = parse_endpoint(text, DEFAULT_PORTAL_PORT, "ip_address")
        if not _has_port(text):
            port = port_of.get(ip, port)
        if known and not skipchecks and (ip, port) not in known:
            listening = ", ".join(format_endpoint(i, p) for i, p in known)
            raise ConfigError(
                f"gateway {gateway} does not listen on {format_endpoint(ip, port)} (it listens "
                f"on {listening}); restart it with that --portal or pass skipchecks=true"
            )
        for other, p in portals.items():
            for entry in p.get("portal_ip_addresses", []):
                try:
                    other_ip, other_port = parse_endpoint(
                        entry, int(p.get("portal_port", DEFAULT_PORTAL_PORT))
                    )
                except ConfigError:
                    continue
                if (other_ip, other_port) == (ip, port):
                    raise ConfigError(
                        f"{format_endpoint(ip, port)} is already a portal of gateway {other} "
                        f"on target {name}"
                    )
        endpoints.append((ip, port))
    used = {int(p.get("tpg", 0)) for p in portals.values()}
    tpg = next(n for n in range(1, len(used) + 2) if n not in used)
    portal_port = endpoints[0][1]
    stored = [format_endpoint(ip, port, portal_port) for ip, port in endpoints]
    portals[gateway] = {
        "portal_ip_addresses": stored,
        "portal_port": portal_port,
        "tpg": tpg,
    }
    entry = gateways(doc).setdefault(gateway, {"active_luns": 0, "created": now()})
    entry.setdefault("active_luns", 0)
    entry["updated"] = now()
    refresh_ip_lists(t)
    touch(t)
    return stored


def remove_portal(doc: Doc, iqn: str, gateway: str) -> None:
    """Drop the gateway's TPG; LUNs it owned move to the least loaded remaining gateway."""
    name, t = target(doc, iqn)
    portals = t.setdefault("portals", {})
    if gateway not in portals:
        raise ConfigNotFound(f"Gateway {gateway} does not exist in target {name}")
    del portals[gateway]
    for key in t.get("disks", {}):
        d = doc.get("disks", {}).get(key)
        if d is None or d.get("owner") != gateway:
            continue
        count_lun(doc, gateway, -1)
        owner = pick_owner(doc, t)
        d["owner"] = owner
        count_lun(doc, owner, +1)
    refresh_ip_lists(t)
    touch(t)


def register_gateway(
    doc: Doc, name: str, api_endpoint: str, portal_endpoints: Sequence[str]
) -> None:
    """Record where a running gateway's API and portals are (no change, no write)."""
    validate_gateway_name(name, "gateway")
    entry = gateways(doc).get(name)
    if entry is None:
        entry = gateways(doc)[name] = {"active_luns": 0, "created": now()}
    wanted = {"api_endpoint": api_endpoint, "portal_endpoints": list(portal_endpoints)}
    if any(entry.get(k) != v for k, v in wanted.items()):
        entry.update(wanted)
        entry["updated"] = now()


__all__ = ["add_portal", "register_gateway", "registered_endpoints", "remove_portal"]
