"""``iscsigw serve`` with RBD disks: data through iSCSI (qemu-img) equals ``rbd export``, data
put in with ``rbd import`` reads back identically through iSCSI, and an ext4 round-trips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cephharness import CephCluster, rbd_disks_edit

from integration.harness import Gateway, make_gateway, require_tool, run_tool

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
SIZE = 32 * MiB


def test_iscsi_data_matches_rbd_export_and_import(
    ceph_cluster: CephCluster, image_name: str, tmp_path: Path
) -> None:
    require_tool("qemu-img")
    src_in = tmp_path / "imported.raw"
    src_in.write_bytes(os.urandom(8 * MiB) + bytes(SIZE - 8 * MiB))
    ceph_cluster.run(
        "rbd", "import", "--no-progress", str(src_in), f"rbd/{image_name}-r", timeout=120
    )

    gw: Gateway = make_gateway(
        tmp_path, configure=rbd_disks_edit((f"{image_name}-w", SIZE), (f"{image_name}-r", 0))
    )
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


def test_ext4_round_trips_through_an_rbd_lun(
    ceph_cluster: CephCluster, image_name: str, tmp_path: Path
) -> None:
    """An ext4 made in a file, copied onto an RBD LUN with qemu-img and back, passes
    ``e2fsck -fn`` and is byte-identical (also in ``rbd export``)."""
    require_tool("qemu-img")
    require_tool("mkfs.ext4")
    require_tool("e2fsck")
    size = 64 * MiB
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(20):
        (tree / "sub" / f"f{i}").write_bytes(os.urandom(100_000 + i * 4096))
    (tree / "hello.txt").write_text("hello from iscsigw on rbd\n")
    fs = tmp_path / "fs.img"
    run_tool(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(fs), "64M"], check=True)
    assert fs.stat().st_size == size

    gw: Gateway = make_gateway(tmp_path, configure=rbd_disks_edit((image_name, size)))
    try:
        run_tool(
            ["qemu-img", "convert", "-n", "-f", "raw", "--target-image-opts", str(fs),
             gw.qemu_opts(size=size)],
            check=True,
        )  # fmt: skip
        back = tmp_path / "back.img"
        run_tool(
            ["qemu-img", "convert", "--image-opts", gw.qemu_opts(size=size), "-O", "raw",
             str(back)],
            check=True,
        )  # fmt: skip
        gw.assert_no_tracebacks()
    finally:
        gw.stop()
    fsck = run_tool(["e2fsck", "-fn", str(back)])
    print(f"\n[ceph] e2fsck -fn of the ext4 read back from the RBD LUN: exit {fsck.returncode}")
    assert fsck.returncode == 0, fsck.describe()
    assert back.read_bytes() == fs.read_bytes()
    exported = ceph_cluster.run_bytes("rbd", "export", "--no-progress", f"rbd/{image_name}", "-")
    assert exported == fs.read_bytes()
