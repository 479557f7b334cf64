"""Disks: create (sparse file), attach, count, resize, reconfigure, delete, snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apikit import GW, Api, T


async def test_create_makes_a_sparse_file_under_the_pool_folder(api: Api) -> None:
    body = await api.put("/api/disk/rbd/disk_1", mode="create", size="100G", pool="rbd",
                         count="1", create_image="true", owner=GW)  # fmt: skip
    assert body["message"] == "disk create/update successful"
    path = api.data_dir / "rbd" / "disk_1"
    st = os.stat(path)
    assert st.st_size == 100 << 30 and st.st_blocks == 0
    disk = await api.get("/api/disk/rbd/disk_1")
    assert disk["pool"] == "rbd" and disk["image"] == "disk_1" and disk["size"] == 100 << 30
    assert disk["backstore"] == "file" and disk["backstore_object_name"] == "rbd.disk_1"
    assert disk["status"]["state"] == "Online" and disk["snapshots"] == []
    assert len(disk["wwn"]) == 36
    assert (await api.get("/api/disks")) == {"disks": ["rbd/disk_1"]}
    assert "status" not in await api.get("/api/_disk/rbd/disk_1")


async def test_create_errors_write_nothing(api: Api) -> None:
    await api.put("/api/disk/rbd/d", mode="create", size="1G")
    body = await api.put("/api/disk/rbd/d", 400, mode="create", size="1G")
    assert body["message"] == "Disk rbd/d is already defined in the configuration"
    body = await api.put("/api/disk/rbd/e", 400, mode="create")
    assert "Size parameter is required" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="10")
    assert "needs a unit" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="ten gigs")
    assert "not understood" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="1G", create_image="false")
    assert body["message"] == "Image rbd/e does not exist"
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="1G", count="11")
    assert "from 1 to 10" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="1G", wwn="nope")
    assert "not a UUID" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="1G", backstore="iblock")
    assert "backstore 'iblock' is not supported" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="create", size="1G",
                         controls='{"hw_max_sectors": 0}')  # fmt: skip
    assert "between 1 and 8192" in body["message"]
    body = await api.put("/api/disk/bad%20pool/e", 400, mode="create", size="1G")
    assert "may only contain letters" in body["message"]
    body = await api.put("/api/disk/rbd/e", 400, mode="explode")
    assert "Invalid mode" in body["message"]
    assert not (api.data_dir / "rbd" / "e").exists()
    assert list((await api.config())["disks"]) == ["rbd/d"]


async def test_rbd_backstore_needs_a_ceph_cluster(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cluster here (the real one is in tests/ceph): a clear error, nothing configured.
    monkeypatch.setenv("CEPH_CONF", str(tmp_path / "no-such-ceph.conf"))
    body = await api.put("/api/disk/rbd/r", 400, mode="create", size="1G", backstore="user:rbd")
    assert "Ceph" in body["message"], body
    assert "rbd/r" not in (await api.config())["disks"]


async def test_attach_existing_file_and_count(api: Api) -> None:
    (api.data_dir / "pool2").mkdir()
    with open(api.data_dir / "pool2" / "old", "wb") as f:
        f.truncate(8 << 20)
    await api.put("/api/disk/pool2/old", mode="create", backstore="file")
    assert (await api.get("/api/disk/pool2/old"))["size"] == 8 << 20
    wwn = "9889fde8-bf2e-4267-8e1e-ef84ecb91337"
    await api.put("/api/disk/pool2/w", mode="create", size="16M", wwn=wwn.upper())
    assert (await api.get("/api/disk/pool2/w"))["wwn"] == wwn
    await api.put("/api/disk/rbd/many", mode="create", size="1G", count="3")
    assert sorted((await api.get("/api/disks"))["disks"])[2:] == [
        "rbd/many1", "rbd/many2", "rbd/many3"]  # fmt: skip
    full = await api.get("/api/disks", config="yes")
    assert full["disks"]["rbd/many2"]["size"] == 1 << 30


async def test_memory_backstore(api: Api) -> None:
    await api.put("/api/disk/ram/m", mode="create", size="64M", backstore="memory")
    assert (await api.get("/api/disk/ram/m"))["status"]["state"] == "Online"
    assert not (api.data_dir / "ram").exists()


async def test_resize_grows_file_and_refuses_shrink(api: Api) -> None:
    await api.seed(client=False)
    body = await api.put("/api/disk/rbd/disk_1", mode="resize", size="2G", owner=GW)
    assert body["gateways"][GW]["changes"]["resized"] == ["rbd/disk_1"]
    assert os.stat(api.data_dir / "rbd" / "disk_1").st_size == 2 << 30
    body = await api.put("/api/disk/rbd/disk_1", 400, mode="resize", size="1G")
    assert "disks can only grow" in body["message"]
    assert "size is required" in (await api.put("/api/disk/rbd/disk_1", 400, mode="resize"))[
        "message"]  # fmt: skip
    await api.put("/api/disk/rbd/none", 404, mode="resize", size="1G")


async def test_reconfigure(api: Api) -> None:
    await api.seed(client=False)
    body = await api.put("/api/disk/rbd/disk_1", mode="reconfigure",
                         controls='{"max_data_area_mb": "16"}')  # fmt: skip
    assert body["message"] == "lun reconfigured: successful"
    assert (await api.get("/api/disk/rbd/disk_1"))["controls"] == {"max_data_area_mb": 16}
    body = await api.put("/api/disk/rbd/disk_1", 400, mode="reconfigure")
    assert "controls is required" in body["message"]


async def test_delete_refused_while_mapped_then_removes_file(api: Api) -> None:
    await api.seed(client=False)
    body = await api.delete("/api/disk/rbd/disk_1", 400)
    assert f"mapped to target {T}" in body["message"]
    await api.delete(f"/api/targetlun/{T}", disk="rbd/disk_1")
    body = await api.delete("/api/disk/rbd/disk_1", preserve_image="false", purge_host=GW)
    assert body["message"] == "disk map deletion successful"
    assert not (api.data_dir / "rbd" / "disk_1").exists()
    await api.delete("/api/disk/rbd/disk_1", 404)
    await api.put("/api/disk/rbd/keep", mode="create", size="1M")
    await api.delete("/api/disk/rbd/keep", preserve_image="true")
    assert (api.data_dir / "rbd" / "keep").exists()
    assert (await api.get("/api/disks")) == {"disks": []}


async def test_snapshots(api: Api) -> None:
    await api.put("/api/disk/rbd/s", mode="create", size="4M")
    path = api.data_dir / "rbd" / "s"
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"before")
    assert (await api.put("/api/disksnap/rbd/s/snap1", mode="create"))["message"] == (
        "disk snapshot created")  # fmt: skip
    assert (await api.get("/api/disk/rbd/s"))["snapshots"] == ["snap1"]
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"after!")
    await api.put("/api/disksnap/rbd/s/snap1", mode="rollback")
    with open(path, "rb") as f:
        f.seek(1 << 20)
        assert f.read(6) == b"before"
    await api.put("/api/disksnap/rbd/s/snap1", 400, mode="create")
    await api.put("/api/disksnap/rbd/s/snap1", 400, mode="sideways")
    assert "invalid" in (await api.put("/api/disksnap/rbd/s/a@b", 400, mode="create"))["message"]
    await api.put("/api/disksnap/rbd/nope/x", 404, mode="create")
    assert (await api.delete("/api/disksnap/rbd/s/snap1"))["message"] == "disk snapshot deleted"
    await api.delete("/api/disksnap/rbd/s/snap1", 400)


async def test_rollback_refused_while_mapped(api: Api) -> None:
    await api.seed(client=False)
    await api.put("/api/disksnap/rbd/disk_1/s1", mode="create")
    body = await api.put("/api/disksnap/rbd/disk_1/s1", 400, mode="rollback")
    assert "unmap it before rolling it back" in body["message"]
