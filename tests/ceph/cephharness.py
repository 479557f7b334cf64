"""Helpers shared by the Ceph tests (importable as ``cephharness``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


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
