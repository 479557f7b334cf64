"""The text of ``ls`` summaries and ``info`` pages, as pure functions of API replies.

The summaries read the way ceph-iscsi's gwcli prints them, so people and scripts that know
``[Up: 2/2, Portals: 2]``, ``[Owner: gw1, Lun: 0]`` or ``[LOGGED-IN, Auth: CHAP, Disks:
1(100G)]`` find the same words here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ...config.names import parse_size
from ...errors import ConfigError

Json = dict[str, Any]

_UNITS = ("B", "K", "M", "G", "T", "P", "E")


def human_size(n: int | None) -> str:
    """Bytes in the largest binary unit that keeps the number ≥ 1 (``107374182400`` → ``100G``).

    Exact multiples print without decimals; others with up to two (``1.5G``).
    """
    if not n or n < 0:
        return "0B"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if value == int(value):
        return f"{int(value)}{_UNITS[unit]}"
    return f"{value:.2f}".rstrip("0").rstrip(".") + _UNITS[unit]


def to_bytes(value: object) -> int:
    """A size from an API reply: bytes (int) or a string like ``"10G"``; unknown → 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        return max(int(value), 0)
    if isinstance(value, str) and value.strip():
        try:
            return parse_size(value)
        except ConfigError:
            return 0
    return 0


def auth_mode(auth: Mapping[str, Any] | None) -> str:
    """``None``, ``CHAP`` or ``CHAP_MUTUAL`` for a ceph-iscsi ``auth`` dict."""
    if not auth:
        return "None"
    if auth.get("mutual_username") or auth.get("mutual_password"):
        return "CHAP_MUTUAL"
    if auth.get("username") or auth.get("password"):
        return "CHAP"
    return "None"


def disk_key(pool: str, image: str) -> str:
    return f"{pool}/{image}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- summaries (text, healthy) -------------------------------------------------------------------


def disks_summary(sizes: Iterable[int]) -> str:
    sizes = list(sizes)
    return f"{human_size(sum(sizes))}, Disks: {len(sizes)}"


def pool_summary(pool: str, sizes: Iterable[int]) -> str:
    return f"{pool} ({human_size(sum(sizes))})"


def disk_summary(key: str, state: str, size: int) -> tuple[str, bool | None]:
    healthy: bool | None = state == "Online" if state != "Unknown" else None
    return f"{key} ({state}, {human_size(size)})", healthy


def targets_summary(discovery_auth: Mapping[str, Any] | None, count: int) -> str:
    return f"DiscoveryAuth: {auth_mode(discovery_auth)}, Targets: {count}"


def target_summary(target: Mapping[str, Any]) -> str:
    return f"Auth: {auth_mode(target.get('auth'))}, Gateways: {len(target.get('portals') or {})}"


def gateways_summary(states: Mapping[str, str], portal_count: int) -> tuple[str, bool | None]:
    up = sum(1 for s in states.values() if s == "UP")
    total = len(states)
    healthy: bool | None = up == total if total else None
    return f"Up: {up}/{total}, Portals: {portal_count}", healthy


def gateway_summary(ips: Iterable[str], state: str) -> tuple[str, bool]:
    return f"{','.join(ips)} ({state})", state == "UP"


def target_disk_summary(owner: str, lun_id: object) -> str:
    return f"Owner: {owner or 'None'}, Lun: {lun_id}"


def hostgroups_summary(count: int) -> str:
    return f"Groups : {count}"  # sic: ceph-iscsi prints a space before the colon


def hostgroup_summary(group: Mapping[str, Any]) -> str:
    return f"Hosts: {len(group.get('members') or [])}, Disks: {len(group.get('disks') or {})}"


def acl_state(target: Mapping[str, Any]) -> str:
    """``ACL_ENABLED``, ``ACL_DISABLED`` or ``MISCONFIG`` (some clients with CHAP, some not).

    MISCONFIG is only judged when the target itself has no CHAP (as ceph-iscsi does).
    """
    if not target.get("acl_enabled", True):
        return "ACL_DISABLED"
    clients = target.get("clients") or {}
    if auth_mode(target.get("auth")) == "None" and clients:
        with_chap = [auth_mode(c.get("auth")) != "None" for c in clients.values()]
        if any(with_chap) and not all(with_chap):
            return "MISCONFIG"
    return "ACL_ENABLED"


def hosts_summary(target: Mapping[str, Any]) -> tuple[str, bool | None]:
    state = acl_state(target)
    clients = target.get("clients") or {}
    return f"Auth: {state}, Hosts: {len(clients)}", (False if state == "MISCONFIG" else None)


def host_summary(
    logged_in: bool, auth: Mapping[str, Any] | None, disk_sizes: list[int], group: str = ""
) -> tuple[str, bool | None]:
    parts = []
    if logged_in:
        parts.append("LOGGED-IN")
    parts.append(f"Auth: {auth_mode(auth)}")
    if group:
        parts.append(f"Group: {group}")
    parts.append(f"Disks: {len(disk_sizes)}({human_size(sum(disk_sizes))})")
    return ", ".join(parts), (True if logged_in else None)


def lun_summary(key: str, size: int, owner: str) -> str:
    return f"{key}({human_size(size)}), Owner: {owner or 'None'}"


# -- info pages -----------------------------------------------------------------------------------


def info_lines(pairs: Iterable[tuple[str, object]], width: int | None = None) -> str:
    """``key .......... value`` lines; dicts/lists are shown as indented JSON-ish blocks."""
    pairs = list(pairs)
    w = width or (max((len(k) for k, _ in pairs), default=0) + 1)
    out: list[str] = []
    for key, value in pairs:
        if isinstance(value, Mapping) and not value:
            out.append(f"{key.ljust(w, '.')} -")
        elif isinstance(value, Mapping):
            out.append(f"{key}:")
            for k in sorted(value):
                v = value[k]
                shown = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                out.append(f"  {k}: {shown}")
        elif isinstance(value, list | tuple):
            out.append(f"{key.ljust(w, '.')} {', '.join(str(v) for v in value) or '-'}")
        else:
            shown = "-" if value is None or value == "" else value
            out.append(f"{key.ljust(w, '.')} {shown}")
    return "\n".join(out)


def export_text(config: Json) -> str:
    """The whole configuration as gwcli 3.5's ``export`` prints it (sorted keys, indent 4)."""
    return json.dumps(config, sort_keys=True, indent=4)
