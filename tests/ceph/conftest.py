"""A real throwaway Ceph cluster for the tests in this folder, started once per session.

``scripts/ceph-dev-cluster start`` brings up 1 mon + 1 osd (memstore) + 1 mgr on 127.0.0.1 in a
temporary directory; ``CEPH_CONF`` points at it for the whole session (the backend, the config
store and subprocesses find it there). Without the Ceph binaries or Python bindings the tests
are skipped, except under CI (``CI=true``) where that is a failure: CI installs them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cephharness import CephCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "ceph-dev-cluster"
BINARIES = ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd", "monmaptool", "ceph-authtool")
INSTALL = "apt-get install -y ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd"


def _require_ceph() -> None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    problem = ""
    if missing:
        problem = f"Ceph binaries missing ({', '.join(missing)}); install with: {INSTALL}"
    elif importlib.util.find_spec("rados") is None or importlib.util.find_spec("rbd") is None:
        problem = (
            "Ceph's Python bindings are not importable from this interpreter; run "
            f"`scripts/ceph-dev-cluster link-bindings {Path(sys.prefix)}` (after: {INSTALL})"
        )
    if problem:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(problem + " [CI=true: the Ceph tests must run]", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    _require_ceph()
    directory = tmp_path_factory.mktemp("ceph") / "cluster"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode:
        logs = ""
        for log in sorted((directory / "log").glob("*.log")) if directory.exists() else []:
            logs += f"\n--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-20:])
        pytest.fail(f"ceph-dev-cluster start failed:\n{proc.stderr}{logs}", pytrace=False)
    conf = directory / "ceph.conf"
    old = os.environ.get("CEPH_CONF")
    os.environ["CEPH_CONF"] = str(conf)
    print(f"\n[ceph] dev cluster started in {elapsed:.1f}s ({directory})")
    try:
        yield CephCluster(directory, conf, elapsed)
    finally:
        if old is None:
            os.environ.pop("CEPH_CONF", None)
        else:
            os.environ["CEPH_CONF"] = old
        subprocess.run(
            [sys.executable, str(SCRIPT), "stop", str(directory)],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def image_name() -> str:
    """A fresh image name per test (images are not cleaned up: the cluster is throwaway)."""
    return f"t-{uuid.uuid4().hex[:10]}"
