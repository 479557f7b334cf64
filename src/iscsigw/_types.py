"""Type aliases shared by every layer (Python 3.11 has no collections.abc.Buffer)."""

from __future__ import annotations

import os
from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview


class FileSlice:
    """Read data that is still in a file: the transport may send it with sendfile(2).

    Returned instead of bytes by backends that can (``read_slice``), so large reads go from
    the page cache to the socket without passing through Python. ``materialize`` reads it
    for the cases that need the bytes (data digests).
    """

    __slots__ = ("fd", "length", "offset")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def slice(self, start: int, length: int) -> FileSlice:
        return FileSlice(self.fd, self.offset + start, length)

    def materialize(self) -> bytes:
        data = os.pread(self.fd, self.length, self.offset)
        if len(data) < self.length:  # file shorter than the device: the rest reads as zeros
            data += bytes(self.length - len(data))
        return data

    def __repr__(self) -> str:
        return f"<FileSlice fd={self.fd} offset={self.offset} length={self.length}>"


# What a Data-In PDU can carry: bytes in memory, or a range of a file for sendfile(2).
Payload: TypeAlias = Buffer | FileSlice


class Segments:
    """One logical buffer that arrived in pieces: views of receive buffers, in order.

    Data-Out spread over several PDUs (or one PDU split across two receives) stays where the
    socket put it; a file backend writes the pieces with one pwritev(2), anything that needs
    contiguous bytes calls ``tobytes`` (one copy, no zero-fill).
    """

    __slots__ = ("nbytes", "parts")

    def __init__(self, parts: list[Buffer]) -> None:
        self.parts = parts
        self.nbytes = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in parts)

    def __len__(self) -> int:
        return self.nbytes

    def tobytes(self) -> bytes:
        return b"".join(self.parts)

    __bytes__ = tobytes

    def __repr__(self) -> str:
        return f"<Segments parts={len(self.parts)} nbytes={self.nbytes}>"


# Data received from an initiator: contiguous, or in pieces.
Received: TypeAlias = Buffer | Segments


def contiguous(data: Received) -> Buffer:
    """``data`` as one buffer (joins Segments)."""
    return data.tobytes() if isinstance(data, Segments) else data
