"""FileBackend against a real sparse file: allocation (st_blocks), extents, sync paths, errors."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import threading
from pathlib import Path

import pytest

from iscsigw.backends import file as file_mod
from iscsigw.backends.base import Extent
from iscsigw.backends.file import FileBackend, open_file
from iscsigw.errors import BackendError, BackendNoSpace, BackendNotFound, ConfigError

MiB = 1 << 20


def allocated(path: Path) -> int:
    """Bytes the filesystem has allocated for the file."""
    return os.stat(path).st_blocks * 512


async def new(tmp_path: Path, size: int = 64 * MiB, block_size: int = 512) -> FileBackend:
    return await open_file(
        path=str(tmp_path / "pool" / "img"), size=size, block_size=block_size, create=True
    )


def check_cover(extents: list[Extent], offset: int, length: int, block_size: int) -> None:
    """Extents are in order, contiguous, block aligned, alternate and cover the range exactly."""
    pos = offset
    for i, e in enumerate(extents):
        assert e.offset == pos and e.length > 0
        assert e.offset % block_size == 0 and e.length % block_size == 0
        if i:
            assert extents[i - 1].mapped != e.mapped
        pos += e.length
    assert pos == offset + length


@pytest.fixture
def punch_works(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    with open(probe, "wb") as f:
        f.write(b"x" * MiB)
        f.flush()
        try:
            file_mod._punch_hole(f.fileno(), 0, MiB)
        except OSError as exc:
            pytest.skip(f"filesystem cannot punch holes: {exc}")


async def test_create_makes_sparse_file_and_parents(tmp_path: Path) -> None:
    be = await new(tmp_path, size=1 << 30)
    path = tmp_path / "pool" / "img"
    try:
        assert be.size == 1 << 30 and be.block_size == 512 and be.discard_zeroes
        assert os.stat(path).st_size == 1 << 30
        assert allocated(path) < MiB  # a 1 GiB file that uses (almost) nothing
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
        assert bytes(await be.read(512 * 1000, 4096)) == bytes(4096)
    finally:
        await be.close()


async def test_missing_file_without_create_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(BackendNotFound, match=re.escape(str(tmp_path / "nope"))):
        await open_file(path=str(tmp_path / "nope"), size=MiB)


async def test_create_without_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without a size"):
        await open_file(path=str(tmp_path / "x"), create=True)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("bs", [0, 100, 513, 1 << 20])
async def test_bad_block_size(tmp_path: Path, bs: int) -> None:
    with pytest.raises(ConfigError, match="block_size"):
        await open_file(path=str(tmp_path / "x"), size=MiB, block_size=bs, create=True)


async def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=re.escape(str(tmp_path))):
        await open_file(path=str(tmp_path))


async def test_existing_file_is_reused_grown_never_shrunk(tmp_path: Path) -> None:
    path = tmp_path / "img"
    path.write_bytes(b"A" * 4096 + b"B" * 100)  # not a whole number of blocks
    be = await open_file(path=str(path))
    assert be.size == 4096  # rounded down to whole blocks
    assert bytes(await be.read(0, 512)) == b"A" * 512
    await be.close()

    be = await open_file(path=str(path), size=MiB, create=True)
    assert be.size == MiB and os.stat(path).st_size == MiB
    assert bytes(await be.read(0, 512)) == b"A" * 512  # data kept
    await be.close()

    be = await open_file(path=str(path), size=8192)
    assert be.size == MiB  # a larger file keeps its size
    await be.close()


async def test_write_read_roundtrip_with_any_buffer(tmp_path: Path) -> None:
    be = await new(tmp_path)
    try:
        await be.write(0, b"\x01" * 512)
        await be.write(512, bytearray(b"\x02" * 1024))
        backing = bytearray(b"\x03" * 8192)
        await be.write(4096, memoryview(backing)[:4096])
        got = bytes(await be.read(0, 8192))
        assert got == b"\x01" * 512 + b"\x02" * 1024 + bytes(2560) + b"\x03" * 4096
        # last block of the device
        await be.write(be.size - 512, b"\xff" * 512)
        assert bytes(await be.read(be.size - 512, 512)) == b"\xff" * 512
    finally:
        await be.close()


async def test_out_of_range_io_is_refused(tmp_path: Path) -> None:
    be = await new(tmp_path, size=MiB)
    try:
        with pytest.raises(BackendError, match="outside"):
            await be.read(MiB - 512, 1024)
        with pytest.raises(BackendError, match="outside"):
            await be.write(MiB, b"x" * 512)
        assert os.stat(be.path).st_size == MiB
    finally:
        await be.close()


async def test_read_past_truncated_file_returns_zeros(tmp_path: Path) -> None:
    be = await new(tmp_path, size=MiB)
    try:
        await be.write(0, b"z" * 8192)
        os.truncate(be.path, 4096)  # someone shrank the file behind our back
        got = bytes(await be.read(0, 8192))
        assert got == b"z" * 4096 + bytes(4096)
    finally:
        await be.close()


async def test_discard_punches_a_real_hole(tmp_path: Path, punch_works: None) -> None:
    be = await new(tmp_path)
    path = Path(be.path)
    try:
        await be.write(0, b"\xaa" * (4 * MiB))
        await be.flush()
        assert allocated(path) >= 4 * MiB
        await be.discard(MiB, 2 * MiB)
        assert 2 * MiB <= allocated(path) < 3 * MiB
        assert os.stat(path).st_size == 64 * MiB  # KEEP_SIZE
        got = bytes(await be.read(0, 4 * MiB))
        assert got == b"\xaa" * MiB + bytes(2 * MiB) + b"\xaa" * MiB
        ext = await be.extents(0, 8 * MiB)
        assert ext == [
            Extent(0, MiB, True),
            Extent(MiB, 2 * MiB, False),
            Extent(3 * MiB, MiB, True),
            Extent(4 * MiB, 4 * MiB, False),
        ]
    finally:
        await be.close()


async def test_extents_round_to_blocks_and_clip_to_range(tmp_path: Path) -> None:
    be = await new(tmp_path, block_size=4096)
    try:
        assert await be.extents(0, be.size) == [Extent(0, be.size, False)]
        await be.write(40960, b"d" * 4096)
        ext = await be.extents(0, MiB)
        check_cover(ext, 0, MiB, 4096)
        mapped = [e for e in ext if e.mapped]
        assert len(mapped) == 1
        m = mapped[0]
        assert m.offset <= 40960 and m.offset + m.length >= 40960 + 4096
        # a query starting inside the mapped run is clipped to the query
        sub = await be.extents(40960, 8192)
        check_cover(sub, 40960, 8192, 4096)
        assert sub[0] == Extent(40960, 4096, True)
        # a query that lies wholly in a hole
        assert await be.extents(MiB, 4096) == [Extent(MiB, 4096, False)]
        assert await be.extents(0, 0) == []
    finally:
        await be.close()


async def test_extents_mark_partially_written_block_mapped(tmp_path: Path) -> None:
    be = await new(tmp_path, block_size=512)
    try:
        await be.write(3 * 512, b"q" * 512)
        ext = await be.extents(0, 65536)
        check_cover(ext, 0, 65536, 512)
        assert any(e.mapped and e.offset <= 1536 < e.offset + e.length for e in ext)
    finally:
        await be.close()


async def test_write_zeroes_with_and_without_unmap(tmp_path: Path, punch_works: None) -> None:
    be = await new(tmp_path)
    path = Path(be.path)
    try:
        await be.write(0, b"\x55" * (4 * MiB))
        await be.write_zeroes(0, 2 * MiB)  # provisioned zeros: allocation stays
        assert allocated(path) >= 4 * MiB
        await be.write_zeroes(2 * MiB, 2 * MiB, unmap=True)  # may deallocate: it does
        assert allocated(path) < 3 * MiB
        assert bytes(await be.read(0, 4 * MiB)) == bytes(4 * MiB)
        ext = await be.extents(0, 4 * MiB)
        assert ext == [Extent(0, 2 * MiB, True), Extent(2 * MiB, 2 * MiB, False)]
    finally:
        await be.close()


async def test_discard_falls_back_to_zeros(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def unsupported(fd: int, offset: int, length: int) -> None:
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(file_mod, "_punch_hole", unsupported)
    be = await new(tmp_path)
    try:
        await be.write(0, b"\x77" * (3 * MiB))
        await be.discard(512, 3 * MiB - 1024)  # > inline limit: zero fill in a thread
        got = bytes(await be.read(0, 3 * MiB))
        assert got == b"\x77" * 512 + bytes(3 * MiB - 1024) + b"\x77" * 512
        await be.discard(0, 512)
        assert bytes(await be.read(0, 512)) == bytes(512)
        assert calls == [512]  # not retried once known unsupported
    finally:
        await be.close()


async def test_discard_other_errors_are_translated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def eio(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(file_mod, "_punch_hole", eio)
    be = await new(tmp_path)
    try:
        with pytest.raises(BackendError, match="I/O error") as info:
            await be.discard(0, 4096)
        assert type(info.value) is BackendError
    finally:
        await be.close()


class SyncSpy:
    """Wraps os.fdatasync: counts calls, records threads, can hold a call until released."""

    def __init__(self) -> None:
        self.real = os.fdatasync
        self.calls = 0
        self.threads: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.threads.append(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self.real(fd)


@pytest.fixture
def sync_spy(monkeypatch: pytest.MonkeyPatch) -> SyncSpy:
    spy = SyncSpy()
    monkeypatch.setattr(os, "fdatasync", spy)
    return spy


async def test_flush_runs_fdatasync_off_the_loop(tmp_path: Path, sync_spy: SyncSpy) -> None:
    be = await new(tmp_path)
    try:
        await be.flush()  # first flush after open always syncs (earlier page-cache writes)
        assert sync_spy.calls == 1
        await be.flush()  # nothing written since: no syscall
        assert sync_spy.calls == 1
        await be.write(0, b"x" * 512)
        await be.flush()
        assert sync_spy.calls == 2
        assert threading.get_ident() not in sync_spy.threads
    finally:
        await be.close()


async def test_concurrent_flushes_share_one_sync(tmp_path: Path, sync_spy: SyncSpy) -> None:
    be = await new(tmp_path)
    try:
        await be.write(0, b"x" * 512)
        await asyncio.gather(*(be.flush() for _ in range(20)))
        assert sync_spy.calls == 1
    finally:
        await be.close()


async def test_write_during_sync_gets_its_own_sync(tmp_path: Path, sync_spy: SyncSpy) -> None:
    be = await new(tmp_path)
    try:
        await be.write(0, b"a" * 512)
        sync_spy.gate = threading.Event()
        first = asyncio.create_task(be.flush())
        await asyncio.to_thread(sync_spy.entered.wait, 5)
        assert sync_spy.calls == 1
        await be.write(512, b"b" * 512)  # completes while the first sync is running
        second = asyncio.create_task(be.flush())
        await asyncio.sleep(0.01)
        assert not second.done()
        sync_spy.gate.set()
        await asyncio.gather(first, second)
        assert sync_spy.calls == 2  # the sync that was in flight cannot cover the 2nd write
    finally:
        await be.close()


async def test_failed_sync_is_sticky(tmp_path: Path, sync_spy: SyncSpy) -> None:
    be = await new(tmp_path)
    try:
        await be.write(0, b"a" * 512)
        sync_spy.fail = OSError(errno.EIO, "Input/output error")
        with pytest.raises(BackendError, match=r"syncing .*Input/output error"):
            await be.flush()
        sync_spy.fail = None
        with pytest.raises(BackendError, match="Input/output error"):
            await be.flush()  # a retry must not pretend the lost data is durable
    finally:
        with pytest.raises(BackendError):
            await be.close()


async def test_fua_write_uses_dsync_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync_spy: SyncSpy
) -> None:
    if not hasattr(os, "RWF_DSYNC"):
        pytest.skip("no RWF_DSYNC on this platform")
    seen: list[tuple[int, int]] = []
    real = os.pwritev

    def spy(fd: int, bufs: list[memoryview], offset: int, flags: int = 0) -> int:
        seen.append((flags, threading.get_ident()))
        return real(fd, bufs, offset, flags)

    monkeypatch.setattr(os, "pwritev", spy)
    be = await new(tmp_path)
    try:
        await be.write(4096, b"f" * 4096, fua=True)
        assert seen and all(f == os.RWF_DSYNC for f, _ in seen)
        assert all(t != threading.get_ident() for _, t in seen)
        assert sync_spy.calls == 0  # only the range was synced
        assert bytes(await be.read(4096, 4096)) == b"f" * 4096
    finally:
        await be.close()


async def test_fua_write_falls_back_to_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync_spy: SyncSpy
) -> None:
    def no_flags(fd: int, bufs: list[memoryview], offset: int, flags: int = 0) -> int:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "pwritev", no_flags)
    be = await new(tmp_path)
    try:
        await be.write(0, b"g" * 1024, fua=True)
        assert sync_spy.calls == 1
        assert threading.get_ident() not in sync_spy.threads
        assert bytes(await be.read(0, 1024)) == b"g" * 1024
    finally:
        await be.close()


async def test_enospc_becomes_backend_no_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    be = await new(tmp_path)

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    try:
        with pytest.raises(BackendNoSpace, match=re.escape(f"writing {be.path}: No space left")):
            await be.write(0, b"x" * 512)
    finally:
        monkeypatch.undo()
        await be.close()


async def test_file_removed_from_disk_keeps_working_until_reopen(tmp_path: Path) -> None:
    be = await new(tmp_path)
    path = be.path
    await be.write(0, b"k" * 512)
    os.unlink(path)  # open fd still valid
    assert bytes(await be.read(0, 512)) == b"k" * 512
    await be.close()
    with pytest.raises(BackendNotFound):
        await open_file(path=path)


async def test_resize_grow_and_shrink(tmp_path: Path) -> None:
    be = await new(tmp_path, size=MiB)
    try:
        await be.write(MiB - 512, b"e" * 512)
        await be.resize(4 * MiB)
        assert be.size == 4 * MiB and os.stat(be.path).st_size == 4 * MiB
        assert bytes(await be.read(MiB - 512, 1024)) == b"e" * 512 + bytes(512)
        await be.write(4 * MiB - 512, b"n" * 512)  # new space is writable
        await be.resize(MiB // 2)
        assert be.size == MiB // 2 and os.stat(be.path).st_size == MiB // 2
        with pytest.raises(BackendError, match="outside"):
            await be.read(MiB - 512, 512)
        with pytest.raises(BackendError, match="multiple of the block size"):
            await be.resize(1000)
    finally:
        await be.close()


async def test_close_flushes_and_then_refuses(tmp_path: Path, sync_spy: SyncSpy) -> None:
    be = await new(tmp_path)
    await be.write(0, b"c" * 512)
    await be.close()
    assert sync_spy.calls == 1
    await be.close()  # idempotent
    for call in (be.read(0, 512), be.write(0, b"x" * 512), be.flush(), be.discard(0, 512)):
        with pytest.raises(BackendError, match="closed"):
            await call
    data = Path(tmp_path / "pool" / "img").read_bytes()[:512]
    assert data == b"c" * 512


async def test_extents_stay_right_through_the_data_run_cache(tmp_path: Path) -> None:
    # The backend remembers the last data run it found; writes, discards and resizes must
    # never let it report stale mapping (QEMU skips reading blocks reported deallocated).
    mib = 1 << 20
    be = await open_file(path=str(tmp_path / "d"), size=16 * mib, create=True)
    try:
        await be.write(0, b"a" * (4 * mib))
        assert await be.extents(0, 16 * mib) == [
            Extent(0, 4 * mib, True),
            Extent(4 * mib, 12 * mib, False),
        ]
        # Served from the cache, and still right:
        assert await be.extents(mib, mib) == [Extent(mib, mib, True)]
        # A write over the run's end extends the data; the answer must follow.
        await be.write(4 * mib, b"b" * mib)
        assert await be.extents(2 * mib, 4 * mib) == [
            Extent(2 * mib, 3 * mib, True),
            Extent(5 * mib, mib, False),
        ]
        # A discard inside the cached run makes a hole the next answer must show.
        assert await be.extents(0, 5 * mib) == [Extent(0, 5 * mib, True)]  # cached: [0, 5M)
        await be.discard(2 * mib, mib)
        assert await be.extents(0, 5 * mib) == [
            Extent(0, 2 * mib, True),
            Extent(2 * mib, mib, False),
            Extent(3 * mib, 2 * mib, True),
        ]
        # So does a shrink followed by a grow (the regrown tail is a hole).
        await be.resize(4 * mib)
        await be.resize(8 * mib)
        assert (await be.extents(3 * mib, 5 * mib))[-1] == Extent(4 * mib, 4 * mib, False)
    finally:
        await be.close()
