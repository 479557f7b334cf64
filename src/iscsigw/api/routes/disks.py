"""Disks: define/attach, resize, reconfigure, delete, snapshots (``/api/disk…``)."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse

from ...config import edits
from ...config.edits._doc import disk_key
from ...errors import ConfigError, ConfigNotFound
from ...gateway.images import ImageAdmin
from ._common import ApiRoute, Call, bad_method, changed, data, reply

_SNAP_NAME = re.compile(r"[^/@\s]+")
MAX_COUNT = 10
BACKSTORE_NAMES = {"user:rbd": "rbd", "rbd": "rbd", "file": "file", "memory": "memory"}


async def get_disks(call: Call) -> JSONResponse:
    """Show the disks defined to the gateways

    :param config: (str) 'yes' to list every disk's configuration, default 'no'
    """
    disks = (await call.manager.config_dict()).get("disks") or {}
    if call.params.text("config", "no").lower() == "yes":
        return data({"disks": disks})
    return data({"disks": list(disks.keys())})


def _backstore(raw: str) -> str:
    name = BACKSTORE_NAMES.get(raw.strip().lower())
    if name is None:
        raise ConfigError(
            f"backstore {raw!r} is not supported; use one of {', '.join(BACKSTORE_NAMES)}"
        )
    return name


async def _disk_entry(call: Call, key: str) -> dict[str, Any]:
    entry = ((await call.manager.config_dict()).get("disks") or {}).get(key)
    if entry is None:
        raise ConfigNotFound(f"rbd image {key} not found")
    return dict(entry)


async def _status(admin: ImageAdmin, pool: str, image: str, entry: dict[str, Any]) -> Any:
    backstore = _backstore(str(entry.get("backstore", "file")))
    exists = backstore == "memory" or await admin.size_of(pool, image) is not None
    return {
        "state": "Online" if exists else "Offline - image not found",
        "lock_owner": entry.get("owner", ""),
        "gateways": {},
    }


async def disk(call: Call) -> JSONResponse:
    """Define (PUT mode=create), resize, reconfigure, show (GET) or delete (DELETE) a disk

    :param mode: (str) create, resize or reconfigure
    :param size: (str) size with a unit, e.g. 100G (create: omit to attach an existing image)
    :param count: (int) create this many disks <image>1..<image>N (1-10)
    :param backstore: (str) user:rbd, file or memory (default: this gateway's)
    :param create_image: (bool) create the image if it does not exist (default true)
    :param data_pool: (str) rbd: keep the new image's data in this pool (e.g. erasure-coded)
    :param wwn: (str) unit serial (UUID) to keep across re-imports
    :param controls: (JSON dict) disk control overrides, e.g. {"hw_max_sectors": 1024}
    :param preserve_image: (bool) DELETE: keep the image, only drop it from the config
    """
    key = call.disk_key()
    pool, image = key.split("/")
    if call.method == "GET":
        entry = await _disk_entry(call, key)
        if call.internal:
            return data(entry)
        admin = call.manager.images(_backstore(str(entry.get("backstore", "file"))))
        entry["status"] = await _status(admin, pool, image, entry)
        entry["snapshots"] = await admin.snapshots(pool, image)
        return data(entry)
    if call.method == "DELETE":
        return await _delete(call, key)
    if call.method != "PUT":
        return bad_method(call)
    mode = call.params.text("mode")
    if mode == "create":
        return await _create(call, pool, image)
    if mode == "resize":
        return await _resize(call, key)
    if mode == "reconfigure":
        controls = call.params.controls()
        if not controls:
            raise ConfigError(
                'controls is required for mode=reconfigure, e.g. {"qfull_timeout": 5}'
            )
        result = await call.change(lambda doc: edits.reconfigure_disk(doc, key, controls))
        return changed(result, "lun reconfigured: successful")
    if call.internal and mode in ("activate", "deactivate"):
        await _disk_entry(call, key)
        return reply(f"LUN {mode}d")
    raise ConfigError(f"Invalid mode {mode!r}; use create, resize or reconfigure")


async def _create(call: Call, pool: str, image: str) -> JSONResponse:
    p = call.params
    backstore = _backstore(p.text("backstore") or call.manager.default_backstore)
    count_text = p.text("count", "1") or "1"
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_COUNT:
        raise ConfigError(f"count {count_text!r} must be a number from 1 to {MAX_COUNT}")
    count = int(count_text)
    size = p.size()
    create_image = p.flag("create_image", True)
    wwn = p.text("wwn")
    if wwn and count > 1:
        raise ConfigError("wwn can only be given when creating one disk (count=1)")
    controls = p.controls()
    data_pool = p.text("data_pool") or None
    names = [image] if count == 1 else [f"{image}{n}" for n in range(1, count + 1)]
    keys = [disk_key(f"{pool}/{name}") for name in names]
    doc = await call.manager.config_dict()
    for key in keys:
        if key in (doc.get("disks") or {}):
            if call.internal:
                return reply("LUN created")
            raise ConfigError(f"Disk {key} is already defined in the configuration")
    admin = call.manager.images(backstore)
    sizes: dict[str, int] = {}
    created: list[str] = []
    try:
        for name, key in zip(names, keys, strict=True):
            existing = await admin.size_of(pool, name)
            if existing is not None:
                if size is not None and size > existing:
                    await admin.resize(pool, name, size)
                sizes[key] = max(existing, size or 0)
            elif not create_image:
                raise ConfigError(f"Image {key} does not exist")
            elif size is None:
                raise ConfigError(
                    "Size parameter is required when creating a new image (e.g. size=100G)"
                )
            else:
                await admin.create(pool, name, size, data_pool=data_pool)
                created.append(name)
                sizes[key] = size
        host = call.manager.name

        def add(doc: dict[str, Any]) -> None:
            for key in keys:
                edits.add_disk(doc, key, backstore=backstore, size=sizes[key], wwn=wwn,
                               controls=controls, allocating_host=host)  # fmt: skip

        result = await call.change(add)
    except BaseException:
        for name in created:
            await admin.delete(pool, name)
        raise
    return changed(result, "disk create/update successful")


async def _resize(call: Call, key: str) -> JSONResponse:
    size = call.params.size()
    if size is None:
        raise ConfigError("size is required for mode=resize, e.g. size=200G")
    entry = await _disk_entry(call, key)
    old = int(entry.get("size", 0))
    if size < old:
        edits.resize_disk({"disks": {key: dict(entry)}}, key, size)  # raises the message
    pool, image = key.split("/")
    admin = call.manager.images(_backstore(str(entry.get("backstore", "file"))))
    await admin.resize(pool, image, size)
    result = await call.change(lambda doc: _grow(doc, key, size))
    return changed(result, "disk create/update successful")


def _grow(doc: dict[str, Any], key: str, size: int) -> None:
    edits.resize_disk(doc, key, size)


async def _delete(call: Call, key: str) -> JSONResponse:
    preserve = call.params.flag("preserve_image")
    doc = await call.manager.config_dict()
    entry = (doc.get("disks") or {}).get(key)
    if entry is None:
        if call.internal:
            return reply("LUN removed")
        raise ConfigNotFound(f"rbd image {key} not found")
    admin = call.manager.images(_backstore(str(entry.get("backstore", "file"))))
    result = await call.change(lambda d: _drop(d, key))
    if not preserve:
        pool, image = key.split("/")
        await admin.delete(pool, image)
    return changed(result, "disk map deletion successful")


def _drop(doc: dict[str, Any], key: str) -> None:
    edits.delete_disk(doc, key)


async def disksnap(call: Call) -> JSONResponse:
    """Create (PUT mode=create), roll back (PUT mode=rollback) or delete (DELETE) a snapshot

    :param mode: (str) create or rollback
    """
    name = call.path("name")
    if not _SNAP_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError("snapshot name is invalid: it may not contain '/', '@' or spaces")
    key = call.disk_key()
    entry = await _disk_entry(call, key)
    pool, image = key.split("/")
    admin = call.manager.images(_backstore(str(entry.get("backstore", "file"))))
    if call.method == "DELETE":
        await admin.snapshot(pool, image, name, "delete")
        return reply("disk snapshot deleted")
    mode = call.params.text("mode")
    if mode == "create":
        await admin.snapshot(pool, image, name, "create")
        return reply("disk snapshot created")
    if mode == "rollback":
        doc = await call.manager.config_dict()
        for iqn, t in (doc.get("targets") or {}).items():
            if key in (t.get("disks") or {}):
                raise ConfigError(
                    f"Disk {key} is mapped to target {iqn}; unmap it before rolling it back "
                    "(initiators would see the data change under them)"
                )
        await admin.snapshot(pool, image, name, "rollback")
        return reply("disk snapshot rolled back")
    raise ConfigError("mode is invalid; use mode=create or mode=rollback")


ROUTES = [
    ApiRoute("/api/disks", ("GET",), get_disks),
    ApiRoute("/api/disk/{pool}/{image}", ("GET", "PUT", "DELETE"), disk),
    ApiRoute("/api/disksnap/{pool}/{image}/{name}", ("PUT", "DELETE"), disksnap),
    ApiRoute("/api/_disk/{pool}/{image}", ("GET", "PUT", "DELETE"), disk),
]
