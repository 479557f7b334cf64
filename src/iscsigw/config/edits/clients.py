"""Clients (initiator ACLs): create/delete, CHAP, LUN masking; host groups."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ...errors import ConfigError, ConfigNotFound
from ..names import normalize_iscsi_name, validate_chap
from ._doc import EMPTY_AUTH, Doc, auth_dict, client, disk_key, lowest_free_lun, target, touch

GROUP_NAME_RE = re.compile(r"[\w@\-]{1,32}")
GROUP_ACTIONS = ("add", "remove")


def create_client(doc: Doc, iqn: str, client_iqn: str, minimum_gateways: int) -> str:
    """Define a client (idempotent); needs a HA configuration like ceph-iscsi."""
    name, t = target(doc, iqn)
    cname = normalize_iscsi_name(client_iqn, "client")
    clients = t.setdefault("clients", {})
    if cname in clients:
        return cname
    n_portals = len(t.get("portals", {}))
    if n_portals < minimum_gateways:
        raise ConfigError(
            "Clients can not be defined until a HA configuration has been defined: target "
            f"{name} has {n_portals} gateway(s), minimum_gateways is {minimum_gateways}"
        )
    clients[cname] = {"auth": dict(EMPTY_AUTH), "luns": {}, "group_name": ""}
    touch(t)
    return cname


def delete_client(
    doc: Doc, iqn: str, client_iqn: str, logged_in: Callable[[str, str], bool] | None = None
) -> None:
    name, t = target(doc, iqn)
    cname, c = client(t, client_iqn, name)
    if c.get("group_name"):
        raise ConfigError(
            f"Client {cname} is a member of host group {c['group_name']}; remove it from the "
            "group first"
        )
    if logged_in is not None and logged_in(name, cname):
        raise ConfigError(f"Client {cname} is logged in; log it out before deleting it")
    del t["clients"][cname]
    touch(t)


def set_client_auth(
    doc: Doc,
    iqn: str,
    client_iqn: str,
    username: str,
    password: str,
    mutual_username: str,
    mutual_password: str,
) -> None:
    name, t = target(doc, iqn)
    cname, c = client(t, client_iqn, name)
    validate_chap(username, password, mutual_username, mutual_password, f"client {cname} auth")
    c["auth"] = auth_dict(username, password, mutual_username, mutual_password)
    touch(t)


def _client_lun_ids(t: Doc, c: Doc) -> set[int]:
    used = {int(v["lun_id"]) for v in c.get("luns", {}).values()}
    group = t.get("groups", {}).get(c.get("group_name") or "")
    if group:
        used |= {int(v["lun_id"]) for v in group.get("disks", {}).values()}
    return used


def client_add_lun(doc: Doc, iqn: str, client_iqn: str, disk: str) -> int:
    """Give a client a disk of the target; returns the client's LUN id for it."""
    name, t = target(doc, iqn)
    cname, c = client(t, client_iqn, name)
    key = disk_key(disk)
    if key not in t.get("disks", {}):
        raise ConfigError(f"Disk {key} is not mapped to target {name}; add it to the target first")
    if c.get("group_name"):
        raise ConfigError(
            f"Client {cname} belongs to host group {c['group_name']}; manage its disks "
            "through the group"
        )
    luns = c.setdefault("luns", {})
    if key in luns:
        return int(luns[key]["lun_id"])
    used = _client_lun_ids(t, c)
    wanted = int(t["disks"][key]["lun_id"])
    lun_id = wanted if wanted not in used else lowest_free_lun(used)
    luns[key] = {"lun_id": lun_id}
    touch(t)
    return lun_id


def client_remove_lun(doc: Doc, iqn: str, client_iqn: str, disk: str) -> None:
    name, t = target(doc, iqn)
    _, c = client(t, client_iqn, name)
    key = disk_key(disk)
    if key not in c.get("luns", {}):
        raise ConfigError("disk not mapped to client")
    del c["luns"][key]
    touch(t)


# -- host groups ----------------------------------------------------------------------------


def _group(t: Doc, group_name: str) -> Doc:
    g = t.get("groups", {}).get(group_name)
    if g is None:
        raise ConfigNotFound("Group name does not exist")
    return g  # type: ignore[no-any-return]


def _release_member(t: Doc, g: Doc, cname: str) -> None:
    """A member leaving keeps the group's LUN masking as its own (ceph-iscsi behaviour)."""
    c = t["clients"].get(cname)
    if c is None:
        return
    luns = c.setdefault("luns", {})
    for key, entry in g.get("disks", {}).items():
        luns.setdefault(key, {"lun_id": entry["lun_id"]})
    c["group_name"] = ""


def update_group(
    doc: Doc,
    iqn: str,
    group_name: str,
    action: str = "add",
    members: Sequence[str] = (),
    disks: Sequence[str] = (),
) -> None:
    """Create the group if needed, then add/remove members and disks."""
    name, t = target(doc, iqn)
    if not GROUP_NAME_RE.fullmatch(group_name):
        raise ConfigError(
            f"Group name {group_name!r} is invalid: use 1-32 letters, digits, '@', '-', '_'"
        )
    if action not in GROUP_ACTIONS:
        raise ConfigError("Invalid hostgroup action specified; use add or remove")
    groups = t.setdefault("groups", {})
    g = groups.get(group_name)
    if g is None:
        if action == "remove":
            raise ConfigNotFound("Group name does not exist")
        g = groups[group_name] = {"members": [], "disks": {}}
    clients = t.setdefault("clients", {})
    for raw in members:
        cname = normalize_iscsi_name(raw, "members")
        c = clients.get(cname)
        if c is None:
            raise ConfigError(f"Client {cname} is not defined on target {name}")
        if action == "add":
            if cname in g["members"]:
                continue
            if c.get("group_name"):
                raise ConfigError(f"Client {cname} already belongs to host group {c['group_name']}")
            if c.get("luns"):
                raise ConfigError(
                    f"Client {cname} has LUNs of its own; remove them before adding it to a group"
                )
            g["members"].append(cname)
            c["group_name"] = group_name
        else:
            if cname not in g["members"]:
                raise ConfigError(f"Client {cname} is not a member of group {group_name}")
            g["members"].remove(cname)
            _release_member(t, g, cname)
    for raw in disks:
        key = disk_key(raw)
        if action == "add":
            if key not in t.get("disks", {}):
                raise ConfigError(f"Disk {key} is not mapped to target {name}")
            if key in g["disks"]:
                continue
            lun_id = int(t["disks"][key]["lun_id"])
            for m in g["members"]:
                if lun_id in _client_lun_ids(t, clients[m]) - {
                    int(v["lun_id"]) for v in g["disks"].values()
                }:
                    raise ConfigError(f"LUN {lun_id} is already used by member {m}")
            g["disks"][key] = {"lun_id": lun_id}
        else:
            if key not in g["disks"]:
                raise ConfigError(f"Disk {key} is not in group {group_name}")
            del g["disks"][key]
    touch(t)


def delete_group(doc: Doc, iqn: str, group_name: str) -> None:
    """Delete a group; its members keep the LUNs it gave them."""
    _, t = target(doc, iqn)
    g = _group(t, group_name)
    for cname in list(g.get("members", [])):
        _release_member(t, g, cname)
    del t["groups"][group_name]
    touch(t)


__all__ = [
    "GROUP_ACTIONS",
    "client_add_lun",
    "client_remove_lun",
    "create_client",
    "delete_client",
    "delete_group",
    "set_client_auth",
    "update_group",
]
