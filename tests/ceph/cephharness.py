"""Helpers shared by the Ceph tests (importable as ``cephharness``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CephCluster:
    dir: Path
    conf: Path
    start_seconds: float

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """Run a Ceph CLI tool (``rbd``, ``ceph``, ``rados``) against this cluster."""
        proc = subprocess.run(
            [args[0], "-c", str(self.conf), *args[1:]],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
            )
        return proc.stdout.decode()

    def run_bytes(self, *args: str, timeout: float = 120) -> bytes:
        proc = subprocess.run(
            [args[0], "-c", str(self.conf), *args[1:]],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        return proc.stdout


def rbd_disks_edit(*images: tuple[str, int], pool: str = "rbd") -> Callable[[dict[str, Any]], None]:
    """A gateway.conf edit (for ``make_gateway(configure=...)``): replace the demo's file disk
    with RBD disks ``pool/image`` at LUN 0, 1, ... (size > 0: the gateway creates or grows the
    image; 0: it must exist and librbd gives the size)."""

    def edit(cfg: dict[str, Any]) -> None:
        (old_key,) = cfg["disks"]
        old = cfg["disks"].pop(old_key)
        keys = []
        for i, (image, size) in enumerate(images):
            key = f"{pool}/{image}"
            cfg["disks"][key] = {
                **old,
                "pool": pool,
                "image": image,
                "size": size,
                "backstore": "rbd",
                "wwn": f"{old['wwn'][:-1]}{i}",
            }
            keys.append(key)
        for target in cfg["targets"].values():
            target["disks"] = {key: {"lun_id": i} for i, key in enumerate(keys)}

    return edit
