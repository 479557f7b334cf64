"""Clients (initiator ACLs), their CHAP and LUNs, login info, and host groups."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from ...config import edits
from ...config.edits._doc import disk_key
from ...config.names import normalize_iscsi_name
from ...errors import ConfigError, ConfigNotFound
from ._common import ApiRoute, Call, bad_method, changed, data, reply


def _client_iqn(call: Call) -> str:
    raw = call.path("client_iqn")
    try:
        return normalize_iscsi_name(raw, "")
    except ConfigError as exc:
        raise ConfigError(f"Invalid iqn {raw} - {exc}")


async def _target_doc(call: Call, iqn: str) -> dict[str, Any]:
    t = ((await call.manager.config_dict()).get("targets") or {}).get(iqn)
    if t is None:
        raise ConfigNotFound(f"Target {iqn} does not exist")
    return dict(t)


async def get_clients(call: Call) -> JSONResponse:
    """List the clients (initiator IQNs) defined on <target_iqn>"""
    t = await _target_doc(call, call.iqn())
    return data({"clients": list((t.get("clients") or {}).keys())})


async def client(call: Call) -> JSONResponse:
    """Define (PUT) or delete (DELETE) a client (an initiator allowed to log in)"""
    iqn, cname = call.iqn(), _client_iqn(call)
    if call.method == "GET":
        c = (await _target_doc(call, iqn)).get("clients", {}).get(cname)
        if c is None:
            raise ConfigNotFound("Client does not exist")
        return data(c)
    if call.method == "PUT":
        minimum = call.manager.settings.minimum_gateways
        result = await call.change(lambda doc: _create(doc, iqn, cname, minimum))
        return changed(result, "client create/update successful")
    if call.method != "DELETE":
        return bad_method(call)
    t = await _target_doc(call, iqn)
    if cname not in (t.get("clients") or {}):
        if call.internal:
            return reply("Client deleted ok")
        raise ConfigNotFound(f"Client {cname} does not exist")
    logins = await call.manager.client_logins(iqn, cname)
    if logins:
        raise ConfigError(
            f"Client {cname} is logged in (on {', '.join(sorted(logins))}); log it out before "
            "deleting it"
        )
    result = await call.change(lambda doc: edits.delete_client(doc, iqn, cname))
    return changed(result, "client delete successful")


def _create(doc: dict[str, Any], iqn: str, cname: str, minimum: int) -> None:
    edits.create_client(doc, iqn, cname, minimum)


async def clientauth(call: Call) -> JSONResponse:
    """Set a client's CHAP credentials (all empty = no CHAP)

    :param username: (str) 8-64 chars of letters, digits and . : @ _ -
    :param password: (str) 12-16 chars of letters, digits and @ - _ /
    :param mutual_username: (str) as username, for mutual CHAP
    :param mutual_password: (str) as password, for mutual CHAP
    """
    iqn, cname = call.iqn(), _client_iqn(call)
    p = call.params
    creds = (p.text("username"), p.text("password"), p.text("mutual_username"),
             p.text("mutual_password"))  # fmt: skip
    result = await call.change(lambda doc: edits.set_client_auth(doc, iqn, cname, *creds))
    return changed(result, "client auth successful")


async def clientlun(call: Call) -> JSONResponse:
    """Give (PUT) or take away (DELETE) one of the target's disks to/from a client

    :param disk: (str) pool/image, mapped to the target first (PUT /api/targetlun)
    """
    iqn, cname = call.iqn(), _client_iqn(call)
    key = disk_key(call.params.required("disk", "pool/image"))
    if call.method == "PUT":
        result = await call.change(lambda doc: _add_lun(doc, iqn, cname, key))
    else:
        result = await call.change(lambda doc: edits.client_remove_lun(doc, iqn, cname, key))
    return changed(result, "client masking update successful")


def _add_lun(doc: dict[str, Any], iqn: str, cname: str, key: str) -> None:
    edits.client_add_lun(doc, iqn, cname, key)


async def internal_clientlun(call: Call) -> JSONResponse:
    """Internal: a client's LUNs (GET) or set them to image_list (PUT)"""
    iqn, cname = call.iqn(), _client_iqn(call)
    if call.method == "GET":
        c = (await _target_doc(call, iqn)).get("clients", {}).get(cname)
        if c is None:
            raise ConfigNotFound("Client does not exist")
        return reply(c.get("luns") or {})
    wanted = [disk_key(k) for k in call.params.csv("image_list")]

    def set_luns(doc: dict[str, Any]) -> None:
        t = (doc.get("targets") or {}).get(iqn) or {}
        current = list(((t.get("clients") or {}).get(cname) or {}).get("luns", {}))
        for key in current:
            if key not in wanted:
                edits.client_remove_lun(doc, iqn, cname, key)
        for key in wanted:
            edits.client_add_lun(doc, iqn, cname, key)

    await call.change(set_luns)
    return reply("Client configured successfully")


async def internal_clientauth(call: Call) -> JSONResponse:
    """Internal: apply a client's CHAP on this gateway"""
    await clientauth(call)
    return reply("Client configured successfully")


async def clientinfo(call: Call) -> JSONResponse:
    """Login state of a client: the gateways it is logged in to and its IP addresses"""
    iqn, cname = call.iqn(), _client_iqn(call)
    t = await _target_doc(call, iqn)
    if cname not in (t.get("clients") or {}):
        raise ConfigNotFound(f"Client {cname} does not exist")
    logins, alias = await call.manager.client_state(iqn, cname)
    state: dict[str, Any] = {"LOGGED_IN": sorted(logins)} if logins else {}
    ips = sorted({ip for addrs in logins.values() for ip in addrs})
    return data({"alias": alias, "state": state, "ip_address": ips})


async def internal_clientinfo(call: Call) -> JSONResponse:
    """Internal: login state of a client on this gateway"""
    iqn, cname = call.iqn(), _client_iqn(call)
    t = await _target_doc(call, iqn)
    if cname not in (t.get("clients") or {}):
        raise ConfigNotFound(f"Client {cname} does not exist")
    ips = call.manager.client_addresses(iqn, cname)
    alias = call.manager.client_alias(iqn, cname) if ips else ""
    return data({"alias": alias, "state": "LOGGED_IN" if ips else "", "ip_address": ips})


async def hostgroups(call: Call) -> JSONResponse:
    """List the host groups of <target_iqn>"""
    t = await _target_doc(call, call.iqn())
    return data({"groups": list((t.get("groups") or {}).keys())})


async def hostgroup(call: Call) -> JSONResponse:
    """Show (GET), create/update (PUT) or delete (DELETE) a host group

    :param action: (str) add (default) or remove
    :param members: (str) comma separated client IQNs
    :param disks: (str) comma separated pool/image disks of the target
    """
    iqn, group = call.iqn(), call.path("group_name")
    if call.method == "GET":
        g = (await _target_doc(call, iqn)).get("groups", {}).get(group)
        if g is None:
            raise ConfigNotFound("Group name does not exist")
        return data(g)
    if call.method == "DELETE":

        def drop(doc: dict[str, Any]) -> None:
            t = (doc.get("targets") or {}).get(iqn) or {}
            if call.internal and t and group not in (t.get("groups") or {}):
                return
            edits.delete_group(doc, iqn, group)

        result = await call.change(drop)
        return changed(result, f"Group '{group}' removed")
    action = call.params.text("action", "add") or "add"
    members, disks = call.params.csv("members"), call.params.csv("disks")
    result = await call.change(
        lambda doc: edits.update_group(doc, iqn, group, action, members, disks)
    )
    return changed(result, "hostgroup create/update successful")


ROUTES = [
    ApiRoute("/api/clients/{target_iqn}", ("GET",), get_clients),
    ApiRoute("/api/client/{target_iqn}/{client_iqn}", ("PUT", "DELETE"), client),
    ApiRoute("/api/clientauth/{target_iqn}/{client_iqn}", ("PUT",), clientauth),
    ApiRoute("/api/clientlun/{target_iqn}/{client_iqn}", ("PUT", "DELETE"), clientlun),
    ApiRoute("/api/clientinfo/{target_iqn}/{client_iqn}", ("GET",), clientinfo),
    ApiRoute("/api/hostgroups/{target_iqn}", ("GET",), hostgroups),
    ApiRoute("/api/hostgroup/{target_iqn}/{group_name}", ("GET", "PUT", "DELETE"), hostgroup),
    ApiRoute("/api/_client/{target_iqn}/{client_iqn}", ("GET", "PUT", "DELETE"), client),
    ApiRoute("/api/_clientauth/{target_iqn}/{client_iqn}", ("PUT",), internal_clientauth),
    ApiRoute("/api/_clientlun/{target_iqn}/{client_iqn}", ("GET", "PUT"), internal_clientlun),
    ApiRoute("/api/_clientinfo/{target_iqn}/{client_iqn}", ("GET",), internal_clientinfo),
    ApiRoute("/api/_hostgroup/{target_iqn}/{group_name}", ("GET", "PUT", "DELETE"), hostgroup),
]
