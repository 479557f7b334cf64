"""What every configuration store offers, and the retry loop writers use.

A store keeps one ``gateway.conf`` document shared by all gateways (``FileConfigStore`` on a
local or shared filesystem; a RADOS object once Ceph lands). Writers never edit a copy they
read earlier: they hand the store a *mutator*, a function that edits the latest document in
place and raises ``ConfigError`` when the change does not fit it. ``commit_retrying`` reads the
current epoch, commits with ``expect_epoch`` and, when another writer won the race, runs the
mutator again on the new document. After ``attempts`` lost races it gives up with
``StoreBusy``; nothing is half-written either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import StoreBusy
from .file_store import EpochConflict
from .model import GatewayConfig

log = logging.getLogger("iscsigw.store")

Mutator = Callable[[dict[str, Any]], None]
COMMIT_ATTEMPTS = 8


class ConfigStore(Protocol):
    """The interface ``FileConfigStore`` and the RADOS store implement."""

    def load(self) -> tuple[GatewayConfig, int]: ...

    def load_dict(self) -> dict[str, Any]: ...

    def commit(self, mutator: Mutator, expect_epoch: int | None = None) -> int: ...


def change_token(store: ConfigStore) -> object:
    """A value that changes when the document does; cheap where the store supports it."""
    for name in ("change_token", "read_epoch"):
        probe = getattr(store, name, None)
        if callable(probe):
            return probe()
    return store.load()[1]


def current_epoch(store: ConfigStore) -> int:
    epoch = store.load_dict().get("epoch", 0)
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0


def commit_retrying(
    store: ConfigStore, mutator: Mutator, *, attempts: int = COMMIT_ATTEMPTS
) -> int:
    """Commit ``mutator`` epoch-checked; rerun it on the newer document after a lost race."""
    last: EpochConflict | None = None
    for attempt in range(1, attempts + 1):
        epoch = current_epoch(store)
        try:
            return store.commit(mutator, expect_epoch=epoch)
        except EpochConflict as exc:
            last = exc
            log.info("lost a commit race at epoch %d (attempt %d), retrying", epoch, attempt)
    raise StoreBusy(
        f"the configuration kept changing while this change was being written ({last}); "
        f"nothing was written after {attempts} attempts, try again"
    )


__all__ = ["ConfigStore", "Mutator", "change_token", "commit_retrying", "current_epoch"]
