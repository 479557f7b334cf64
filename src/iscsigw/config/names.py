"""Validators for the names and values an administrator types.

Every validator raises ``ConfigError`` with a message that names the value, says which rule it
broke and what would be accepted, because these messages end up in front of the person who
typed the value (CLI, REST API, a hand-edited gateway.conf).

iSCSI names follow RFC 7143 §4.2.7 (iqn./eui./naa. formats, at most 223 bytes, compared
case-insensitively, so they are normalised to lower case). CHAP credentials follow
ceph-iscsi's rules (``gwcli/utils.py:valid_credentials``) so a config written for one works
with the other; the restricted charset exists because LIO silently truncated secrets with
characters such as ``& ! # $ ^ *``.
"""

from __future__ import annotations

import ipaddress
import re
import uuid

from ..errors import ConfigError

MAX_ISCSI_NAME_BYTES = 223

# iqn.YYYY-MM.reversed.domain[:unique]; the domain labels are DNS labels.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_IQN_RE = re.compile(rf"iqn\.(\d{{4}})-(\d{{2}})\.{_LABEL}(?:\.{_LABEL})*(?::(.*))?")
_EUI_RE = re.compile(r"eui\.[0-9a-f]{16}")
_NAA_RE = re.compile(r"naa\.(?:[0-9a-f]{16}|[0-9a-f]{32})")

# ceph-iscsi: username ^[\w\\.\:\@\_\-]{8,64}$, password ^[\w\@\-\_\/]{12,16}$ (\w is Unicode).
_CHAP_USER_RE = re.compile(r"[\w\\.:@_\-]+")
_CHAP_SECRET_RE = re.compile(r"[\w@\-_/]+")
CHAP_USERNAME_LEN = (8, 64)
CHAP_PASSWORD_LEN = (12, 16)

# ceph-iscsi: pool/image ^[a-zA-Z0-9\-_\.]+$
_POOL_IMAGE_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_MAX_POOL_IMAGE_LEN = 255  # one path component for the file backend

_SIZE_RE = re.compile(r"(\d+)\s*([KMGTP]?)(?:I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}

LUN_ID_MAX = 255
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?")


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def normalize_iscsi_name(name: str, where: str = "") -> str:
    """Validate an iqn./eui./naa. name and return it in lower case."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_where(where)}an iSCSI name is required (iqn.…, eui.… or naa.…)")
    if len(name.encode()) > MAX_ISCSI_NAME_BYTES:
        raise ConfigError(
            f"{_where(where)}iSCSI name {name!r} is longer than {MAX_ISCSI_NAME_BYTES} bytes"
        )
    low = name.lower()
    if low.startswith("iqn."):
        m = _IQN_RE.fullmatch(low)
        if m is None:
            raise ConfigError(
                f"{_where(where)}{name!r} is not a valid IQN; expected "
                "iqn.YYYY-MM.reversed.domain[:identifier], e.g. iqn.2026-11.io.iscsigw:disk1"
            )
        month = int(m.group(2))
        if not 1 <= month <= 12:
            raise ConfigError(f"{_where(where)}{name!r}: month {m.group(2)} in the IQN date")
        tail = m.group(3)
        if tail is not None and (not tail.isprintable() or any(c.isspace() for c in tail)):
            raise ConfigError(
                f"{_where(where)}{name!r}: the part after ':' may not contain spaces "
                "or control characters"
            )
        return low
    if low.startswith("eui."):
        if _EUI_RE.fullmatch(low) is None:
            raise ConfigError(
                f"{_where(where)}{name!r} is not a valid EUI name; expected eui. + 16 hex digits"
            )
        return low
    if low.startswith("naa."):
        if _NAA_RE.fullmatch(low) is None:
            raise ConfigError(
                f"{_where(where)}{name!r} is not a valid NAA name; "
                "expected naa. + 16 or 32 hex digits"
            )
        return low
    raise ConfigError(
        f"{_where(where)}{name!r} is not an iSCSI name; it must start with iqn., eui. or naa."
    )


def is_iscsi_name(name: str) -> bool:
    try:
        normalize_iscsi_name(name)
    except ConfigError:
        return False
    return True


def _check_chap_field(value: str, field: str, where: str) -> None:
    lo, hi = CHAP_USERNAME_LEN if field.endswith("username") else CHAP_PASSWORD_LEN
    pattern = _CHAP_USER_RE if field.endswith("username") else _CHAP_SECRET_RE
    if not lo <= len(value) <= hi:
        raise ConfigError(
            f"{_where(where)}CHAP {field} must be {lo} to {hi} characters long "
            f"(it has {len(value)})"
        )
    if pattern.fullmatch(value) is None:
        allowed = (
            "letters, digits and . : @ _ - \\"
            if field.endswith("username")
            else "letters, digits and @ - _ /"
        )
        raise ConfigError(f"{_where(where)}CHAP {field} may only contain {allowed}")


def validate_chap(
    username: str,
    password: str,
    mutual_username: str = "",
    mutual_password: str = "",
    where: str = "",
) -> None:
    """Check a CHAP credential set; all four empty means "no CHAP"."""
    if password and not username:
        raise ConfigError(f"{_where(where)}a CHAP password needs a username")
    if username and not password:
        raise ConfigError(f"{_where(where)}CHAP username {username!r} needs a password")
    if mutual_username and not username:
        raise ConfigError(
            f"{_where(where)}mutual CHAP needs one-way CHAP first (set username and password)"
        )
    if bool(mutual_username) != bool(mutual_password):
        raise ConfigError(
            f"{_where(where)}mutual CHAP needs both mutual_username and mutual_password"
        )
    for field, value in (
        ("username", username),
        ("password", password),
        ("mutual_username", mutual_username),
        ("mutual_password", mutual_password),
    ):
        if value:
            _check_chap_field(value, field, where)


def parse_size(value: str | int, where: str = "") -> int:
    """``"100G"``, ``"512M"``, ``"2T"``, ``"1024K"`` (binary units) or plain bytes → bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"{_where(where)}size {value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{_where(where)}size {value} is negative")
        return value
    m = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(
            f"{_where(where)}size {value!r} is not understood; use bytes or a number "
            "followed by K, M, G or T (powers of 1024), e.g. 10G"
        )
    return int(m.group(1)) << _SIZE_UNITS[m.group(2).upper()]


def format_size(n: int) -> str:
    """Bytes → the shortest exact ``parse_size`` string (``1073741824`` → ``1G``)."""
    for unit in ("P", "T", "G", "M", "K"):
        shift = _SIZE_UNITS[unit]
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def validate_pool_or_image(name: str, what: str = "pool", where: str = "") -> str:
    """A Ceph pool or RBD image name; for the file backend also one directory/file name."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_where(where)}{what} name is empty")
    if len(name) > _MAX_POOL_IMAGE_LEN:
        raise ConfigError(
            f"{_where(where)}{what} name is longer than {_MAX_POOL_IMAGE_LEN} characters"
        )
    if _POOL_IMAGE_RE.fullmatch(name) is None:
        raise ConfigError(
            f"{_where(where)}{what} name {name!r} may only contain letters, digits and . _ -"
        )
    if name in (".", ".."):
        raise ConfigError(f"{_where(where)}{what} name {name!r} is not allowed")
    return name


def split_disk_key(key: str, where: str = "") -> tuple[str, str]:
    """``"pool/image"`` → ``("pool", "image")``, both validated."""
    if not isinstance(key, str) or key.count("/") != 1:
        raise ConfigError(f"{_where(where)}disk {key!r} must be written pool/image")
    pool, image = key.split("/")
    return (
        validate_pool_or_image(pool, "pool", where),
        validate_pool_or_image(image, "image", where),
    )


def validate_lun_id(lun_id: object, where: str = "") -> int:
    if isinstance(lun_id, bool) or not isinstance(lun_id, int):
        raise ConfigError(f"{_where(where)}lun_id {lun_id!r} must be an integer")
    if not 0 <= lun_id <= LUN_ID_MAX:
        raise ConfigError(f"{_where(where)}lun_id {lun_id} must be between 0 and {LUN_ID_MAX}")
    return lun_id


def validate_ip(address: object, where: str = "") -> str:
    """An IPv4/IPv6 address (no brackets, no port), returned in canonical form."""
    if not isinstance(address, str):
        raise ConfigError(f"{_where(where)}IP address {address!r} must be a string")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ConfigError(f"{_where(where)}{address!r} is not an IPv4 or IPv6 address")


def validate_port(port: object, where: str = "") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{_where(where)}port {port!r} must be an integer from 1 to 65535")
    return port


def validate_gateway_name(name: object, where: str = "") -> str:
    """A gateway name: a host name or FQDN (letters, digits, '-', '_', '.')."""
    if not isinstance(name, str) or not name or len(name) > 253 or not _HOST_RE.fullmatch(name):
        raise ConfigError(
            f"{_where(where)}gateway name {name!r} must be a host name "
            "(letters, digits, '-', '_' and '.')"
        )
    return name


def validate_wwn(wwn: object, where: str = "") -> str:
    """A disk's unit serial: a UUID (as LIO generates), returned in canonical form."""
    if not isinstance(wwn, str):
        raise ConfigError(f"{_where(where)}wwn {wwn!r} must be a UUID string")
    try:
        return str(uuid.UUID(wwn))
    except ValueError:
        raise ConfigError(f"{_where(where)}wwn {wwn!r} is not a UUID")


def parse_endpoint(text: object, default_port: int, where: str = "") -> tuple[str, int]:
    """``"IP"``, ``"IP:PORT"``, ``"IPv6"`` or ``"[IPv6]:PORT"`` → ``(ip, port)``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{_where(where)}{text!r} must be IP or IP:PORT")
    s = text.strip()
    port: object = default_port
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{_where(where)}{text!r} must be [IPv6] or [IPv6]:PORT")
        if rest:
            port = int(rest[1:]) if rest[1:].isdigit() else rest[1:]
        s = host
    elif s.count(":") == 1:
        s, _, p = s.partition(":")
        port = int(p) if p.isdigit() else p
    return validate_ip(s, where), validate_port(port, where)


def format_endpoint(ip: str, port: int, default_port: int | None = None) -> str:
    """The inverse of ``parse_endpoint``; the port is left out when it is ``default_port``."""
    if port == default_port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
