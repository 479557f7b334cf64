"""The one interface every storage backend implements.

Offsets and lengths are in bytes and always multiples of ``block_size``; the SCSI layer has
checked ranges against ``size`` before calling. Errors are raised as ``iscsigw.errors.BackendError``
subclasses; native library errors are translated inside the backend's own module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .._types import Buffer, FileSlice, Received

__all__ = [
    "BlockBackend",
    "Extent",
    "FileSlice",
    "SupportsImmediateIO",
    "SupportsStartedIO",
    "immediate_io",
    "started_io",
]


@dataclass(frozen=True, slots=True)
class Extent:
    """A run of bytes that is either mapped (holds data) or deallocated (reads as zeros)."""

    offset: int
    length: int
    mapped: bool


def extents_between(mapped: list[tuple[int, int]], offset: int, end: int) -> list[Extent]:
    """[offset, end) as extents: the sorted, disjoint ``(start, stop)`` data runs in ``mapped``
    are mapped, the gaps between them deallocated."""
    out: list[Extent] = []
    pos = offset
    for start, stop in mapped:
        if start > pos:
            out.append(Extent(pos, start - pos, False))
        out.append(Extent(start, stop - start, True))
        pos = stop
    if pos < end:
        out.append(Extent(pos, end - pos, False))
    return out


class BlockBackend(Protocol):
    """A block device image: a file, an RBD image, a RAM buffer."""

    @property
    def block_size(self) -> int:
        """Logical block size in bytes (512 or 4096)."""
        ...

    @property
    def size(self) -> int:
        """Current size in bytes."""
        ...

    @property
    def discard_zeroes(self) -> bool:
        """True when discarded ranges read back as zeros (SCSI LBPRZ)."""
        ...

    async def read(self, offset: int, length: int) -> Buffer:
        """Return exactly ``length`` bytes (holes read as zeros)."""
        ...

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        """Write ``data``; with ``fua`` it is durable before this returns."""
        ...

    async def flush(self) -> None:
        """Make every completed write durable."""
        ...

    async def discard(self, offset: int, length: int) -> None:
        """Deallocate the range (UNMAP); afterwards it reads as zeros if ``discard_zeroes``."""
        ...

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        """Zero the range; with ``unmap`` the backend may deallocate instead of writing."""
        ...

    async def extents(self, offset: int, length: int) -> list[Extent]:
        """Mapped/deallocated runs covering [offset, offset+length), in order."""
        ...

    async def resize(self, size: int) -> None:
        """Grow or shrink the image to ``size`` bytes."""
        ...

    async def close(self) -> None:
        """Release the image; no call follows."""
        ...


class SupportsImmediateIO(Protocol):
    """Optional capability: reads and non-FUA writes that complete without waiting.

    A backend whose I/O lands in memory (the page cache of a local file, a RAM buffer) can do
    it in the caller's thread at once; the SCSI layer's fast path then runs a READ or WRITE
    without a coroutine chain. Same contract and errors as ``read``/``write``.
    """

    def read_now(self, offset: int, length: int) -> Buffer:
        """``read``, done before returning."""
        ...

    def write_now(self, offset: int, data: Received) -> None:
        """``write`` without FUA, done before returning (durable only after ``flush``).
        ``data`` may be ``Segments`` (write data still in its receive buffers)."""
        ...


def immediate_io(backend: object) -> SupportsImmediateIO | None:
    """The backend itself when it can do immediate I/O, else None."""
    if callable(getattr(backend, "read_now", None)) and callable(
        getattr(backend, "write_now", None)
    ):
        return backend  # type: ignore[return-value]
    return None


class SupportsStartedIO(Protocol):
    """Optional capability: reads and writes started at once, completed by a callback.

    For backends whose I/O completes on the event loop later (librbd through its event
    socket): the SCSI layer's fast path starts a READ or WRITE without a coroutine chain and
    finishes the command from ``done``. ``done(result, data)`` gets a negative errno or a
    non-negative result, and the data read. A False return means "not now" (the caller
    uses ``read``/``write``, which report the reason).
    """

    def start_read(self, offset: int, length: int, done: Callable[[int, Buffer], None]) -> bool: ...

    def start_write(self, offset: int, data: Received, done: Callable[[int, Buffer], None]) -> bool:
        """A write that is durable when ``done`` reports success (no FUA needed)."""
        ...


def started_io(backend: object) -> SupportsStartedIO | None:
    """The backend itself when it can start I/O with a completion callback, else None."""
    if callable(getattr(backend, "start_read", None)) and callable(
        getattr(backend, "start_write", None)
    ):
        return backend  # type: ignore[return-value]
    return None


class SupportsCompareAndWrite(Protocol):
    """Optional capability: an atomic COMPARE AND WRITE done by the backend itself.

    Backends that can make the compare and the write one atomic step across every client of
    the storage (librbd's compare-and-write: atomic across gateways) implement this; for the
    others ``compare_and_write()`` below reads, compares and writes, which is atomic only
    against this process's own I/O (the SCSI layer holds the LU write gate for it).
    """

    async def compare_and_write(
        self, offset: int, compare: Buffer, data: Buffer, *, fua: bool = False
    ) -> int:
        """If [offset, offset+len(compare)) equals ``compare``, write ``data`` there and
        return -1; otherwise write nothing and return the index (from 0, relative to
        ``offset``) of the first byte that differs. ``len(compare) == len(data)``."""
        ...


def first_mismatch(a: Buffer, b: Buffer) -> int:
    """Index of the first byte where ``a`` and ``b`` differ, or -1 when they are equal."""
    va = memoryview(a).cast("B")
    vb = memoryview(b).cast("B")
    if va == vb:
        return -1
    n = min(va.nbytes, vb.nbytes)
    lo, hi = 0, n
    while hi - lo > 64:  # binary search on slices: C-speed compares, no per-byte loop
        mid = (lo + hi) // 2
        if va[lo:mid] != vb[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if va[i] != vb[i]:
            return i
    return n


async def compare_and_write(
    backend: BlockBackend, offset: int, compare: Buffer, data: Buffer, *, fua: bool = False
) -> int:
    """COMPARE AND WRITE on any backend: the backend's own when it has one (see
    ``SupportsCompareAndWrite``), else read, compare, write. Returns -1 or the mismatch index."""
    native = getattr(backend, "compare_and_write", None)
    if native is not None:
        result: int = await native(offset, compare, data, fua=fua)
        return result
    current = await backend.read(offset, memoryview(compare).nbytes)
    diff = first_mismatch(current, compare)
    if diff >= 0:
        return diff
    await backend.write(offset, data, fua=fua)
    return -1
