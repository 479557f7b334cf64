"""The whole document at once: ``PUT /api/config`` (``gwcli import``) replaces the config.

``check_document`` validates a candidate (gwcli's export, or a ceph-iscsi ``gateway.conf``
version 11) with the same model the store uses, before anything is written, and says which
field is wrong. ``replace_document`` is the mutator: the stored document becomes the candidate,
except for what belongs to the running installation rather than to the configuration:

* the store's bookkeeping (``epoch`` keeps growing so every gateway applies the import like any
  other change; ``created`` stays the store's; importing the current document writes nothing);
* the gateway registry's live fields: a gateway that is registered now keeps its
  ``api_endpoint`` and ``portal_endpoints`` (where it really listens) even when the imported
  file came from elsewhere or is older; a gateway the import drops from ``gateways`` but that
  is still registered keeps its entry, so peers can keep finding each other.
"""

from __future__ import annotations

import copy
from typing import Any

from ...errors import ConfigError
from ..model import GatewayConfig
from ._doc import Doc

BOOKKEEPING = ("epoch", "created", "updated")
LIVE_GATEWAY_FIELDS = ("api_endpoint", "portal_endpoints")


def check_document(candidate: Any) -> Doc:
    """A copy of ``candidate`` if it is a valid configuration, else ConfigError (why)."""
    if not isinstance(candidate, dict):
        raise ConfigError("the configuration must be a JSON object (what gwcli export prints)")
    doc = copy.deepcopy(candidate)
    for key in BOOKKEEPING:
        doc.pop(key, None)
    try:
        GatewayConfig.from_dict({**doc, "epoch": 0})
    except ConfigError as exc:
        raise ConfigError(f"configuration refused, nothing was changed: {exc}")
    return doc


def replace_document(current: Doc, candidate: Doc) -> None:
    """Mutator: make ``current`` the (already checked) ``candidate``; see the module doc."""
    kept = {k: current[k] for k in BOOKKEEPING if k in current}
    registry = {
        name: entry
        for name, entry in (current.get("gateways") or {}).items()
        if isinstance(entry, dict) and any(entry.get(f) for f in LIVE_GATEWAY_FIELDS)
    }
    new = copy.deepcopy(candidate)
    for key in BOOKKEEPING:
        new.pop(key, None)
    gws = new.setdefault("gateways", {})
    if not isinstance(gws, dict):
        raise ConfigError("'gateways' must be a JSON object")
    for name, live in registry.items():
        entry = gws.get(name)
        if not isinstance(entry, dict):
            gws[name] = copy.deepcopy(live)
            continue
        for field in LIVE_GATEWAY_FIELDS:
            if live.get(field):
                entry[field] = copy.deepcopy(live[field])
    current.clear()
    current.update(new)
    current.update(kept)  # the store moves epoch and updated on when something changed


__all__ = ["check_document", "replace_document"]
