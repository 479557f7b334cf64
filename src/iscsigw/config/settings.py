"""``iscsi-gateway.cfg``: the per-host settings file of ceph-iscsi, read the same way.

An INI file with sections ``[config]`` (the gateway and its REST API), ``[device_status]``
(disk health polling) and ``[target]`` (global defaults for the per-target and per-disk
controls). Every setting is one row of ``SETTINGS`` — section, name, type, default and range —
with ceph-iscsi 3.5's defaults (``ceph_iscsi_config/settings.py``), so a file written for
ceph-iscsi means the same thing here. Differences, on purpose:

* unknown keys are not silently ignored: they are collected in ``GatewaySettings.unknown``
  and logged as one warning (e.g. the docs' ``gateway_keyring``, which ceph-iscsi never read);
* a bad value is refused with a message naming the section, key and rule;
* ``config://KEY`` values are fetched from the monitors' config-key store (``ceph config-key
  get KEY``) as ceph-iscsi does, over the connection the same file describes (``cluster_name``,
  ``cluster_client_name``, ``ceph_config_dir``/``ceph_conf``, which cannot be ``config://``);
  ``parse_settings`` without a resolver refuses them with a clear error.

iscsigw extensions (not ceph-iscsi 3.5 settings, documented in docs/ceph.md):

* ``ceph_conf``: the cluster's configuration file. Default: ``<ceph_config_dir>/<cluster_name>.conf``
  when ``ceph_config_dir`` is set in the file (ceph-iscsi's rule), else ``$CEPH_CONF``, else
  ``/etc/ceph/<cluster_name>.conf``.
* ``config_store``: where ``gateway.conf`` lives: ``rados`` (object ``gateway_conf`` in
  ``pool``, shared by every gateway of the cluster, as ceph-iscsi), ``file`` (``DATA_DIR/gateway.conf``)
  or ``auto`` (the default): ``rados`` when the file sets ``pool``, ``gateway_conf``,
  ``ceph_conf`` or ``ceph_config_dir``, else ``file``. ``cluster_name`` alone does not select
  RADOS: ceph-iscsi's sample cfg sets it everywhere.

``[target]`` accepts the target controls (``cmdsn_depth`` …) and the disk controls
(``max_data_area_mb`` …) with the ranges of ``config.model``.
"""

from __future__ import annotations

import configparser
import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import DISK_CONTROLS, TARGET_CONTROLS

DEFAULT_CFG_PATH = Path("/etc/ceph/iscsi-gateway.cfg")
CERT_NAME = "iscsi-gateway.crt"
KEY_NAME = "iscsi-gateway.key"

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Setting:
    """One row: ``kind`` is ``str``, ``int``, ``bool``, ``list`` (comma separated) or ``choice``."""

    section: str
    name: str
    kind: str
    default: Any
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> Any:
        where = f"[{self.section}] {self.name}"
        text = raw.strip()
        if text.startswith("config://"):
            raise ConfigError(
                f"{where} = {text}: 'config://' values (read from the Ceph monitors' config-key "
                "store) are not supported yet; write the value itself into the file"
            )
        if self.kind == "str":
            return text
        if self.kind == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ConfigError(f"{where} = {text!r}: must be true or false (also yes/no, 1/0)")
        if self.kind == "int":
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"{where} = {text!r}: must be an integer")
            if self.lo is not None and self.hi is not None and not self.lo <= value <= self.hi:
                raise ConfigError(f"{where} = {value}: must be between {self.lo} and {self.hi}")
            return value
        if self.kind == "list":
            return tuple(item.strip() for item in text.split(",") if item.strip())
        if self.kind == "choice":
            if text.lower() not in self.choices:
                raise ConfigError(f"{where} = {text!r}: must be one of {', '.join(self.choices)}")
            return text.lower()
        raise AssertionError(self.kind)  # pragma: no cover - table error


_S = Setting
# ceph-iscsi 3.5 defaults (code, not the sample cfg: api_secure is True there).
SETTINGS: tuple[Setting, ...] = (
    _S("config", "cluster_name", "str", "ceph"),
    _S("config", "pool", "str", "rbd"),
    _S("config", "cluster_client_name", "str", "client.admin"),
    _S("config", "ceph_config_dir", "str", "/etc/ceph"),
    _S("config", "gateway_conf", "str", "gateway.conf"),
    _S("config", "ceph_user", "str", "admin"),
    _S("config", "ceph_conf", "str", ""),  # iscsigw extension
    _S("config", "config_store", "choice", "auto", choices=("auto", "file", "rados")),  # ext.
    _S("config", "api_host", "str", "::"),
    _S("config", "api_port", "int", 5000, 1, 65535),
    _S("config", "api_secure", "bool", True),
    _S("config", "api_ssl_verify", "bool", False),
    _S("config", "api_user", "str", "admin"),
    _S("config", "api_password", "str", "admin"),
    _S("config", "trusted_ip_list", "list", ()),
    _S("config", "minimum_gateways", "int", 2, 1, 9999),
    _S("config", "time_out", "int", 30, 1, 600),
    _S("config", "loop_delay", "int", 2, 1, 60),
    _S("config", "priv_key", "str", "iscsi-gateway.key"),
    _S("config", "pub_key", "str", "iscsi-gateway-pub.key"),
    _S("config", "alua_failover_type", "choice", "implicit", choices=("implicit", "explicit")),
    _S("config", "prometheus_exporter", "bool", True),
    _S("config", "prometheus_host", "str", "::"),
    _S("config", "prometheus_port", "int", 9287, 1, 65535),
    _S("config", "logger_level", "int", 10, 10, 50),
    _S("config", "log_to_file", "bool", True),
    _S("config", "log_to_stderr", "bool", False),
    _S("config", "log_to_stderr_prefix", "str", ""),
    _S("config", "debug", "bool", False),
    _S("device_status", "lock_lost_cnt_threshhold", "int", 12, 1, 1000000),
    _S("device_status", "status_check_interval", "int", 10, 1, 86400),
    _S("device_status", "stable_state_reset_count", "int", 3, 1, 1000000),
)
SECTIONS = ("config", "device_status", "target")
# Settings left out of /api/sysinfo/checkconf's hash (they may differ between gateways).
_HASH_EXCLUDED = frozenset({"cluster_client_name", "logger_level", "ceph_conf"})
# How to reach the cluster: these can never come from the cluster (config://).
CONNECTION_KEYS = frozenset(
    {"cluster_name", "cluster_client_name", "ceph_config_dir", "ceph_conf", "config_store"}
)
# Setting any of these in the file selects the RADOS config store (config_store = auto).
_RADOS_HINTS = ("pool", "gateway_conf", "ceph_conf", "ceph_config_dir")
CONFIG_KEY_PREFIX = "config://"


@dataclass(frozen=True)
class CephConnection:
    """How this gateway reaches its Ceph cluster (no Ceph import: plain values).

    ``conf`` None means ``$CEPH_CONF``, else ``/etc/ceph/<cluster>.conf`` (decided when
    connecting); ``keyring`` None means whatever the conf file / librados defaults name.
    """

    conf: str | None = None
    client: str = "client.admin"
    cluster: str = "ceph"
    keyring: str | None = None

    def options(self) -> dict[str, str]:
        return {"keyring": self.keyring} if self.keyring else {}


ConfigKeyResolver = Callable[[CephConnection, list[str]], dict[str, str]]


@dataclass(frozen=True)
class GatewaySettings:
    """The parsed file; attribute names are the ``[config]``/``[device_status]`` keys."""

    cluster_name: str = "ceph"
    pool: str = "rbd"
    cluster_client_name: str = "client.admin"
    ceph_config_dir: str = "/etc/ceph"
    gateway_conf: str = "gateway.conf"
    ceph_user: str = "admin"
    ceph_conf: str = ""
    config_store: str = "auto"
    api_host: str = "::"
    api_port: int = 5000
    api_secure: bool = True
    api_ssl_verify: bool = False
    api_user: str = "admin"
    api_password: str = "admin"
    trusted_ip_list: tuple[str, ...] = ()
    minimum_gateways: int = 2
    time_out: int = 30
    loop_delay: int = 2
    priv_key: str = "iscsi-gateway.key"
    pub_key: str = "iscsi-gateway-pub.key"
    alua_failover_type: str = "implicit"
    prometheus_exporter: bool = True
    prometheus_host: str = "::"
    prometheus_port: int = 9287
    logger_level: int = 10
    log_to_file: bool = True
    log_to_stderr: bool = False
    log_to_stderr_prefix: str = ""
    debug: bool = False
    lock_lost_cnt_threshhold: int = 12
    status_check_interval: int = 10
    stable_state_reset_count: int = 3
    # [target]: overrides of the control defaults
    target_defaults: dict[str, int | bool] = field(default_factory=dict)
    disk_defaults: dict[str, int | bool] = field(default_factory=dict)
    # bookkeeping
    path: Path | None = None
    unknown: tuple[str, ...] = ()
    explicit: frozenset[str] = frozenset()  # keys the file set

    def __repr__(self) -> str:  # never print the API password
        return f"GatewaySettings(path={self.path!r}, api={self.api_host}:{self.api_port})"

    @property
    def config_dir(self) -> Path:
        """Where the TLS files live: the cfg file's directory (``/etc/ceph``)."""
        return self.path.parent if self.path is not None else Path(self.ceph_config_dir)

    @property
    def uses_rados_store(self) -> bool:
        """Whether ``gateway.conf`` lives in RADOS (see ``config_store`` in the docstring)."""
        if self.config_store != "auto":
            return self.config_store == "rados"
        return any(name in self.explicit for name in _RADOS_HINTS)

    def ceph_connection(self) -> CephConnection:
        """The cluster connection the file describes (ceph-iscsi's rules, plus ``ceph_conf``)."""
        client = self.cluster_client_name
        client = client if "." in client else f"client.{client}"
        conf: str | None = None
        keyring: str | None = None
        if self.ceph_conf:
            conf = str(Path(self.ceph_conf).expanduser())
        if "ceph_config_dir" in self.explicit:
            directory = Path(self.ceph_config_dir).expanduser()
            conf = conf or str(directory / f"{self.cluster_name}.conf")
            candidate = directory / f"{self.cluster_name}.{client}.keyring"
            if candidate.is_file():
                keyring = str(candidate)
        return CephConnection(conf=conf, client=client, cluster=self.cluster_name, keyring=keyring)

    def target_control_default(self, name: str) -> int | bool:
        return self.target_defaults.get(name, TARGET_CONTROLS[name].default)

    def disk_control_default(self, name: str) -> int | bool:
        return self.disk_defaults.get(name, DISK_CONTROLS[name].default)

    def checkconf_hash(self) -> str:
        """sha256 over every setting that must be equal on all gateways."""
        h = hashlib.sha256()
        for row in SETTINGS:
            if row.name not in _HASH_EXCLUDED:
                h.update(f"{row.name}={getattr(self, row.name)!r}\n".encode())
        for name, value in sorted({**self.target_defaults, **self.disk_defaults}.items()):
            h.update(f"{name}={value!r}\n".encode())
        return h.hexdigest()

    def with_overrides(self, **changes: Any) -> GatewaySettings:
        return replace(self, **changes)


def _check_table() -> None:
    names = {f.name for f in fields(GatewaySettings)}
    for row in SETTINGS:
        if row.name not in names:  # pragma: no cover - table error
            raise AssertionError(f"setting {row.name} has no GatewaySettings field")


_check_table()
_BY_KEY = {(row.section, row.name): row for row in SETTINGS}


def _resolve_config_keys(
    parser: configparser.ConfigParser, where: str, resolve: ConfigKeyResolver | None
) -> dict[tuple[str, str], str]:
    """``{(section, key): value}`` for every ``config://`` value, fetched from the monitors."""
    wanted: dict[tuple[str, str], str] = {}
    for section in parser.sections():
        if section not in SECTIONS:
            continue
        for key, raw in parser.items(section):
            text = raw.strip()
            if not text.startswith(CONFIG_KEY_PREFIX):
                continue
            if section == "config" and key in CONNECTION_KEYS:
                raise ConfigError(
                    f"{where}: [config] {key} = {text}: the cluster connection settings "
                    f"({', '.join(sorted(CONNECTION_KEYS))}) cannot come from the cluster itself"
                )
            name = text[len(CONFIG_KEY_PREFIX) :]
            if not name:
                raise ConfigError(f"{where}: [{section}] {key} = {text}: no config-key name")
            wanted[(section, key)] = name
    if not wanted:
        return {}
    if resolve is None:
        (section, key), name = next(iter(wanted.items()))
        raise ConfigError(
            f"{where}: [{section}] {key} = config://{name}: 'config://' values (read from the "
            "Ceph monitors' config-key store) need the cluster; load the file with "
            "load_settings, or write the value itself into the file"
        )
    # The connection comes from the file's own (literal) connection settings.
    conn_values: dict[str, Any] = {}
    for key in CONNECTION_KEYS:
        if parser.has_option("config", key):
            conn_values[key] = _BY_KEY[("config", key)].parse(parser.get("config", key))
    conn = GatewaySettings(**conn_values, explicit=frozenset(conn_values)).ceph_connection()
    try:
        values = resolve(conn, sorted(set(wanted.values())))
    except ConfigError as exc:
        raise ConfigError(f"{where}: cannot resolve its config:// values: {exc}")
    out: dict[tuple[str, str], str] = {}
    for (section, key), name in wanted.items():
        if name not in values:
            raise ConfigError(
                f"{where}: [{section}] {key} = config://{name}: the monitors have no "
                f"config-key {name!r} (set it with: ceph config-key set {name} VALUE)"
            )
        out[(section, key)] = values[name]
    return out


def parse_settings(
    text: str, path: Path | None = None, *, resolve: ConfigKeyResolver | None = None
) -> GatewaySettings:
    """Parse the INI text; raise ConfigError naming the first bad key and its rule.

    ``resolve(connection, keys) -> {key: value}`` fetches ``config://`` values; without it
    they are refused."""
    where = str(path) if path is not None else "iscsi-gateway.cfg"
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        raise ConfigError(f"{where}: not a valid INI file: {exc}".replace("\n", " "))
    try:
        fetched = _resolve_config_keys(parser, where, resolve)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}")
    values: dict[str, Any] = {}
    unknown: list[str] = []
    target_defaults: dict[str, int | bool] = {}
    disk_defaults: dict[str, int | bool] = {}
    for section in parser.sections():
        if section not in SECTIONS:
            unknown.append(f"[{section}]")
            continue
        for key, raw in parser.items(section):
            raw = fetched.get((section, key), raw)
            if section == "target":
                ctl = TARGET_CONTROLS.get(key) or DISK_CONTROLS.get(key)
                if ctl is None:
                    unknown.append(f"[target] {key}")
                    continue
                value = ctl.parse(raw.strip(), f"{where}: [target] {key}")
                (target_defaults if key in TARGET_CONTROLS else disk_defaults)[key] = value
                continue
            row = _BY_KEY.get((section, key))
            if row is None:
                unknown.append(f"[{section}] {key}")
                continue
            try:
                values[key] = row.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}")
    for ip in values.get("trusted_ip_list", ()):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(
                f"{where}: [config] trusted_ip_list: {ip!r} is not an IPv4 or IPv6 address"
            )
    return GatewaySettings(
        **values,
        target_defaults=target_defaults,
        disk_defaults=disk_defaults,
        path=path,
        unknown=tuple(unknown),
        explicit=frozenset(values),
    )


def fetch_config_keys(conn: CephConnection, keys: list[str]) -> dict[str, str]:
    """The default resolver: ``config-key get`` on the monitors (needs Ceph's bindings)."""
    from .rados_store import config_key_values  # imports rados only when a value asks for it

    return config_key_values(conn, keys)


def load_settings(
    path: str | Path, *, resolve: ConfigKeyResolver | None = fetch_config_keys
) -> GatewaySettings:
    """Read and parse the file; ``config://`` values are fetched from the monitors."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such settings file (iscsi-gateway.cfg)")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the settings file: {exc.strerror}")
    return parse_settings(text, p, resolve=resolve)


__all__ = [
    "CERT_NAME",
    "CONNECTION_KEYS",
    "DEFAULT_CFG_PATH",
    "KEY_NAME",
    "SETTINGS",
    "CephConnection",
    "ConfigKeyResolver",
    "GatewaySettings",
    "Setting",
    "fetch_config_keys",
    "load_settings",
    "parse_settings",
]
