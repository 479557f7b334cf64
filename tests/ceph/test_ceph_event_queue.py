"""The rbd backend's native datapath on a real image: librbd's event socket (_EventQueue),
``start_read`` / ``start_write`` (SupportsStartedIO), and the coroutine datapath over it.

Checked: the native datapath is active; started reads and writes round trip their data and
their ``done`` runs later, on the event loop's thread; many coroutine requests in flight at
once; requests that cannot start (out of range, closed) and requests that fail in librbd
(a passive opener's write); ``close()`` waits for started requests still in flight, and
closes the eventfd.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cephharness import CephCluster

from iscsigw._types import Buffer, Segments
from iscsigw.backends.base import compare_and_write, immediate_io, started_io
from iscsigw.backends.registry import open_backend
from iscsigw.errors import BackendError, BackendFenced

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
OBJECT = 4 * MiB  # the default RBD object size


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
    """``n`` bytes (a multiple of 256) differing per seed and per 256-byte row."""
    rows = []
    for r in range(n // 256):
        rows.append(bytes(((i * 7 + seed * 13 + r) & 0xFF) for i in range(256)))
    return b"".join(rows)


class Completion:
    """A ``done(rv, data)`` for start_read / start_write: records what it got, and where."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fut: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        self.calls: list[tuple[int, bytes, int]] = []

    def __call__(self, rv: int, data: Buffer) -> None:
        self.calls.append((rv, bytes(data), threading.get_ident()))
        if not self.fut.done():
            self.fut.set_result((rv, bytes(data)))

    async def wait(self, timeout: float = 30) -> tuple[int, bytes]:
        return await asyncio.wait_for(asyncio.shield(self.fut), timeout)


def fd_is_eventfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except FileNotFoundError:
        return False


async def started_write(backend: Any, offset: int, data: Any) -> None:
    c = Completion()
    assert backend.start_write(offset, data, c)
    rv, out = await c.wait()
    assert rv >= 0 and out == b""


async def started_read(backend: Any, offset: int, length: int) -> bytes:
    c = Completion()
    assert backend.start_read(offset, length, c)
    rv, out = await c.wait()
    assert rv >= 0
    return out


# ---------------------------------------------------------------------------------------------


async def test_native_datapath_is_active(backend: Any) -> None:
    events = backend._events
    assert events is not None
    assert backend.native_compare_and_write  # the handle the native datapath uses
    assert started_io(backend) is backend
    assert immediate_io(backend) is None
    assert fd_is_eventfd(events._efd)
    assert not events.busy


async def test_started_write_and_read_round_trip(backend: Any) -> None:
    loop_thread = threading.get_ident()
    data = pattern(64 * 1024, 1)
    offset = 3 * MiB + 512
    w = Completion()
    assert backend.start_write(offset, data, w)
    assert w.calls == []  # not called from within start_write
    assert backend._events.busy
    rv, out = await w.wait()
    assert rv >= 0 and out == b""
    r = Completion()
    assert backend.start_read(offset, len(data), r)
    assert r.calls == []
    rv, out = await r.wait()
    assert rv == len(data) and out == data
    # Each done ran once, on the event loop's thread (not a librbd thread).
    await asyncio.sleep(0)
    assert [c[2] for c in w.calls + r.calls] == [loop_thread, loop_thread]
    # The coroutine path sees the same data, and the other way round.
    assert await backend.read(offset, len(data)) == data
    data2 = pattern(8192, 2)
    await backend.write(10 * MiB, data2)
    assert await started_read(backend, 10 * MiB, len(data2)) == data2
    # Never written: zeros.
    assert await started_read(backend, 20 * MiB, 4096) == bytes(4096)
    assert not backend._events.busy


async def test_started_write_accepts_every_received_type(
    backend: Any, ceph_cluster: CephCluster
) -> None:
    a, b, c, d = (pattern(4096, s) for s in (3, 4, 5, 6))
    await started_write(backend, 0, a)
    await started_write(backend, 4096, bytearray(b))
    await started_write(backend, 8192, memoryview(c))
    await started_write(backend, 12288, Segments([memoryview(d)[:1000], d[1000:3000], d[3000:]]))
    # Across an object boundary.
    e = pattern(16384, 7)
    await started_write(backend, OBJECT - 8192, e)
    assert await started_read(backend, 0, 16384) == a + b + c + d
    assert await started_read(backend, OBJECT - 8192, len(e)) == e
    # The last block of the image.
    f = pattern(512, 8)
    await started_write(backend, backend.size - 512, f)
    assert await started_read(backend, backend.size - 512, 512) == f
    # What librbd acknowledged is what another client (the rbd CLI) reads.
    exported = ceph_cluster.run_bytes("rbd", "export", f"rbd/{backend.name}", "-")
    assert exported[:16384] == a + b + c + d
    assert exported[OBJECT - 8192 : OBJECT + 8192] == e
    assert exported[-512:] == f


async def test_the_read_buffer_is_the_callers(backend: Any) -> None:
    # The data handed to done must stay valid after the completion is released.
    await started_write(backend, 0, pattern(4096, 9))
    got: list[Buffer] = []
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(rv: int, data: Buffer) -> None:
        assert rv >= 0
        got.append(data)
        fut.set_result(None)

    assert backend.start_read(0, 4096, done)
    await asyncio.wait_for(fut, 30)
    for _ in range(3):
        await backend.read(0, 4096)  # more requests through the queue
    assert bytes(got[0]) == pattern(4096, 9)


async def test_200_concurrent_coroutines(backend: Any) -> None:
    blocks = [pattern(4096, i) for i in range(200)]
    base = 5 * MiB
    await asyncio.gather(*(backend.write(base + i * 4096, b) for i, b in enumerate(blocks)))
    got = await asyncio.gather(*(backend.read(base + i * 4096, 4096) for i in range(200)))
    assert got == blocks
    # Reads and writes of other ranges together, mixed with started requests.
    blocks2 = [pattern(4096, 1000 + i) for i in range(200)]
    base2 = 40 * MiB
    comps = [Completion() for _ in range(50)]
    for i, c in enumerate(comps):
        assert backend.start_write(base2 + i * 4096, blocks2[i], c)
    results = await asyncio.gather(
        *(backend.write(base2 + i * 4096, blocks2[i]) for i in range(50, 200)),
        *(backend.read(base + i * 4096, 4096) for i in range(200)),
    )
    assert list(results[150:]) == blocks
    assert all(rv >= 0 for rv, _ in [await c.wait() for c in comps])
    got = await asyncio.gather(*(backend.read(base2 + i * 4096, 4096) for i in range(200)))
    assert got == blocks2
    # flush / discard / write_zeroes on the same queue.
    await backend.flush()
    await backend.discard(base2, 4096)
    await backend.write_zeroes(base2 + 4096, 4096)
    assert await backend.read(base2, 3 * 4096) == bytes(8192) + blocks2[2]
    assert not backend._events.busy


async def test_requests_that_cannot_start(backend: Any) -> None:
    size = backend.size
    c = Completion()
    assert not backend.start_read(size, 512, c)
    assert not backend.start_read(size - 512, 1024, c)
    assert not backend.start_read(-512, 512, c)
    assert not backend.start_read(0, 0, c)
    assert not backend.start_write(size, b"x" * 512, c)
    assert not backend.start_write(size - 512, b"x" * 1024, c)
    assert not backend.start_write(-512, b"x" * 512, c)
    assert not backend.start_write(0, b"", c)
    await asyncio.sleep(0.05)
    assert c.calls == []
    assert not backend._events.busy
    # The coroutine path reports them.
    with pytest.raises(BackendError):
        await backend.read(size - 512, 1024)
    with pytest.raises(BackendError):
        await backend.write(size, b"x" * 512)
    # Still usable.
    assert await started_read(backend, size - 512, 512) == bytes(512)


async def test_failed_request_reports_a_negative_errno(backend: Any) -> None:
    # A passive opener (no exclusive lock): librbd refuses its writes.
    await backend.write(0, b"A" * 4096)
    passive = await open_backend("rbd", pool="rbd", image=backend.name, exclusive=False)
    try:
        assert passive._events is not None
        c = Completion()
        assert passive.start_write(0, b"P" * 4096, c)  # started: librbd fails it
        rv, out = await c.wait()
        assert rv < 0 and out == b""
        with pytest.raises(BackendFenced):
            await passive.write(0, b"P" * 4096)
        # Reads work.
        assert await started_read(passive, 0, 4096) == b"A" * 4096
        assert not passive._events.busy
    finally:
        await passive.close()
    assert await backend.read(0, 4096) == b"A" * 4096


async def test_compare_and_write_alongside_started_io(backend: Any) -> None:
    # The native compare-and-write completes by its own callback, not through the event
    # socket: interleaving both must neither lose nor double-release a completion.
    await backend.write(OBJECT, b"a" * 512)
    comps = [Completion() for _ in range(16)]
    for i, c in enumerate(comps):
        assert backend.start_write(OBJECT + (i + 1) * 4096, pattern(4096, i), c)
    assert await compare_and_write(backend, OBJECT, b"a" * 512, b"b" * 512) == -1
    assert all(rv >= 0 for rv, _ in [await c.wait() for c in comps])
    assert await compare_and_write(backend, OBJECT, b"a" * 512, b"c" * 512) == 0
    assert await started_read(backend, OBJECT, 512) == b"b" * 512
    for i in range(16):
        assert await started_read(backend, OBJECT + (i + 1) * 4096, 4096) == pattern(4096, i)


async def test_close_waits_for_started_requests(admin: Any, image_name: str) -> None:
    await admin.create_image("rbd", image_name, 64 * MiB)
    b = await open_backend("rbd", pool="rbd", image=image_name)
    events = b._events
    assert events is not None
    efd = events._efd
    assert fd_is_eventfd(efd)
    loop_thread = threading.get_ident()
    blocks = [pattern(64 * 1024, 50 + i) for i in range(16)]
    writes = [Completion() for _ in blocks]
    for i, (blk, c) in enumerate(zip(blocks, writes, strict=True)):
        assert b.start_write(i * len(blk), blk, c)
    reads = [Completion() for _ in range(4)]
    for i, c in enumerate(reads):
        assert b.start_read(32 * MiB + i * 4096, 4096, c)
    assert events.busy
    await b.close()
    # Every started request completed (successfully) before close returned.
    for c in writes + reads:
        assert len(c.calls) == 1, c.calls
        rv, _, thread = c.calls[0]
        assert rv >= 0 and thread == loop_thread
    assert [c.calls[0][1] for c in reads] == [bytes(4096)] * 4
    assert not events.busy
    # The event queue is gone and its eventfd closed (and no longer watched by the loop).
    assert b._events is None
    assert events._efd == -1
    assert not asyncio.get_running_loop().remove_reader(efd)
    assert not fd_is_eventfd(efd)
    # Closed: nothing starts, the coroutines raise.
    c = Completion()
    assert not b.start_read(0, 512, c)
    assert not b.start_write(0, b"x" * 512, c)
    with pytest.raises(BackendError):
        await b.read(0, 512)
    with pytest.raises(BackendError):
        await b.write(0, b"x" * 512)
    await asyncio.sleep(0.05)
    assert c.calls == []
    await b.close()  # a second close is harmless
    # The data is on the image.
    b2 = await open_backend("rbd", pool="rbd", image=image_name)
    try:
        got = await b2.read(0, 16 * 64 * 1024)
        assert got == b"".join(blocks)
    finally:
        await b2.close()


async def test_reconnect_restarts_the_event_queue(backend: Any) -> None:
    old = backend._events
    old_fd = old._efd
    await started_write(backend, 0, b"R" * 512)
    await backend.reconnect()
    assert backend._events is not None and backend._events is not old
    assert old._efd == -1
    assert fd_is_eventfd(backend._events._efd)
    if backend._events._efd != old_fd:  # (a reused number is the new queue's)
        assert not asyncio.get_running_loop().remove_reader(old_fd)
    assert await started_read(backend, 0, 512) == b"R" * 512
    await started_write(backend, 512, b"S" * 512)
    assert await backend.read(0, 1024) == b"R" * 512 + b"S" * 512
