"""The gateway configuration as frozen, validated objects.

The on-disk shape is ceph-iscsi's ``gateway.conf`` version 11 (one JSON document shared by
every gateway, see ceph_iscsi_config/common.py) so that tools and people who know that format
can read ours. Keys that ceph-iscsi does not have are iscsigw extensions, listed here so they
are easy to find:

* ``disks[k].size`` — bytes; ceph-iscsi asks librbd, a file or RAM disk has to be told.
* ``disks[k].block_size`` — logical block size, 512 (default) or 4096.
* ``disks[k].backstore`` — ``"file" | "rbd" | "memory"`` (ceph-iscsi's ``"user:rbd"`` reads as rbd).
* ``targets[t].auth_required`` — default **true**: a target without CHAP refuses logins unless
  it was opened on purpose with ``auth_required: false``.
* ``targets[t].portals[gw].portal_port`` — default 3260; entries of ``portal_ip_addresses``
  may carry their own port (``"IP:PORT"``); ``…tpg`` — the TPG tag of that gateway
  (ceph-iscsi derives it from ``ip_list`` order; we store it so it cannot shift).
* ``targets[t].alias`` — iSCSI TargetAlias.

Unknown keys (e.g. ceph-iscsi's ``pool_id``, ``ip_list``, ``gateway_ip_list``) are kept verbatim
in ``extra`` and written back by ``to_dict()``, so a round trip never drops data.

Authentication model (``TargetConfig.chap_for``): a client's own CHAP credentials win; otherwise
the target-level credentials apply. Unlike ceph-iscsi, target-level CHAP may coexist with ACLs
(it is then the default for clients without their own credentials).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from .names import (
    format_endpoint,
    normalize_iscsi_name,
    parse_endpoint,
    parse_size,
    split_disk_key,
    validate_chap,
    validate_gateway_name,
    validate_lun_id,
    validate_port,
    validate_wwn,
)

CONFIG_VERSION = 11
DEFAULT_PORTAL_PORT = 3260
MAX_DISKS = 256
BACKSTORES = ("file", "rbd", "memory")
_BACKSTORE_ALIASES = {"user:rbd": "rbd"}
_GROUP_RE = re.compile(r"[\w@\-]{1,32}")

Json = dict[str, Any]


def timestamp(when: float | None = None) -> str:
    """ceph-iscsi's timestamp format: UTC ``YYYY/MM/DD HH:MM:SS``."""
    return time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(when))


# -- controls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """A tunable with its default; ``lo``/``hi`` bound integers, None marks a yes/no flag."""

    default: int | bool
    lo: int | None = None
    hi: int | None = None

    def parse(self, value: object, where: str) -> int | bool:
        if self.lo is None:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("yes", "true", "1", "no", "false", "0"):
                return value.lower() in ("yes", "true", "1")
            raise ConfigError(f"{where}: {value!r} must be yes or no")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {value!r} must be an integer")
        assert self.hi is not None
        if not self.lo <= value <= self.hi:
            raise ConfigError(f"{where}: {value} must be between {self.lo} and {self.hi}")
        return value


_SEG = (512, 16777215)
# ceph-iscsi TGT_SETTINGS (per target) and TCMU_SETTINGS (per disk), same names and ranges.
TARGET_CONTROLS: dict[str, Control] = {
    "dataout_timeout": Control(20, 2, 60),
    "nopin_response_timeout": Control(5, 3, 60),
    "nopin_timeout": Control(5, 3, 60),
    "cmdsn_depth": Control(128, 1, 512),
    "immediate_data": Control(True),
    "initial_r2t": Control(True),
    "max_outstanding_r2t": Control(1, 1, 65535),
    "first_burst_length": Control(262144, *_SEG),
    "max_burst_length": Control(524288, *_SEG),
    "max_recv_data_segment_length": Control(262144, *_SEG),
    "max_xmit_data_segment_length": Control(262144, *_SEG),
}
DISK_CONTROLS: dict[str, Control] = {
    "max_data_area_mb": Control(8, 1, 2048),
    "hw_max_sectors": Control(1024, 1, 8192),
    "osd_op_timeout": Control(30, 0, 600),
    "qfull_timeout": Control(5, 0, 600),
}


def _parse_controls(raw: object, known: Mapping[str, Control], where: str) -> dict[str, int | bool]:
    d = _obj(raw, where)
    out: dict[str, int | bool] = {}
    for name, value in d.items():
        ctl = known.get(name)
        if ctl is None:
            raise ConfigError(
                f"{where}: unknown control {name!r}; known controls: {', '.join(sorted(known))}"
            )
        out[name] = ctl.parse(value, f"{where}[{name!r}]")
    return out


# -- parsing helpers ------------------------------------------------------------------------


def _obj(value: object, where: str) -> Json:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _str(d: Json, key: str, where: str, default: str = "") -> str:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _bool(d: Json, key: str, where: str, default: bool) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, not {value!r}")
    return value


def _int(d: Json, key: str, where: str, default: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, not {value!r}")
    return value


def _extra(d: Json, known: set[str]) -> Json:
    return {k: v for k, v in d.items() if k not in known}


def _lun_map(raw: object, where: str) -> dict[str, int]:
    """``{"pool/image": {"lun_id": N}}`` → ``{"pool/image": N}`` with unique LUN ids."""
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    for key, entry in _obj(raw, where).items():
        split_disk_key(key, f"{where}[{key!r}]")
        e = _obj(entry, f"{where}[{key!r}]")
        if "lun_id" not in e:
            raise ConfigError(f"{where}[{key!r}].lun_id is missing")
        lun = validate_lun_id(e["lun_id"], f"{where}[{key!r}]")
        if lun in seen:
            raise ConfigError(f"{where}: LUN {lun} is used by both {seen[lun]!r} and {key!r}")
        seen[lun] = key
        out[key] = lun
    return out


def _lun_dict(luns: Mapping[str, int]) -> Json:
    return {k: {"lun_id": v} for k, v in luns.items()}


# -- the objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chap:
    """One CHAP credential set; empty username means no CHAP."""

    username: str = ""
    password: str = ""
    mutual_username: str = ""
    mutual_password: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.username)

    @property
    def mutual(self) -> bool:
        return bool(self.mutual_username)

    @classmethod
    def from_dict(cls, raw: object, where: str) -> Chap:
        d = _obj(raw, where)
        for flag in ("password_encryption_enabled", "mutual_password_encryption_enabled"):
            if d.get(flag):
                raise ConfigError(
                    f"{where}.{flag} is set: encrypted CHAP secrets are not supported; "
                    "store the secrets in plain text"
                )
        chap = cls(
            _str(d, "username", where),
            _str(d, "password", where),
            _str(d, "mutual_username", where),
            _str(d, "mutual_password", where),
        )
        validate_chap(
            chap.username, chap.password, chap.mutual_username, chap.mutual_password, where
        )
        return chap

    def to_dict(self) -> Json:
        return {
            "username": self.username,
            "password": self.password,
            "password_encryption_enabled": False,
            "mutual_username": self.mutual_username,
            "mutual_password": self.mutual_password,
            "mutual_password_encryption_enabled": False,
        }

    def __repr__(self) -> str:  # never print secrets in logs or tracebacks
        return f"Chap(username={self.username!r}, mutual_username={self.mutual_username!r})"


@dataclass(frozen=True)
class GatewayInfo:
    """An entry of the top-level ``gateways`` map (a host that may serve portals)."""

    name: str
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: object, where: str) -> GatewayInfo:
        validate_gateway_name(name, where)
        return cls(name, dict(_obj(raw, where)))

    def to_dict(self) -> Json:
        return dict(self.extra)


@dataclass(frozen=True)
class DiskConfig:
    """A disk (ceph-iscsi: an RBD image; here also a sparse file or a RAM disk)."""

    pool: str
    image: str
    backstore: str
    size: int
    wwn: str = ""
    owner: str = ""
    block_size: int = 512
    controls: dict[str, int | bool] = field(default_factory=dict)
    extra: Json = field(default_factory=dict)

    _KNOWN = frozenset(
        {"pool", "image", "backstore", "size", "wwn", "owner", "block_size", "controls"}
    )

    @property
    def key(self) -> str:
        return f"{self.pool}/{self.image}"

    def file_path(self, data_dir: str | Path) -> Path:
        """Where the file backend keeps this disk: ``DATA_DIR/pool/image``."""
        return Path(data_dir) / self.pool / self.image

    def control(self, name: str) -> int | bool:
        return self.controls.get(name, DISK_CONTROLS[name].default)

    @classmethod
    def from_dict(cls, key: str, raw: object, where: str) -> DiskConfig:
        pool, image = split_disk_key(key, where)
        d = _obj(raw, where)
        if _str(d, "pool", where, pool) != pool or _str(d, "image", where, image) != image:
            raise ConfigError(f"{where}: pool/image fields do not match the key {key!r}")
        if "backstore" not in d:
            raise ConfigError(f"{where}.backstore is missing; use one of {', '.join(BACKSTORES)}")
        backstore = _str(d, "backstore", where)
        backstore = _BACKSTORE_ALIASES.get(backstore, backstore)
        if backstore not in BACKSTORES:
            raise ConfigError(
                f"{where}.backstore {backstore!r} is unknown; use one of {', '.join(BACKSTORES)}"
            )
        block_size = _int(d, "block_size", where, 512)
        if block_size not in (512, 4096):
            raise ConfigError(f"{where}.block_size must be 512 or 4096, not {block_size}")
        size = parse_size(d.get("size", 0), where)
        if size == 0 and backstore != "rbd":
            raise ConfigError(f"{where}.size is required for a {backstore} disk (e.g. 10G)")
        if size % block_size:
            raise ConfigError(f"{where}.size {size} is not a multiple of {block_size}")
        wwn = _str(d, "wwn", where)
        if wwn:
            wwn = validate_wwn(wwn, where)
        owner = _str(d, "owner", where)
        if owner:
            validate_gateway_name(owner, where)
        return cls(
            pool=pool,
            image=image,
            backstore=backstore,
            size=size,
            wwn=wwn,
            owner=owner,
            block_size=block_size,
            controls=_parse_controls(d.get("controls"), DISK_CONTROLS, f"{where}.controls"),
            extra=_extra(d, set(cls._KNOWN)),
        )

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(
            pool=self.pool,
            image=self.image,
            backstore=self.backstore,
            size=self.size,
            wwn=self.wwn,
            owner=self.owner,
            controls=dict(self.controls),
        )
        if self.block_size != 512:
            out["block_size"] = self.block_size
        return out


class PortalAddress(NamedTuple):
    """One listening address of a target, as SendTargets reports it."""

    ip: str
    port: int
    tpg: int
    gateway: str

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port},{self.tpg}"


@dataclass(frozen=True)
class Portal:
    """The part of a target one gateway serves: its listening addresses and TPG tag.

    ``portal_ip_addresses`` entries are IPs as in ceph-iscsi; an entry may also carry its own
    port (``"IP:PORT"`` / ``"[IPv6]:PORT"``, an iscsigw extension), otherwise ``portal_port``
    applies.
    """

    gateway: str
    endpoints: tuple[tuple[str, int], ...]
    port: int = DEFAULT_PORTAL_PORT
    tpg: int = 1
    extra: Json = field(default_factory=dict)

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ip for ip, _ in self.endpoints))

    @classmethod
    def from_dict(cls, gateway: str, raw: object, where: str, default_tpg: int) -> Portal:
        validate_gateway_name(gateway, where)
        d = _obj(raw, where)
        port = validate_port(
            _int(d, "portal_port", where, DEFAULT_PORTAL_PORT), f"{where}.portal_port"
        )
        entries = d.get("portal_ip_addresses")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}.portal_ip_addresses must be a non-empty list of IPs")
        endpoints = tuple(
            parse_endpoint(e, port, f"{where}.portal_ip_addresses[{i}]")
            for i, e in enumerate(entries)
        )
        if len(set(endpoints)) != len(endpoints):
            raise ConfigError(f"{where}.portal_ip_addresses lists an address twice")
        tpg = _int(d, "tpg", where, default_tpg)
        if not 1 <= tpg <= 65535:
            raise ConfigError(f"{where}.tpg {tpg} must be between 1 and 65535")
        extra = _extra(d, {"portal_ip_addresses", "portal_port", "tpg"})
        return cls(gateway, endpoints, port, tpg, extra)

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(
            portal_ip_addresses=[format_endpoint(ip, p, self.port) for ip, p in self.endpoints],
            portal_port=self.port,
            tpg=self.tpg,
        )
        return out

    def addresses(self) -> list[PortalAddress]:
        return [PortalAddress(ip, p, self.tpg, self.gateway) for ip, p in self.endpoints]


@dataclass(frozen=True)
class ClientConfig:
    """An initiator known to a target (a NodeACL): its CHAP and LUN mapping."""

    name: str
    auth: Chap = field(default_factory=Chap)
    luns: dict[str, int] = field(default_factory=dict)
    group_name: str = ""
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: object, where: str) -> ClientConfig:
        d = _obj(raw, where)
        return cls(
            name=normalize_iscsi_name(name, where),
            auth=Chap.from_dict(d.get("auth"), f"{where}.auth"),
            luns=_lun_map(d.get("luns"), f"{where}.luns"),
            group_name=_str(d, "group_name", where),
            extra=_extra(d, {"auth", "luns", "group_name"}),
        )

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(auth=self.auth.to_dict(), luns=_lun_dict(self.luns), group_name=self.group_name)
        return out


@dataclass(frozen=True)
class HostGroup:
    """Shared LUN masking: every member sees the group's disks."""

    name: str
    members: tuple[str, ...] = ()
    disks: dict[str, int] = field(default_factory=dict)
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: object, where: str) -> HostGroup:
        if not _GROUP_RE.fullmatch(name):
            raise ConfigError(f"{where}: group name may be 1-32 letters, digits, '@', '-', '_'")
        d = _obj(raw, where)
        members_raw = d.get("members", [])
        if not isinstance(members_raw, list):
            raise ConfigError(f"{where}.members must be a list of initiator names")
        members = tuple(
            normalize_iscsi_name(m, f"{where}.members[{i}]") for i, m in enumerate(members_raw)
        )
        return cls(
            name, members, _lun_map(d.get("disks"), f"{where}.disks"),
            _extra(d, {"members", "disks"}),
        )  # fmt: skip

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(members=list(self.members), disks=_lun_dict(self.disks))
        return out


@dataclass(frozen=True)
class TargetConfig:
    """One iSCSI target: who may log in, with which secret, and which LUNs they see."""

    iqn: str
    acl_enabled: bool = True
    auth_required: bool = True
    auth: Chap = field(default_factory=Chap)
    controls: dict[str, int | bool] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)
    disks: dict[str, int] = field(default_factory=dict)
    clients: dict[str, ClientConfig] = field(default_factory=dict)
    groups: dict[str, HostGroup] = field(default_factory=dict)
    alias: str = ""
    extra: Json = field(default_factory=dict)

    _KNOWN = frozenset(
        {"acl_enabled", "auth_required", "auth", "controls", "portals", "disks", "clients",
         "groups", "alias"}
    )  # fmt: skip

    # -- runtime helpers --------------------------------------------------------------

    def control(self, name: str) -> int | bool:
        """A target control (e.g. ``cmdsn_depth``): the override or ceph-iscsi's default."""
        return self.controls.get(name, TARGET_CONTROLS[name].default)

    def tpg_for(self, gateway_name: str) -> int | None:
        """The TPG tag this gateway serves the target on, None if it has no portal."""
        portal = self.portals.get(gateway_name)
        return portal.tpg if portal else None

    def all_portals(self) -> list[PortalAddress]:
        """Every portal of every gateway (SendTargets lists them all, as ceph-iscsi does)."""
        out: list[PortalAddress] = []
        for portal in sorted(self.portals.values(), key=lambda p: p.tpg):
            out.extend(portal.addresses())
        return out

    def client(self, initiator_name: str) -> ClientConfig | None:
        return self.clients.get(initiator_name.lower())

    def may_login(self, initiator_name: str) -> bool:
        """With ACLs only configured clients may log in; without, anyone may."""
        return not self.acl_enabled or self.client(initiator_name) is not None

    def luns_for(self, initiator_name: str) -> dict[int, str]:
        """LUN id → disk key this initiator sees (ceph-iscsi LUN masking).

        acl_enabled: the client's own mappings plus those of its host group (an unknown
        initiator sees nothing); ACL disabled: every initiator sees the target's disks.
        """
        if not self.acl_enabled:
            return {lun: key for key, lun in sorted(self.disks.items(), key=lambda kv: kv[1])}
        client = self.client(initiator_name)
        if client is None:
            return {}
        return self._client_luns(client, "")

    def _client_luns(self, client: ClientConfig, where: str) -> dict[int, str]:
        out = {lun: key for key, lun in client.luns.items()}
        group = self.groups.get(client.group_name) if client.group_name else None
        if group is not None:
            for key, lun in group.disks.items():
                if key in client.luns:
                    continue  # the client's own LUN id for this disk wins
                if out.get(lun, key) != key:
                    raise ConfigError(
                        f"{where}: LUN {lun} maps to {out[lun]!r} for the client but to "
                        f"{key!r} in its group {group.name!r}"
                    )
                out[lun] = key
        return dict(sorted(out.items()))

    def chap_for(self, initiator_name: str) -> Chap | None:
        """The CHAP credentials this initiator must use, or None when none are configured.

        A client's own credentials override the target's. None with ``auth_required`` means
        the login must be refused.
        """
        client = self.client(initiator_name)
        if client is not None and client.auth.enabled:
            return client.auth
        if self.auth.enabled:
            return self.auth
        return None

    # -- (de)serialisation ------------------------------------------------------------

    @classmethod
    def from_dict(cls, iqn: str, raw: object, where: str) -> TargetConfig:
        name = normalize_iscsi_name(iqn, where)
        d = _obj(raw, where)
        portals: dict[str, Portal] = {}
        for i, (gw, p) in enumerate(_obj(d.get("portals"), f"{where}.portals").items()):
            portals[gw] = Portal.from_dict(gw, p, f"{where}.portals[{gw!r}]", i + 1)
        owner_of_tpg: dict[int, str] = {}
        owner_of_ip: dict[tuple[str, int], str] = {}
        for gw, portal in portals.items():
            if portal.tpg in owner_of_tpg:
                raise ConfigError(
                    f"{where}.portals: gateways {owner_of_tpg[portal.tpg]!r} and {gw!r} "
                    f"both use tpg {portal.tpg}"
                )
            owner_of_tpg[portal.tpg] = gw
            for endpoint in portal.endpoints:
                if endpoint in owner_of_ip:
                    raise ConfigError(
                        f"{where}.portals: {format_endpoint(*endpoint)} is listed for both "
                        f"{owner_of_ip[endpoint]!r} and {gw!r}"
                    )
                owner_of_ip[endpoint] = gw
        disks = _lun_map(d.get("disks"), f"{where}.disks")
        groups = {
            g: HostGroup.from_dict(g, v, f"{where}.groups[{g!r}]")
            for g, v in _obj(d.get("groups"), f"{where}.groups").items()
        }
        clients: dict[str, ClientConfig] = {}
        for cname, c in _obj(d.get("clients"), f"{where}.clients").items():
            client = ClientConfig.from_dict(cname, c, f"{where}.clients[{cname!r}]")
            if client.name in clients:
                raise ConfigError(f"{where}.clients: {cname!r} is listed twice (names ignore case)")
            clients[client.name] = client
        target = cls(
            iqn=name,
            acl_enabled=_bool(d, "acl_enabled", where, True),
            auth_required=_bool(d, "auth_required", where, True),
            auth=Chap.from_dict(d.get("auth"), f"{where}.auth"),
            controls=_parse_controls(d.get("controls"), TARGET_CONTROLS, f"{where}.controls"),
            portals=portals,
            disks=disks,
            clients=clients,
            groups=groups,
            alias=_str(d, "alias", where),
            extra=_extra(d, set(cls._KNOWN)),
        )
        target._check_references(where)
        return target

    def _check_references(self, where: str) -> None:
        for cname, client in self.clients.items():
            cw = f"{where}.clients[{cname!r}]"
            for key in client.luns:
                if key not in self.disks:
                    raise ConfigError(
                        f"{cw}.luns: disk {key!r} is not mapped to the target; add it to "
                        f"{where}.disks first"
                    )
            if client.group_name and client.group_name not in self.groups:
                raise ConfigError(f"{cw}.group_name: no group {client.group_name!r}")
            self._client_luns(client, cw)
        for gname, group in self.groups.items():
            gw = f"{where}.groups[{gname!r}]"
            for m in group.members:
                if m not in self.clients:
                    raise ConfigError(f"{gw}.members: {m!r} is not a client of this target")
                if self.clients[m].group_name != gname:
                    raise ConfigError(
                        f"{gw}.members: client {m!r} has group_name "
                        f"{self.clients[m].group_name!r}, expected {gname!r}"
                    )
            for key in group.disks:
                if key not in self.disks:
                    raise ConfigError(f"{gw}.disks: disk {key!r} is not mapped to the target")

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(
            acl_enabled=self.acl_enabled,
            auth_required=self.auth_required,
            auth=self.auth.to_dict(),
            controls=dict(self.controls),
            portals={gw: p.to_dict() for gw, p in self.portals.items()},
            disks=_lun_dict(self.disks),
            clients={n: c.to_dict() for n, c in self.clients.items()},
            groups={n: g.to_dict() for n, g in self.groups.items()},
            alias=self.alias,
        )
        return out


@dataclass(frozen=True)
class GatewayConfig:
    """The whole configuration document (``gateway.conf``)."""

    version: int = CONFIG_VERSION
    epoch: int = 0
    created: str = ""
    updated: str = ""
    discovery_auth: Chap = field(default_factory=Chap)
    gateways: dict[str, GatewayInfo] = field(default_factory=dict)
    disks: dict[str, DiskConfig] = field(default_factory=dict)
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    extra: Json = field(default_factory=dict)

    _KNOWN = frozenset(
        {"version", "epoch", "created", "updated", "discovery_auth", "gateways", "disks",
         "targets"}
    )  # fmt: skip

    @classmethod
    def empty(cls) -> GatewayConfig:
        return cls()

    @staticmethod
    def empty_dict() -> Json:
        """The document a brand-new store starts from."""
        return GatewayConfig().to_dict()

    def target(self, iqn: str) -> TargetConfig | None:
        return self.targets.get(iqn.lower())

    def targets_on(self, gateway_name: str) -> list[TargetConfig]:
        """Targets this gateway has a portal for."""
        return [t for t in self.targets.values() if gateway_name in t.portals]

    def target_of_disk(self, disk_key: str) -> TargetConfig | None:
        for t in self.targets.values():
            if disk_key in t.disks:
                return t
        return None

    @classmethod
    def from_dict(cls, raw: object) -> GatewayConfig:
        d = _obj(raw, "config")
        if "version" not in d:
            raise ConfigError(f"config.version is missing; expected {CONFIG_VERSION}")
        version = _int(d, "version", "config", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"config.version {version} is not supported; expected {CONFIG_VERSION}"
            )
        epoch = _int(d, "epoch", "config", 0)
        if epoch < 0:
            raise ConfigError(f"config.epoch {epoch} must not be negative")
        gateways = {
            n: GatewayInfo.from_dict(n, v, f"gateways[{n!r}]")
            for n, v in _obj(d.get("gateways"), "gateways").items()
        }
        disks = {
            k: DiskConfig.from_dict(k, v, f"disks[{k!r}]")
            for k, v in _obj(d.get("disks"), "disks").items()
        }
        if len(disks) > MAX_DISKS:
            raise ConfigError(f"disks: {len(disks)} disks exceed the limit of {MAX_DISKS}")
        wwns: dict[str, str] = {}
        for key, disk in disks.items():
            if disk.wwn and disk.wwn in wwns:
                raise ConfigError(f"disks[{key!r}].wwn is the same as disks[{wwns[disk.wwn]!r}]")
            wwns[disk.wwn] = key
        targets: dict[str, TargetConfig] = {}
        mapped_by: dict[str, str] = {}
        for iqn, t in _obj(d.get("targets"), "targets").items():
            where = f"targets[{iqn!r}]"
            target = TargetConfig.from_dict(iqn, t, where)
            if target.iqn in targets:
                raise ConfigError(f"{where}: listed twice (IQNs ignore case)")
            for key in target.disks:
                if key not in disks:
                    raise ConfigError(f"{where}.disks: {key!r} is not defined in disks")
                if key in mapped_by:
                    raise ConfigError(
                        f"{where}.disks: {key!r} is already mapped to {mapped_by[key]!r}; "
                        "a disk belongs to one target"
                    )
                mapped_by[key] = target.iqn
            targets[target.iqn] = target
        return cls(
            version=version,
            epoch=epoch,
            created=_str(d, "created", "config"),
            updated=_str(d, "updated", "config"),
            discovery_auth=Chap.from_dict(d.get("discovery_auth"), "discovery_auth"),
            gateways=gateways,
            disks=disks,
            targets=targets,
            extra=_extra(d, set(cls._KNOWN)),
        )

    def to_dict(self) -> Json:
        out = dict(self.extra)
        out.update(
            version=self.version,
            epoch=self.epoch,
            created=self.created,
            updated=self.updated,
            discovery_auth=self.discovery_auth.to_dict(),
            gateways={n: g.to_dict() for n, g in self.gateways.items()},
            disks={k: v.to_dict() for k, v in self.disks.items()},
            targets={k: v.to_dict() for k, v in self.targets.items()},
        )
        return out
