"""``iscsigw serve`` with RBD disks: data through iSCSI (qemu-img) equals ``rbd export``, and
data put in with ``rbd import`` reads back identically through iSCSI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cephharness import CephCluster

from integration.harness import Gateway, make_gateway, require_tool, run_tool

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
SIZE = 32 * MiB


def rbd_disks(write_image: str, import_image: str) -> Any:
    """Replace the demo disk with two RBD disks: LUN 0 made by the gateway (size given),
    LUN 1 an existing image (size 0: librbd says)."""

    def edit(cfg: dict[str, Any]) -> None:
        (old_key,) = cfg["disks"]
        old = cfg["disks"].pop(old_key)
        disks = {
            f"rbd/{write_image}": {**old, "pool": "rbd", "image": write_image, "size": SIZE},
            f"rbd/{import_image}": {**old, "pool": "rbd", "image": import_image, "size": 0},
        }
        for i, (key, disk) in enumerate(disks.items()):
            disk["backstore"] = "rbd"
            disk["wwn"] = f"{disk['wwn'][:-1]}{i}"
            cfg["disks"][key] = disk
        for target in cfg["targets"].values():
            target["disks"] = {key: {"lun_id": i} for i, key in enumerate(disks)}

    return edit


def test_iscsi_data_matches_rbd_export_and_import(
    ceph_cluster: CephCluster, image_name: str, tmp_path: Path
) -> None:
    require_tool("qemu-img")
    src_in = tmp_path / "imported.raw"
    src_in.write_bytes(os.urandom(8 * MiB) + bytes(SIZE - 8 * MiB))
    ceph_cluster.run(
        "rbd", "import", "--no-progress", str(src_in), f"rbd/{image_name}-r", timeout=120
    )

    gw: Gateway = make_gateway(tmp_path, configure=rbd_disks(f"{image_name}-w", f"{image_name}-r"))
    try:
        # iSCSI -> RBD: qemu-img writes LUN 0, `rbd export` shows the same bytes.
        src = tmp_path / "written.raw"
        payload = os.urandom(12 * MiB + 4096)
        src.write_bytes(payload)
        gw.lun = 0
        run_tool(
            [
                "qemu-img",
                "convert",
                "-n",
                "-f",
                "raw",
                "--target-image-opts",
                str(src),
                gw.qemu_opts(size=len(payload)),
            ],
            check=True,
        )
        exported = ceph_cluster.run_bytes(
            "rbd", "export", "--no-progress", f"rbd/{image_name}-w", "-"
        )
        assert len(exported) == SIZE
        assert exported[: len(payload)] == payload
        assert exported[len(payload) :] == bytes(SIZE - len(payload))

        # RBD -> iSCSI: LUN 1 (an imported image) reads back byte for byte.
        gw.lun = 1
        out = tmp_path / "read.raw"
        run_tool(
            [
                "qemu-img",
                "convert",
                "--image-opts",
                gw.qemu_opts(size=SIZE),
                "-O",
                "raw",
                str(out),
            ],
            check=True,
        )
        assert out.read_bytes() == src_in.read_bytes()
        gw.assert_no_tracebacks()
    finally:
        gw.stop()
