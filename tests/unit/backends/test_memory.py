"""MemoryBackend: the RAM device used by unit tests and demos."""

from __future__ import annotations

from iscsigw.backends.base import Extent
from iscsigw.backends.memory import MemoryBackend, open_memory


async def test_factory_and_properties() -> None:
    be = await open_memory(size=8192, block_size=4096, ignored="x")
    assert isinstance(be, MemoryBackend)
    assert (be.size, be.block_size, be.discard_zeroes) == (8192, 4096, True)


async def test_roundtrip_discard_and_extents() -> None:
    be = MemoryBackend(16 * 512)
    await be.write(512, memoryview(bytearray(b"\x11" * 1024)))
    assert bytes(await be.read(0, 2048)) == bytes(512) + b"\x11" * 1024 + bytes(512)
    assert await be.extents(0, 16 * 512) == [
        Extent(0, 512, False),
        Extent(512, 1024, True),
        Extent(1536, 16 * 512 - 1536, False),
    ]
    await be.discard(512, 512)
    assert bytes(await be.read(512, 512)) == bytes(512)
    await be.write_zeroes(1024, 512, unmap=False)
    assert await be.extents(0, 16 * 512) == [Extent(0, 16 * 512, False)]


async def test_resize_keeps_data() -> None:
    be = MemoryBackend(1024)
    await be.write(0, b"a" * 1024)
    await be.resize(2048)
    assert bytes(await be.read(0, 2048)) == b"a" * 1024 + bytes(1024)
    await be.resize(512)
    assert be.size == 512 and bytes(await be.read(0, 512)) == b"a" * 512
    await be.flush()
    await be.close()
    assert be.size == 0
