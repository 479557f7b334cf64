"""``iscsigw serve --demo``: a ready-to-use target in one command.

Seeds (once) a target ``iqn.2026-11.io.iscsigw:demo`` with a 1 GiB sparse file disk
``demo/disk0`` at LUN 0, ACLs off (any initiator name) but CHAP required with generated
credentials, and sets this gateway's portals. Running it again reuses the stored credentials,
so the printed URL stays valid across restarts. The URL is libiscsi's form
``iscsi://USER%PASSWORD@HOST:PORT/IQN/LUN``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .file_store import FileConfigStore
from .model import timestamp
from .names import format_endpoint, validate_gateway_name, validate_ip, validate_port
from .store import ConfigStore

DEMO_IQN = "iqn.2026-11.io.iscsigw:demo"
DEMO_DISK = "demo/disk0"
DEMO_RBD_IMAGE = "demo_disk0"  # with the RADOS store: POOL/demo_disk0, an RBD image
DEMO_SIZE = 1 << 30
CONFIG_NAME = "gateway.conf"

# ceph-iscsi allows [\w@\-_/] in secrets; '@', '/' and '%' would confuse URL parsing.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class DemoInfo:
    """What an initiator needs to reach the demo LUN."""

    target_iqn: str
    username: str
    password: str
    lun_id: int
    url: str


def generate_username() -> str:
    return "demo-" + secrets.token_hex(4)


def generate_password(length: int = 16) -> str:
    """A CHAP secret that passes ceph-iscsi's rules (12-16 of [A-Za-z0-9@-_/])."""
    if not 12 <= length <= 16:
        raise ValueError("CHAP passwords are 12 to 16 characters")
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def iscsi_url(
    ip: str, port: int, iqn: str, lun: int, username: str = "", password: str = ""
) -> str:
    """libiscsi URL; a wildcard listen address is replaced by loopback so the URL works."""
    addr = ipaddress.ip_address(ip)
    if addr.is_unspecified:
        addr = ipaddress.ip_address("::1" if addr.version == 6 else "127.0.0.1")
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    user = f"{username}%{password}@" if username else ""
    return f"iscsi://{user}{host}:{port}/{iqn}/{lun}"


def _check_portals(portals: list[tuple[str, int]]) -> list[tuple[str, int]]:
    if not portals:
        raise ConfigError("the demo needs at least one portal (IP:PORT)")
    out = [(validate_ip(ip, "portal"), validate_port(port, "portal")) for ip, port in portals]
    return list(dict.fromkeys(out))


def _seed(
    doc: dict[str, Any],
    gateway_name: str,
    endpoints: list[tuple[str, int]],
    demo_disk: str = DEMO_DISK,
    backstore: str = "file",
) -> None:
    """Add what is missing of the demo setup to the raw document (idempotent)."""
    now = timestamp()
    gateways = doc.setdefault("gateways", {})
    disks = doc.setdefault("disks", {})
    targets = doc.setdefault("targets", {})
    gw = gateways.setdefault(gateway_name, {"active_luns": 0, "created": now, "updated": now})
    if demo_disk not in disks:
        pool, image = demo_disk.split("/")
        disks[demo_disk] = {
            "pool": pool,
            "image": image,
            "backstore": backstore,
            "size": DEMO_SIZE,
            "wwn": str(uuid.uuid4()),
            "owner": gateway_name,
            "controls": {},
            "created": now,
            "updated": now,
        }
        gw["active_luns"] = int(gw.get("active_luns", 0)) + 1
    target = targets.get(DEMO_IQN)
    if target is None:
        mapped = any(demo_disk in t.get("disks", {}) for t in targets.values())
        target = targets[DEMO_IQN] = {
            "acl_enabled": False,
            "auth_required": True,
            "auth": {
                "username": generate_username(),
                "password": generate_password(),
                "mutual_username": "",
                "mutual_password": "",
            },
            "controls": {},
            "portals": {},
            "disks": {} if mapped else {demo_disk: {"lun_id": 0}},
            "clients": {},
            "groups": {},
            "alias": "iscsigw demo",
            "created": now,
            "updated": now,
        }
    # This gateway's portals are what its command line says (replacing, not adding to, what
    # an earlier run stored, so SendTargets never advertises addresses nobody listens on).
    portals = target.setdefault("portals", {})
    old = portals.get(gateway_name) or {}
    tpg = old.get("tpg")
    if tpg is None:
        used = {p.get("tpg") for p in portals.values()}
        tpg = next(t for t in range(1, len(used) + 2) if t not in used)
    port = endpoints[0][1]
    portals[gateway_name] = {
        **old,
        "portal_ip_addresses": [format_endpoint(ip, p, port) for ip, p in endpoints],
        "portal_port": port,
        "tpg": tpg,
    }


def ensure_sparse_file(path: Path, size: int) -> None:
    """Create ``path`` as a sparse file of ``size`` bytes unless it exists (never truncates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def seed_demo(
    data_dir: str | os.PathLike[str],
    gateway_name: str,
    portals: list[tuple[str, int]],
    *,
    store: ConfigStore | None = None,
    rbd_pool: str | None = None,
) -> DemoInfo:
    """Create (or reuse) the demo target in ``DATA_DIR/gateway.conf`` (or in ``store``); see
    module docstring. With ``rbd_pool`` the demo disk is the RBD image ``POOL/demo_disk0``
    (created by the gateway that opens it first)."""
    validate_gateway_name(gateway_name, "gateway")
    endpoints = _check_portals(portals)
    data = Path(data_dir)
    if store is None:
        store = FileConfigStore(data / CONFIG_NAME)
    demo_disk = f"{rbd_pool}/{DEMO_RBD_IMAGE}" if rbd_pool else DEMO_DISK
    backstore = "rbd" if rbd_pool else "file"
    store.commit(lambda doc: _seed(doc, gateway_name, endpoints, demo_disk, backstore))
    config, _ = store.load()
    disk = config.disks[demo_disk]
    if disk.backstore == "file":
        try:
            ensure_sparse_file(disk.file_path(data), disk.size)
        except OSError as exc:
            raise ConfigError(f"{disk.file_path(data)}: cannot create the demo disk: {exc}")
    target = config.targets[DEMO_IQN]
    lun_id = target.disks.get(demo_disk, min(target.disks.values(), default=0))
    auth = target.auth
    ip, port = endpoints[0]
    url = iscsi_url(ip, port, DEMO_IQN, lun_id, auth.username, auth.password)
    return DemoInfo(DEMO_IQN, auth.username, auth.password, lun_id, url)
