"""Targets, their controls and CHAP, and discovery CHAP (ceph-iscsi's rules, §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError
from ..model import TARGET_CONTROLS
from ..names import normalize_iscsi_name, validate_chap
from ._doc import (
    Doc,
    auth_dict,
    merge_controls,
    new_target,
    parse_controls,
    target,
    targets,
    touch,
)

ACL_ACTIONS = ("enable_acl", "disable_acl")


def create_target(doc: Doc, iqn: str, controls: Mapping[str, Any] | None = None) -> str:
    """Define a target (idempotent, like ceph-iscsi); returns the normalized IQN."""
    name = normalize_iscsi_name(iqn, "target")
    if not name.startswith("iqn."):
        raise ConfigError(f"Invalid iqn {iqn} - a target name must be an iqn. name")
    parsed = parse_controls(controls or {}, TARGET_CONTROLS, "target")
    t = targets(doc).get(name)
    if t is None:
        t = targets(doc)[name] = new_target()
    if parsed:
        t["controls"] = merge_controls(t.get("controls", {}), parsed, TARGET_CONTROLS)
        touch(t)
    return name


def reconfigure_target(doc: Doc, iqn: str, controls: Mapping[str, Any]) -> None:
    """Change target controls; an empty value resets a control to its default."""
    _, t = target(doc, iqn)
    parsed = parse_controls(controls, TARGET_CONTROLS, "target")
    t["controls"] = merge_controls(t.get("controls", {}), parsed, TARGET_CONTROLS)
    touch(t)


def delete_target(doc: Doc, iqn: str) -> None:
    name, t = target(doc, iqn)
    n_disks, n_clients = len(t.get("disks", {})), len(t.get("clients", {}))
    if n_disks or n_clients:
        raise ConfigError(
            f"Target {name} still has {n_disks} disk(s) and {n_clients} client(s); "
            "delete its clients and unmap its disks first"
        )
    del targets(doc)[name]


def set_discovery_auth(
    doc: Doc, username: str, password: str, mutual_username: str, mutual_password: str
) -> None:
    validate_chap(username, password, mutual_username, mutual_password, "discovery auth")
    doc["discovery_auth"] = auth_dict(username, password, mutual_username, mutual_password)


def set_target_auth(
    doc: Doc,
    iqn: str,
    action: str | None,
    username: str | None,
    password: str | None,
    mutual_username: str | None,
    mutual_password: str | None,
    auth_required: bool | None = None,
) -> bool:
    """ceph-iscsi's ``targetauth``: ``action`` enable_acl/disable_acl and/or target CHAP.

    ceph-iscsi clients send either an action or the four credentials (the Ceph Dashboard sends
    ``disable_acl`` and then the credentials): credentials that are all None are left as
    they are, so an action alone does not clear the target's CHAP.

    ``auth_required`` (iscsigw extension; None = derive it):

    * ACL disabled and no target CHAP is ceph-iscsi's open target (any initiator logs in
      without authentication), so deriving gives ``auth_required: false`` there;
    * ACL disabled with target CHAP, or ``enable_acl``, give ``true`` (CHAP required, the
      default);
    * any other call leaves it as it is (e.g. an ACL target opened to name-only logins on
      purpose with ``auth_required=false``).

    Returns the target's resulting ``auth_required``.
    """
    name, t = target(doc, iqn)
    if action:
        if action not in ACL_ACTIONS:
            raise ConfigError(f"Invalid auth {action}; use enable_acl or disable_acl")
        if action == "disable_acl" and t.get("clients"):
            raise ConfigError("Cannot disable ACL authentication because target has clients")
        t["acl_enabled"] = action == "enable_acl"
    creds = (username, password, mutual_username, mutual_password)
    if any(c is not None for c in creds) or not action:
        u, p, mu, mp = (c or "" for c in creds)
        validate_chap(u, p, mu, mp, f"target {name} auth")
        t["auth"] = auth_dict(u, p, mu, mp)
    if auth_required is None:
        has_chap = bool((t.get("auth") or {}).get("username"))
        if not t.get("acl_enabled", True):
            auth_required = has_chap
        elif action == "enable_acl":
            auth_required = True
    if auth_required is not None:
        t["auth_required"] = auth_required
    touch(t)
    return bool(t.get("auth_required", True))


__all__ = [
    "ACL_ACTIONS",
    "create_target",
    "delete_target",
    "reconfigure_target",
    "set_discovery_auth",
    "set_target_auth",
]
