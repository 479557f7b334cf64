"""Disks (``disks`` map) and their mapping to a target (LUN id and owner gateway)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError
from ..model import DISK_CONTROLS
from ..names import format_size, split_disk_key, validate_wwn
from ._doc import (
    Doc,
    check_disk_limit,
    count_lun,
    disk,
    disks,
    lowest_free_lun,
    mapped_target,
    merge_controls,
    now,
    parse_controls,
    pick_owner,
    target,
    touch,
)

# What the document stores per backstore; ceph-iscsi tools expect "user:rbd" for RBD.
STORED_BACKSTORE = {"rbd": "user:rbd", "user:rbd": "user:rbd", "file": "file", "memory": "memory"}


def add_disk(
    doc: Doc,
    key: str,
    *,
    backstore: str,
    size: int,
    wwn: str = "",
    controls: Mapping[str, Any] | None = None,
    allocating_host: str = "",
) -> str:
    """Define a disk; returns its wwn (a new UUID unless one was given)."""
    pool, image = split_disk_key(key, "disk")
    if key in disks(doc):
        raise ConfigError(f"Disk {key} is already defined in the configuration")
    check_disk_limit(doc)
    stored = STORED_BACKSTORE.get(backstore)
    if stored is None:
        raise ConfigError(
            f"backstore {backstore!r} is unknown; use one of {', '.join(sorted(STORED_BACKSTORE))}"
        )
    if wwn:
        wwn = validate_wwn(wwn, "wwn")
        for other_key, other in disks(doc).items():
            if other.get("wwn") == wwn:
                raise ConfigError(f"wwn {wwn} is already used by disk {other_key}")
    else:
        wwn = str(uuid.uuid4())
    parsed = parse_controls(controls or {}, DISK_CONTROLS, "disk")
    stamp = now()
    disks(doc)[key] = {
        "pool": pool,
        "image": image,
        "backstore": stored,
        "backstore_object_name": f"{pool}.{image}",
        "size": size,
        "wwn": wwn,
        "owner": "",
        "allocating_host": allocating_host,
        "controls": merge_controls({}, parsed, DISK_CONTROLS),
        "created": stamp,
        "updated": stamp,
    }
    return wwn


def resize_disk(doc: Doc, key: str, size: int) -> int:
    """Grow a disk; returns the old size. Shrinking is refused (data would be lost)."""
    d = disk(doc, key)
    old = int(d.get("size", 0))
    if size < old:
        raise ConfigError(
            f"Disk {key}: the new size {format_size(size)} is smaller than the current "
            f"{format_size(old)}; disks can only grow"
        )
    d["size"] = size
    touch(d)
    return old


def reconfigure_disk(doc: Doc, key: str, controls: Mapping[str, Any]) -> None:
    d = disk(doc, key)
    parsed = parse_controls(controls, DISK_CONTROLS, "disk")
    d["controls"] = merge_controls(d.get("controls", {}), parsed, DISK_CONTROLS)
    touch(d)


def delete_disk(doc: Doc, key: str) -> Doc:
    """Remove a disk from the config; refused while a target maps it. Returns its entry."""
    d = disk(doc, key)
    iqn = mapped_target(doc, key)
    if iqn is not None:
        raise ConfigError(
            f"Disk {key} is mapped to target {iqn}; unmap it (DELETE /api/targetlun) first"
        )
    removed: Doc = disks(doc).pop(key)
    return removed if removed is not None else d


def map_lun(
    doc: Doc, iqn: str, key: str, lun_id: int | None, minimum_gateways: int
) -> tuple[int, str]:
    """Map a disk to a target; returns ``(lun_id, owner)``."""
    name, t = target(doc, iqn)
    n_portals = len(t.get("portals", {}))
    if n_portals < minimum_gateways:
        raise ConfigError(
            f"At least {minimum_gateways} gateways must be defined before disks can be added "
            f"to target {name} (it has {n_portals}); add gateways or lower minimum_gateways "
            "in iscsi-gateway.cfg"
        )
    if key not in disks(doc):
        raise ConfigError(f"Disk {key} is not defined in the configuration")
    other = mapped_target(doc, key)
    if other is not None:
        raise ConfigError(
            f"Disk {key} cannot be used because it is already mapped on target {other}"
        )
    used = {int(v.get("lun_id", -1)) for v in t.setdefault("disks", {}).values()}
    if lun_id is None:
        lun_id = lowest_free_lun(used)
    elif lun_id in used:
        raise ConfigError(f"Lun id {lun_id} already in use")
    owner = pick_owner(doc, t)
    t["disks"][key] = {"lun_id": lun_id}
    d = disk(doc, key)
    d["owner"] = owner
    touch(d)
    count_lun(doc, owner, +1)
    touch(t)
    return lun_id, owner


def unmap_lun(doc: Doc, iqn: str, key: str) -> None:
    name, t = target(doc, iqn)
    if key not in disks(doc):
        raise ConfigError(f"Disk {key} is not defined in the configuration")
    if key not in t.get("disks", {}):
        raise ConfigError(f"Disk {key} is not defined in target {name}")
    for group_name, group in t.get("groups", {}).items():
        if key in group.get("disks", {}):
            raise ConfigError(f"Disk {key} belongs to group {group_name}")
    del t["disks"][key]
    for c in t.get("clients", {}).values():
        c.get("luns", {}).pop(key, None)
    d = disk(doc, key)
    count_lun(doc, str(d.get("owner", "")), -1)
    d["owner"] = ""
    touch(d)
    touch(t)


__all__ = [
    "STORED_BACKSTORE",
    "add_disk",
    "delete_disk",
    "map_lun",
    "reconfigure_disk",
    "resize_disk",
    "unmap_lun",
]
