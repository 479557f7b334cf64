"""The registry, and the BlockBackend contract every registered backend must keep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iscsigw.backends import registry
from iscsigw.backends.base import BlockBackend
from iscsigw.backends.file import FileBackend
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import ConfigError

SIZE = 1 << 20


async def test_known_names() -> None:
    assert {"file", "memory"} <= set(registry.names())


async def test_unknown_backend_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown backend 'nope'.*file.*memory"):
        await registry.open_backend("nope")


async def test_register_adds_a_factory() -> None:
    registry.register("ram2", "iscsigw.backends.memory:open_memory")
    try:
        be = await registry.open_backend("ram2", size=4096)
        assert isinstance(be, MemoryBackend)
    finally:
        registry._FACTORIES.pop("ram2")


@pytest.fixture(params=["memory", "file"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlockBackend]:
    be = await registry.open_backend(
        request.param, path=str(tmp_path / "d" / "img"), size=SIZE, create=True
    )
    assert isinstance(be, FileBackend if request.param == "file" else MemoryBackend)
    yield be
    await be.close()


async def test_contract_fresh_device_reads_zero(backend: BlockBackend) -> None:
    assert backend.size == SIZE and backend.block_size == 512
    assert bytes(await backend.read(0, SIZE)) == bytes(SIZE)


async def test_contract_write_read_flush(backend: BlockBackend) -> None:
    await backend.write(1024, b"\x42" * 2048, fua=True)
    await backend.write(8192, bytearray(b"\x43" * 512))
    await backend.flush()
    assert bytes(await backend.read(1024, 2048)) == b"\x42" * 2048
    assert bytes(await backend.read(8192, 512)) == b"\x43" * 512


async def test_contract_discard_and_write_zeroes(backend: BlockBackend) -> None:
    await backend.write(0, b"\x01" * 65536)
    await backend.discard(4096, 4096)
    await backend.write_zeroes(16384, 4096)
    await backend.write_zeroes(32768, 4096, unmap=True)
    data = bytes(await backend.read(0, 65536))
    assert backend.discard_zeroes
    for start in (4096, 16384, 32768):
        assert data[start : start + 4096] == bytes(4096)
    assert data.count(0) == 3 * 4096


async def test_contract_extents_cover_range(backend: BlockBackend) -> None:
    await backend.write(65536, b"\x09" * 4096)
    ext = await backend.extents(0, SIZE)
    pos = 0
    for e in ext:
        assert e.offset == pos
        pos += e.length
    assert pos == SIZE
    assert any(e.mapped and e.offset <= 65536 < e.offset + e.length for e in ext)
    assert not any(e.mapped and e.offset + e.length <= 65536 - 4096 for e in ext)


async def test_contract_resize(backend: BlockBackend) -> None:
    await backend.resize(2 * SIZE)
    assert backend.size == 2 * SIZE
    await backend.write(2 * SIZE - 512, b"z" * 512)
    assert bytes(await backend.read(2 * SIZE - 512, 512)) == b"z" * 512
