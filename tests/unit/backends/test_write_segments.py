"""``write_now`` with ``Segments`` (write data still in the receive buffers it arrived in).

The file backend writes the pieces with one pwritev(2) when it can, and falls back to joined
bytes and a pwrite loop for more than IOV_MAX pieces or a short write; the memory backend
joins. Either way the right bytes land at the right offset and nothing around them changes.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from iscsigw._types import Buffer, Segments
from iscsigw.backends import file as file_mod
from iscsigw.backends.base import Extent
from iscsigw.backends.file import FileBackend, open_file
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import BackendError, BackendNoSpace

MiB = 1 << 20
SIZE = 8 * MiB


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 13 + seed + (i >> 9)) & 0xFF for i in range(n))


def pieces(data: bytes, sizes: Sequence[int]) -> Segments:
    """``data`` as Segments cut into ``sizes``, the parts of every buffer type a view of a
    receive buffer can be (memoryviews mostly, also bytes and bytearray)."""
    assert sum(sizes) == len(data)
    parts: list[Buffer] = []
    pos = 0
    for i, n in enumerate(sizes):
        raw = data[pos : pos + n]
        pos += n
        if i % 7 == 3:
            parts.append(raw)
        elif i % 7 == 5:
            parts.append(bytearray(raw))
        else:
            buf = bytearray(b"\xee" * 3 + raw + b"\xee" * 5)  # a view inside a bigger buffer
            parts.append(memoryview(buf)[3 : 3 + n])
    seg = Segments(parts)
    assert seg.nbytes == len(seg) == len(data) and seg.tobytes() == data
    return seg


def random_sizes(total: int, count: int, seed: int) -> list[int]:
    """``count`` piece sizes (at least 1 byte each) summing to ``total``."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, total), count - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


CASES = {
    "two": (1000, [1, 999]),
    "many_small": (64 * 1024, random_sizes(64 * 1024, 100, 1)),
    "iov_max": (4096 * 8, random_sizes(4096 * 8, 1024, 2)),
    "iov_max_plus_one": (4096 * 8, random_sizes(4096 * 8, 1025, 3)),
    "thousands": (256 * 1024, random_sizes(256 * 1024, 5000, 4)),
    "one_byte_each": (3000, [1] * 3000),
    "single": (4096, [4096]),
}


async def new_file(tmp_path: Path) -> FileBackend:
    return await open_file(path=str(tmp_path / "img"), size=SIZE, create=True)


# ---------------------------------------------------------------------------- file backend


@pytest.mark.parametrize("offset", [0, 512 * 3, 1 << 20, 12345])
@pytest.mark.parametrize("case", sorted(CASES))
async def test_file_write_now_segments(tmp_path: Path, case: str, offset: int) -> None:
    total, sizes = CASES[case]
    data = pattern(total, len(sizes))
    be = await new_file(tmp_path)
    try:
        be.write_now(0, b"\x55" * (2 * MiB + 300 * 1024))  # something to overwrite around it
        before = bytes(be.read_now(0, SIZE))
        be.write_now(offset, pieces(data, sizes))
        after = bytes(be.read_now(0, SIZE))
        assert after[offset : offset + total] == data
        assert after[:offset] == before[:offset]
        assert after[offset + total :] == before[offset + total :]
        with open(be.path, "rb") as f:  # on the file itself, not a cache of ours
            f.seek(offset)
            assert f.read(total) == data
    finally:
        await be.close()


async def test_file_write_now_segments_at_the_end_of_the_device(tmp_path: Path) -> None:
    data = pattern(8192, 5)
    be = await new_file(tmp_path)
    try:
        be.write_now(SIZE - 8192, pieces(data, random_sizes(8192, 1500, 5)))
        assert bytes(be.read_now(SIZE - 8192, 8192)) == data
        with pytest.raises(BackendError, match="outside"):
            be.write_now(SIZE - 8192 + 1, pieces(data, [4096, 4096]))
    finally:
        await be.close()


async def test_file_write_now_uses_one_pwritev_up_to_iov_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real: Callable[..., int] = os.pwritev

    def spy(fd: int, buffers: Sequence[Buffer], offset: int, *flags: int) -> int:
        calls.append(len(buffers))
        return real(fd, buffers, offset, *flags)

    def no_pwrite(*_: object) -> int:
        raise AssertionError("pwrite used although pwritev wrote everything")

    be = await new_file(tmp_path)
    try:
        monkeypatch.setattr(os, "pwritev", spy)
        monkeypatch.setattr(os, "pwrite", no_pwrite)
        data = pattern(1024 * 16, 6)
        be.write_now(4096, pieces(data, [16] * 1024))
        assert calls == [file_mod._IOV_MAX] == [1024]
        monkeypatch.undo()
        assert bytes(be.read_now(4096, len(data))) == data
    finally:
        monkeypatch.undo()
        await be.close()


async def test_file_write_now_more_than_iov_max_finishes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real: Callable[..., int] = os.pwritev

    def spy(fd: int, buffers: Sequence[Buffer], offset: int, *flags: int) -> int:
        calls.append(len(buffers))
        return real(fd, buffers, offset, *flags)

    be = await new_file(tmp_path)
    try:
        monkeypatch.setattr(os, "pwritev", spy)
        data = pattern(3000 * 7, 7)
        be.write_now(512, pieces(data, [7] * 3000))
        assert calls == [1024]  # the first IOV_MAX pieces; the rest by pwrite
        monkeypatch.undo()
        assert bytes(be.read_now(0, 512 + len(data) + 512)) == bytes(512) + data + bytes(512)
    finally:
        monkeypatch.undo()
        await be.close()


@pytest.mark.parametrize("short_by", [1, 1000, 4095])
async def test_file_write_now_short_pwritev_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_by: int
) -> None:
    real: Callable[..., int] = os.pwritev
    real_pwrite: Callable[..., int] = os.pwrite

    def short(fd: int, buffers: Sequence[Buffer], offset: int, *flags: int) -> int:
        joined = b"".join(buffers)
        return real(fd, [joined[: len(joined) - short_by]], offset, *flags)

    def tiny_pwrite(fd: int, data: Buffer, offset: int) -> int:
        return real_pwrite(fd, memoryview(data)[:333], offset)  # short writes here too

    be = await new_file(tmp_path)
    try:
        monkeypatch.setattr(os, "pwritev", short)
        monkeypatch.setattr(os, "pwrite", tiny_pwrite)
        data = pattern(4096 * 3, 8)
        be.write_now(8192, pieces(data, random_sizes(len(data), 50, 8)))
        monkeypatch.undo()
        assert bytes(be.read_now(8192, len(data))) == data
    finally:
        monkeypatch.undo()
        await be.close()


async def test_file_write_now_segments_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    be = await new_file(tmp_path)
    try:
        monkeypatch.setattr(os, "pwritev", full)
        with pytest.raises(BackendNoSpace, match="writing"):
            be.write_now(0, pieces(pattern(1024), [512, 512]))
    finally:
        monkeypatch.undo()
        await be.close()


async def test_file_write_now_empty_segments(tmp_path: Path) -> None:
    be = await new_file(tmp_path)
    try:
        be.write_now(512, Segments([]))
        be.write_now(512, Segments([b"", memoryview(b"")]))
        assert bytes(be.read_now(0, 1024)) == bytes(1024)
    finally:
        await be.close()


async def test_file_segments_write_is_flushed_and_seen_by_extents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    monkeypatch.setattr(os, "fdatasync", syncs.append)
    be = await open_file(path=str(tmp_path / "d"), size=16 * MiB, create=True)
    try:
        await be.flush()
        assert len(syncs) == 1
        be.write_now(0, pieces(b"a" * (4 * MiB), [MiB] * 4))
        await be.flush()  # the Segments write made the device dirty
        assert len(syncs) == 2
        assert await be.extents(0, 16 * MiB) == [
            Extent(0, 4 * MiB, True),
            Extent(4 * MiB, 12 * MiB, False),
        ]
        # A Segments write over the cached run's end: the next answer must follow it.
        be.write_now(4 * MiB, pieces(b"b" * MiB, random_sizes(MiB, 2000, 9)))
        assert await be.extents(2 * MiB, 4 * MiB) == [
            Extent(2 * MiB, 3 * MiB, True),
            Extent(5 * MiB, MiB, False),
        ]
    finally:
        await be.close()


# -------------------------------------------------------------------------- memory backend


@pytest.mark.parametrize("offset", [0, 512 * 3, 12345])
@pytest.mark.parametrize("case", sorted(CASES))
def test_memory_write_now_segments(case: str, offset: int) -> None:
    total, sizes = CASES[case]
    data = pattern(total, len(sizes) + 1)
    be = MemoryBackend(1 * MiB)
    be.write_now(0, b"\x77" * MiB)
    be.write_now(offset, pieces(data, sizes))
    got = bytes(be.read_now(0, MiB))
    assert got == b"\x77" * offset + data + b"\x77" * (MiB - offset - total)
    assert be.size == MiB  # nothing appended or cut


def test_memory_write_now_empty_segments() -> None:
    be = MemoryBackend(4096)
    be.write_now(512, Segments([]))
    assert bytes(be.read_now(0, 4096)) == bytes(4096) and be.size == 4096
