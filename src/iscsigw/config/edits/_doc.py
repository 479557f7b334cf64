"""Shared helpers for the edits: find objects in the raw document, allocate LUN ids/owners.

The edits work on the raw ``gateway.conf`` dict (the store commits dicts), keep ceph-iscsi's
key names and bookkeeping fields (``active_luns``, ``owner``, ``ip_list``…), and raise
``ConfigError``/``ConfigNotFound`` with messages that say what to fix. The store validates the
whole document with ``GatewayConfig.from_dict`` before writing, so the edits only have to
enforce the rules the model cannot know (ordering, "in use", limits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import ConfigError, ConfigNotFound
from ..model import MAX_DISKS, TARGET_CONTROLS, Control, timestamp
from ..names import LUN_ID_MAX, normalize_iscsi_name, split_disk_key, validate_lun_id

Doc = dict[str, Any]

EMPTY_AUTH: dict[str, Any] = {
    "username": "",
    "password": "",
    "password_encryption_enabled": False,
    "mutual_username": "",
    "mutual_password": "",
    "mutual_password_encryption_enabled": False,
}


def now() -> str:
    return timestamp()


def auth_dict(username: str, password: str, mutual_username: str, mutual_password: str) -> Doc:
    return {
        **EMPTY_AUTH,
        "username": username,
        "password": password,
        "mutual_username": mutual_username,
        "mutual_password": mutual_password,
    }


def targets(doc: Doc) -> Doc:
    out: Doc = doc.setdefault("targets", {})
    return out


def disks(doc: Doc) -> Doc:
    out: Doc = doc.setdefault("disks", {})
    return out


def gateways(doc: Doc) -> Doc:
    out: Doc = doc.setdefault("gateways", {})
    return out


def target(doc: Doc, iqn: str) -> tuple[str, Doc]:
    """``(normalized iqn, target dict)``; ConfigNotFound when it is not defined."""
    name = normalize_iscsi_name(iqn, "target")
    found = targets(doc).get(name)
    if found is None:
        raise ConfigNotFound(f"Target {name} is not defined")
    return name, found


def client(t: Doc, iqn: str, target_iqn: str) -> tuple[str, Doc]:
    name = normalize_iscsi_name(iqn, "client")
    found = t.setdefault("clients", {}).get(name)
    if found is None:
        raise ConfigNotFound(f"Client {name} is not defined on target {target_iqn}")
    return name, found


def disk_key(key: str) -> str:
    pool, image = split_disk_key(key, "disk")
    return f"{pool}/{image}"


def disk(doc: Doc, key: str) -> Doc:
    found = disks(doc).get(key)
    if found is None:
        raise ConfigNotFound(f"Disk {key} is not defined in the configuration")
    return found  # type: ignore[no-any-return]


def check_disk_limit(doc: Doc, adding: int = 1) -> None:
    if len(disks(doc)) + adding > MAX_DISKS:
        raise ConfigError(f"Disk limit of {MAX_DISKS} reached.")


def mapped_target(doc: Doc, key: str) -> str | None:
    for iqn, t in targets(doc).items():
        if key in t.get("disks", {}):
            return str(iqn)
    return None


def lowest_free_lun(used: Iterable[int]) -> int:
    taken = set(used)
    for lun in range(LUN_ID_MAX + 1):
        if lun not in taken:
            return lun
    raise ConfigError(f"no free LUN id left (0-{LUN_ID_MAX} are all in use)")


def parse_lun_id(raw: str | int | None) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        if not raw.strip().isdigit():
            raise ConfigError("Lun id must be a number")
        raw = int(raw)
    return validate_lun_id(raw, "lun_id")


def pick_owner(doc: Doc, t: Doc) -> str:
    """ceph-iscsi ``LUN.get_owner``: the portal gateway with the fewest active LUNs."""
    portals = list(t.get("portals", {}))
    if not portals:
        return ""
    gws = gateways(doc)

    def load(name: str) -> int:
        value = gws.get(name, {}).get("active_luns", 0)
        return value if isinstance(value, int) else 0

    return str(min(portals, key=lambda name: (load(name), portals.index(name))))


def count_lun(doc: Doc, gateway: str, delta: int) -> None:
    if not gateway:
        return
    entry = gateways(doc).setdefault(gateway, {"created": now()})
    entry["active_luns"] = max(0, int(entry.get("active_luns", 0)) + delta)
    entry["updated"] = now()


def refresh_ip_lists(t: Doc) -> None:
    """Keep ceph-iscsi's derived portal fields (read by gwcli 3.5) in step with ``portals``."""
    portals: Doc = t.setdefault("portals", {})
    ip_list: list[str] = []
    for p in portals.values():
        for ip in p.get("portal_ip_addresses", []):
            if ip not in ip_list:
                ip_list.append(ip)
    t["ip_list"] = ip_list
    for p in portals.values():
        own = p.get("portal_ip_addresses", [])
        p["gateway_ip_list"] = list(ip_list)
        p["inactive_portal_ips"] = [ip for ip in ip_list if ip not in own]
        p["tpgs"] = len(portals)


def parse_controls(
    raw: Mapping[str, Any], known: Mapping[str, Control], what: str
) -> dict[str, Any]:
    """Control overrides; ``None``/``""`` means "back to the default" (kept as None)."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        ctl = known.get(name)
        if ctl is None:
            raise ConfigError(
                f"Unexpected or invalid controls - unknown {what} control {name!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        if value is None or value == "":
            out[name] = None
            continue
        try:
            out[name] = ctl.parse(value, name)
        except ConfigError as exc:
            raise ConfigError(f"Unexpected or invalid controls - {exc}")
    return out


def merge_controls(current: Doc, changes: Mapping[str, Any], known: Mapping[str, Control]) -> Doc:
    """ceph-iscsi keeps only non-default overrides in ``controls``."""
    merged = dict(current)
    for name, value in changes.items():
        if value is None or value == known[name].default:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def new_target() -> Doc:
    stamp = now()
    return {
        "acl_enabled": True,
        "auth_required": True,
        "auth": dict(EMPTY_AUTH),
        "controls": {},
        "portals": {},
        "ip_list": [],
        "disks": {},
        "clients": {},
        "groups": {},
        "created": stamp,
        "updated": stamp,
    }


def touch(obj: Doc) -> None:
    obj["updated"] = now()


__all__ = [
    "EMPTY_AUTH",
    "TARGET_CONTROLS",
    "Doc",
    "auth_dict",
    "check_disk_limit",
    "client",
    "count_lun",
    "disk",
    "disk_key",
    "disks",
    "gateways",
    "lowest_free_lun",
    "mapped_target",
    "merge_controls",
    "new_target",
    "now",
    "parse_controls",
    "parse_lun_id",
    "pick_owner",
    "refresh_ip_lists",
    "target",
    "targets",
    "touch",
]
