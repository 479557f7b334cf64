"""``iscsigw config import FILE`` / ``iscsigw config export``: gateway.conf v11 JSON in and out.

Import replaces the whole stored document with the file's (validated first; nothing is written
when it is refused) and keeps the epoch growing, so running gateways apply it like any other
change. A ceph-iscsi ``gateway.conf`` (version 11) can be imported as it is, as long as its CHAP
secrets are in plain text (export it with ``gwcli export`` or ``GET /api/config``). Export
prints the stored document (sorted keys, indent 4, like ``gwcli export``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..config.model import GatewayConfig
from ..config.store import ConfigStore, commit_retrying
from ..errors import ConfigError

_BOOKKEEPING = ("epoch", "created", "updated")


def read_document(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the configuration must be a JSON object")
    try:
        GatewayConfig.from_dict({**doc, "epoch": 0})
    except ConfigError as exc:
        raise ConfigError(f"{path}: refused, nothing was imported: {exc}")
    return doc


def import_document(store: ConfigStore, doc: dict[str, Any]) -> tuple[int, list[str]]:
    """Replace the stored document; returns the new epoch and warnings for the operator."""

    def replace_all(current: dict[str, Any]) -> None:
        created = current.get("created")
        current.clear()
        current.update({k: v for k, v in doc.items() if k not in _BOOKKEEPING})
        if created:
            current["created"] = created

    epoch = commit_retrying(store, replace_all)
    warnings: list[str] = []
    for iqn, target in (doc.get("targets") or {}).items():
        if "auth_required" in target:
            continue
        no_chap = [
            c for c, entry in (target.get("clients") or {}).items()
            if not (entry.get("auth") or {}).get("username")
        ]  # fmt: skip
        target_chap = bool((target.get("auth") or {}).get("username"))
        if no_chap and not target_chap:
            warnings.append(
                f"target {iqn}: clients without CHAP ({', '.join(no_chap)}) will be refused "
                '(iscsigw requires CHAP unless the target has "auth_required": false)'
            )
    return epoch, warnings


def export_document(store: ConfigStore) -> str:
    return json.dumps(store.load_dict(), indent=4, sort_keys=True) + "\n"


__all__ = ["export_document", "import_document", "read_document"]
