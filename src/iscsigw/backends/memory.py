"""A RAM-backed device for unit tests and demos. Nothing survives the process."""

from __future__ import annotations

from .._types import Buffer, Received, contiguous
from .base import Extent


class MemoryBackend:
    """A ``BlockBackend`` over a bytearray. Discarded ranges read as zeros."""

    def __init__(self, size: int, block_size: int = 512) -> None:
        self._block_size = block_size
        self._buf = bytearray(size)
        # Byte ranges ever written with non-zero data are not tracked; extents() reports
        # all-zero blocks as deallocated, which is what a thin device would say.

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def size(self) -> int:
        return len(self._buf)

    @property
    def discard_zeroes(self) -> bool:
        return True

    async def read(self, offset: int, length: int) -> Buffer:
        return self.read_now(offset, length)

    def read_now(self, offset: int, length: int) -> Buffer:
        return bytes(self._buf[offset : offset + length])

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        self.write_now(offset, data)

    def write_now(self, offset: int, data: Received) -> None:
        view = memoryview(contiguous(data)).cast("B")
        self._buf[offset : offset + view.nbytes] = view

    async def flush(self) -> None:
        return None

    async def discard(self, offset: int, length: int) -> None:
        self._buf[offset : offset + length] = bytes(length)

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        self._buf[offset : offset + length] = bytes(length)

    async def extents(self, offset: int, length: int) -> list[Extent]:
        out: list[Extent] = []
        bs = self._block_size
        zero = bytes(bs)
        end = offset + length
        pos = offset
        while pos < end:
            mapped = self._buf[pos : pos + bs] != zero
            if out and out[-1].mapped == mapped:
                last = out[-1]
                out[-1] = Extent(last.offset, last.length + bs, mapped)
            else:
                out.append(Extent(pos, bs, mapped))
            pos += bs
        return out

    async def resize(self, size: int) -> None:
        if size >= len(self._buf):
            self._buf.extend(bytes(size - len(self._buf)))
        else:
            del self._buf[size:]

    async def close(self) -> None:
        self._buf = bytearray()


async def open_memory(*, size: int, block_size: int = 512, **_: object) -> MemoryBackend:
    """Registry factory for the ``memory`` backend."""
    return MemoryBackend(size, block_size)
