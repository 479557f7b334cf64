"""The one interface every storage backend implements.

Offsets and lengths are in bytes and always multiples of ``block_size``; the SCSI layer has
checked ranges against ``size`` before calling. Errors are raised as ``iscsigw.errors.BackendError``
subclasses; native library errors are translated inside the backend's own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .._types import Buffer


@dataclass(frozen=True, slots=True)
class Extent:
    """A run of bytes that is either mapped (holds data) or deallocated (reads as zeros)."""

    offset: int
    length: int
    mapped: bool


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
