"""Breaking a gateway's lock fences it end to end.

Gateway A serves an RBD LUN and holds the image's exclusive lock. Another client takes the
image over (``lock_break``: Ceph blocklists A's connection). A write through A by a real
initiator (qemu-img over libiscsi) must then fail with an error, and the image must hold
exactly what it held before: nothing of the fenced gateway's write reaches it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from cephharness import CephCluster, rbd_disks_edit

from integration.harness import Gateway, GatewayFactory, require_tool, run_tool

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
SIZE = 16 * MiB


def qemu_write(gw: Gateway, src: Path, size: int) -> tuple[int, str]:
    res = run_tool(
        [
            "qemu-img",
            "convert",
            "-n",
            "-f",
            "raw",
            "--target-image-opts",
            str(src),
            gw.qemu_opts(size=size),
        ],
        timeout=90,
    )
    return res.returncode, res.output


def test_taken_over_gateway_is_fenced_end_to_end(
    ceph_cluster: CephCluster, gateway_factory: GatewayFactory, image_name: str, tmp_path: Path
) -> None:
    require_tool("qemu-img")
    from iscsigw.backends.rbd import open_rbd

    gw = gateway_factory(name="gwa", configure=rbd_disks_edit((image_name, SIZE)))
    owners = ceph_cluster.run("rbd", "lock", "ls", "--format", "json", f"rbd/{image_name}")
    assert owners.strip() not in ("", "[]", "{}"), "the gateway does not hold the image's lock"

    before = tmp_path / "before.raw"
    before.write_bytes(os.urandom(SIZE))
    rc, out = qemu_write(gw, before, SIZE)
    assert rc == 0, out
    assert ceph_cluster.run_bytes("rbd", "export", "--no-progress", f"rbd/{image_name}", "-") == (
        before.read_bytes()
    )

    async def take_over() -> None:
        other = await open_rbd(pool="rbd", image=image_name, takeover=True)
        await other.close()  # the blocklist entry stays: A remains fenced

    asyncio.run(take_over())
    blocklist = ceph_cluster.run("ceph", "osd", "blocklist", "ls")
    assert blocklist.strip(), "taking the lock over blocklisted nobody"

    after = tmp_path / "after.raw"
    after.write_bytes(os.urandom(SIZE))
    rc, out = qemu_write(gw, after, SIZE)
    print(f"\n[ceph] write through the fenced gateway: qemu-img exit {rc}: {out.strip()[-300:]}")
    assert rc != 0, "a write through the fenced gateway succeeded"
    exported = ceph_cluster.run_bytes("rbd", "export", "--no-progress", f"rbd/{image_name}", "-")
    assert exported == before.read_bytes(), "data of the fenced gateway reached the image"
    gw.assert_alive()
    log = gw.log_text()
    assert "blocklisted" in log or "fenced" in log.lower(), gw.log_tail()
