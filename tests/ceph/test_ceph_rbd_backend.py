"""The rbd backend against a real cluster: data round trips, errors, exclusive lock, fencing."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cephharness import CephCluster

from iscsigw.backends.base import compare_and_write
from iscsigw.backends.registry import open_backend
from iscsigw.errors import BackendFenced, BackendNotFound, ConfigError

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


@pytest.fixture
async def admin(ceph_cluster: CephCluster) -> AsyncIterator[Any]:
    from iscsigw.backends.rbd import RbdAdmin

    adm = RbdAdmin()
    yield adm
    await adm.close()


@pytest.fixture
async def backend(admin: Any, image_name: str) -> AsyncIterator[Any]:
    await admin.create_image("rbd", image_name, 64 * MiB)
    b = await open_backend("rbd", pool="rbd", image=image_name)
    yield b
    await b.close()


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256)


async def test_open_reports_image_size_and_holds_the_lock(backend: Any, admin: Any) -> None:
    assert backend.size == 64 * MiB
    assert backend.block_size == 512
    assert backend.discard_zeroes
    assert await backend.is_lock_owner()
    assert await admin.lock_owners("rbd", backend.name) == await backend.lock_owners()


async def test_write_read_round_trip(backend: Any, ceph_cluster: CephCluster) -> None:
    data = pattern(MiB, 1)
    await backend.write(3 * MiB + 512, data)
    await backend.write(10 * MiB, pattern(4096, 2), fua=True)
    await backend.flush()
    assert await backend.read(3 * MiB + 512, MiB) == data
    assert await backend.read(0, 4096) == bytes(4096)  # never written: zeros
    # Many requests in flight at once (aio, no thread per request).
    blocks = [pattern(4096, i) for i in range(64)]
    await asyncio.gather(*(backend.write(20 * MiB + i * 4096, b) for i, b in enumerate(blocks)))
    got = await asyncio.gather(*(backend.read(20 * MiB + i * 4096, 4096) for i in range(64)))
    assert got == blocks
    # What librbd says is what another client (the rbd CLI) sees.
    exported = ceph_cluster.run_bytes("rbd", "export", f"rbd/{backend.name}", "-")
    assert exported[3 * MiB + 512 : 4 * MiB + 512] == data
    assert exported[20 * MiB : 20 * MiB + 64 * 4096] == b"".join(blocks)


async def test_discard_and_write_zeroes_read_back_as_zeros(backend: Any) -> None:
    await backend.write(0, b"\xaa" * 16384)
    await backend.discard(512, 512)  # partial object: must still read as zeros (LBPRZ)
    await backend.write_zeroes(2048, 1024)
    await backend.write_zeroes(8192, 4096, unmap=True)
    data = await backend.read(0, 16384)
    assert data[:512] == b"\xaa" * 512
    assert data[512:1024] == bytes(512)
    assert data[1024:2048] == b"\xaa" * 1024
    assert data[2048:3072] == bytes(1024)
    assert data[3072:8192] == b"\xaa" * 5120
    assert data[8192:12288] == bytes(4096)
    assert data[12288:] == b"\xaa" * 4096


async def test_compare_and_write_native(backend: Any) -> None:
    assert backend.native_compare_and_write
    await backend.write(4 * MiB, b"a" * 512)
    assert await compare_and_write(backend, 4 * MiB, b"a" * 512, b"b" * 512) == -1
    assert await backend.read(4 * MiB, 512) == b"b" * 512
    wrong = bytearray(b"b" * 512)
    wrong[300] = 0
    assert await compare_and_write(backend, 4 * MiB, bytes(wrong), b"c" * 512) == 300
    assert await backend.read(4 * MiB, 512) == b"b" * 512  # nothing written
    # Offsets inside objects other than the first: the mismatch index stays request-relative.
    at = 9 * MiB + 1536
    assert await compare_and_write(backend, at, bytes(7) + b"x" + bytes(504), b"d" * 512) == 7


async def test_compare_and_write_larger_than_a_sector(admin: Any, image_name: str) -> None:
    await admin.create_image("rbd", image_name, 16 * MiB)
    b = await open_backend("rbd", pool="rbd", image=image_name, block_size=4096)
    try:
        old, new = pattern(8192, 3), pattern(8192, 4)
        await b.write(8192, old)
        assert await compare_and_write(b, 8192, old, new) == -1
        assert await b.read(8192, 8192) == new
        assert await compare_and_write(b, 8192, old, old) == 0
        assert await b.read(8192, 8192) == new
    finally:
        await b.close()


async def test_extents_report_written_ranges(backend: Any) -> None:
    await backend.write(8 * MiB, b"x" * 4096)
    ext = await backend.extents(0, 16 * MiB)
    assert ext[0].offset == 0 and ext[-1].offset + ext[-1].length == 16 * MiB
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(ext))
    mapped = [e for e in ext if e.mapped]
    assert any(e.offset <= 8 * MiB and 8 * MiB + 4096 <= e.offset + e.length for e in mapped)
    assert not any(e.offset + e.length <= 4 * MiB for e in mapped)  # first object never written
    assert await backend.extents(32 * MiB, 4 * MiB) == [type(ext[0])(32 * MiB, 4 * MiB, False)]


async def test_resize_grows_the_image(backend: Any, admin: Any) -> None:
    await backend.resize(96 * MiB)
    assert backend.size == 96 * MiB
    await backend.write(95 * MiB, b"e" * 512)
    assert (await admin.image_info("rbd", backend.name)).size == 96 * MiB
    await admin.resize_image("rbd", backend.name, 128 * MiB)
    assert await backend.refresh_size() == 128 * MiB
    with pytest.raises(ConfigError, match="shrinking"):
        await admin.resize_image("rbd", backend.name, 32 * MiB)


async def test_missing_image_and_pool(ceph_cluster: CephCluster) -> None:
    with pytest.raises(BackendNotFound):
        await open_backend("rbd", pool="rbd", image="no-such-image")
    with pytest.raises(BackendNotFound):
        await open_backend("rbd", pool="no-such-pool", image="x")


async def test_create_on_open_and_data_pool(
    ceph_cluster: CephCluster, admin: Any, image_name: str
) -> None:
    b = await open_backend("rbd", pool="rbd", image=image_name, size=8 * MiB, create=True)
    await b.close()
    info = await admin.image_info("rbd", image_name)
    assert info.size == 8 * MiB and "exclusive-lock" in info.features
    # A separate data pool (here replicated; an EC pool with allow_ec_overwrites works alike).
    ceph_cluster.run("ceph", "osd", "pool", "create", "rbd-data", "8", "8", check=False)
    ceph_cluster.run("rbd", "pool", "init", "rbd-data")
    await admin.create_image("rbd", image_name + "-dp", 8 * MiB, data_pool="rbd-data")
    info = await admin.image_info("rbd", image_name + "-dp")
    assert info.data_pool == "rbd-data" and "data-pool" in info.features
    b = await open_backend("rbd", pool="rbd", image=image_name + "-dp")
    await b.write(0, b"d" * 4096)
    await b.close()
    objs = ceph_cluster.run("rados", "-p", "rbd-data", "ls")
    assert "rbd_data." in objs


async def test_snapshots_and_delete(admin: Any, image_name: str) -> None:
    await admin.create_image("rbd", image_name, 8 * MiB)
    b = await open_backend("rbd", pool="rbd", image=image_name)
    await b.write(0, b"1" * 512)
    await admin.create_snapshot("rbd", image_name, "s1")
    await b.write(0, b"2" * 512)
    with pytest.raises(ConfigError, match="in use"):
        await admin.delete_image("rbd", image_name)
    await b.close()
    await admin.rollback_snapshot("rbd", image_name, "s1")
    assert [s["name"] for s in await admin.list_snapshots("rbd", image_name)] == ["s1"]
    b = await open_backend("rbd", pool="rbd", image=image_name)
    assert await b.read(0, 512) == b"1" * 512
    await b.close()
    with pytest.raises(ConfigError, match="snapshots"):
        await admin.delete_image("rbd", image_name)
    await admin.delete_snapshot("rbd", image_name, "s1")
    await admin.delete_image("rbd", image_name)
    assert image_name not in await admin.list_images("rbd")


async def test_second_exclusive_open_is_refused(backend: Any) -> None:
    with pytest.raises(BackendFenced, match="holds the exclusive lock"):
        await open_backend("rbd", pool="rbd", image=backend.name)
    # A passive opener (no lock) may read, but its writes are refused, not silently lost.
    passive = await open_backend("rbd", pool="rbd", image=backend.name, exclusive=False)
    try:
        await passive.read(0, 512)
        with pytest.raises(BackendFenced):
            await passive.write(0, b"p" * 512)
    finally:
        await passive.close()


async def test_takeover_fences_the_old_owner(backend: Any, ceph_cluster: CephCluster) -> None:
    old_owner = await backend.lock_owners()
    await backend.write(0, b"A" * 4096)
    # Requests in flight when the lock is broken must fail, not complete silently.
    b2 = await open_backend("rbd", pool="rbd", image=backend.name, takeover=True)
    try:
        assert await b2.is_lock_owner()
        assert old_owner[0] in ceph_cluster.run("ceph", "osd", "blocklist", "ls")
        results = await asyncio.gather(
            *(backend.write(i * 4096, b"F" * 4096) for i in range(8)), return_exceptions=True
        )
        assert all(isinstance(r, BackendFenced) for r in results), results
        with pytest.raises(BackendFenced):
            await backend.write(0, b"F" * 512, fua=True)
        with pytest.raises(BackendFenced):
            await compare_and_write(backend, 0, b"A" * 512, b"F" * 512)
        with pytest.raises(BackendFenced):
            await backend.discard(0, 4096)
        assert backend.fenced
        # Nothing of the fenced gateway reached the image.
        assert await b2.read(0, 4096) == b"A" * 4096
        assert await b2.read(4096, 7 * 4096) == bytes(7 * 4096)
        await b2.write(0, b"B" * 512)
    finally:
        await b2.close()
    # The fenced gateway comes back with a new connection once the new owner let go.
    await backend.reconnect()
    assert await backend.read(0, 512) == b"B" * 512
    await backend.write(0, b"C" * 512)
    assert await backend.read(0, 512) == b"C" * 512


def test_conf_from_environment(ceph_cluster: CephCluster) -> None:
    from iscsigw.backends.rbd import CephSettings

    assert CephSettings().conf_path == os.environ["CEPH_CONF"] == str(ceph_cluster.conf)
