"""RawTransport's receive buffers: a handed-over buffer is reused only once nothing sees it.

A recv of HANDOVER_SIZE or more hands the 1 MiB receive buffer itself to the protocol (as a
memoryview) and receives into another; a handed-over buffer comes back into use when its
reference count shows no view of it is alive. Real TCP sockets on loopback, a running loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iscsigw.gateway import rawsock
from iscsigw.gateway.rawsock import HANDOVER_SIZE, RECV_SIZE, SPARE_BUFFERS, RawTransport

BIG = HANDOVER_SIZE + 16 * 1024  # one recv of this is handed over


def payload(n: int, seed: int) -> bytes:
    return bytes((i * 11 + seed * 29 + (i >> 10)) & 0xFF for i in range(n))


class Keeper:
    """A protocol that keeps whatever it is given until the test lets go."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.total = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: Any) -> None:
        self.got.append(data)
        self.total += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Link:
    """A connected TCP pair: ``client`` (blocking, ours) and the transport's end."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.protocol = Keeper()
        self.transport = RawTransport(asyncio.get_running_loop(), server, self.protocol)
        self.transport.start()

    async def deliver(self, data: bytes) -> Any:
        """Send ``data`` so that it is all queued before the transport reads it: one recv,
        one ``data_received``; returns what the protocol got."""
        t = self.transport
        t.pause_reading()
        before = len(self.protocol.got)
        await asyncio.to_thread(self.client.sendall, data)
        for _ in range(2000):
            try:
                queued = len(self.server.recv(len(data) + 1, socket.MSG_PEEK))
            except BlockingIOError:
                queued = 0
            if queued >= len(data):
                break
            await asyncio.sleep(0.001)
        else:
            pytest.fail("the data never got queued on the receiving socket")
        t.resume_reading()
        for _ in range(2000):
            if len(self.protocol.got) > before:
                break
            await asyncio.sleep(0.001)
        assert len(self.protocol.got) == before + 1, "expected exactly one recv"
        got = self.protocol.got[-1]
        assert len(got) == len(data)
        return got

    def pop(self) -> Any:
        """Take the last chunk out of the protocol (the caller decides how long to keep it)."""
        return self.protocol.got.pop()


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * RECV_SIZE)  # inherited
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * RECV_SIZE)
    server, _ = lsock.accept()
    lsock.close()
    ln = Link(client, server)
    try:
        yield ln
    finally:
        ln.transport.close()
        await asyncio.wait_for(ln.protocol.lost, 5)
        client.close()


async def test_small_recv_is_copied_and_the_buffer_kept(link: Link) -> None:
    rbuf_id = id(link.transport._rbuf)
    got = await link.deliver(b"x" * 100)
    assert isinstance(got, bytearray) and got == b"x" * 100
    assert id(link.transport._rbuf) == rbuf_id and link.transport._spares == []


async def test_handed_over_buffer_is_reused_only_when_no_view_is_left(link: Link) -> None:
    t = link.transport
    first_id = id(t._rbuf)

    p1 = payload(BIG, 1)
    d1 = await link.deliver(p1)
    link.pop()
    assert isinstance(d1, memoryview) and id(d1.obj) == first_id  # the buffer itself
    assert id(t._rbuf) != first_id  # received into another one now
    assert [id(b) for b in t._spares] == [first_id]

    # d1 is kept: the next handed-over data is not in its buffer, and d1 is untouched.
    p2 = payload(BIG + 1000, 2)
    d2 = await link.deliver(p2)
    link.pop()
    second_id = id(d2.obj)
    assert second_id != first_id
    assert bytes(d2) == p2 and bytes(d1) == p1
    assert first_id in {id(b) for b in t._spares}
    assert id(t._rbuf) not in (first_id, second_id)

    # d2 is dropped (d1 still kept): its buffer is free, d1's is not.
    del d2
    p3 = payload(BIG + 3000, 3)
    d3 = await link.deliver(p3)
    link.pop()
    third_id = id(d3.obj)
    assert third_id not in (first_id, second_id)
    assert bytes(d1) == p1 and bytes(d3) == p3
    assert id(t._rbuf) == second_id  # the free one came back for the next recv
    del d3

    p4 = payload(BIG, 4)
    d4 = await link.deliver(p4)
    link.pop()
    assert id(d4.obj) == second_id  # the very same bytearray, reused
    assert bytes(d4) == p4 and bytes(d1) == p1  # d1's buffer was never written into
    del d4

    # Only now is d1 let go: its buffer is reused too.
    assert bytes(d1) == p1
    del d1
    p5 = payload(BIG + 5, 5)
    d5 = await link.deliver(p5)  # handed over: the spare found free is d1's
    link.pop()
    assert bytes(d5) == p5
    del d5
    assert id(t._rbuf) == first_id
    d6 = await link.deliver(payload(BIG, 6))
    link.pop()
    assert id(d6.obj) == first_id and bytes(d6) == payload(BIG, 6)


async def test_a_slice_of_the_view_keeps_the_buffer_too(link: Link) -> None:
    """Parsed PDUs keep sub-views (a data segment): those pin the buffer like the whole."""
    p1 = payload(BIG, 7)
    d1 = await link.deliver(p1)
    link.pop()
    first_id = id(d1.obj)
    segment = d1[1000:5000]
    del d1
    for seed in range(8, 8 + SPARE_BUFFERS + 2):
        d = await link.deliver(payload(BIG, seed))
        link.pop()
        assert id(d.obj) != first_id
        del d
        assert bytes(segment) == p1[1000:5000]
    del segment
    # Free now: it comes back within the spares' turn.
    seen = set()
    for seed in range(20, 20 + SPARE_BUFFERS + 2):
        d = await link.deliver(payload(BIG, seed))
        link.pop()
        seen.add(id(d.obj))
        del d
    assert first_id in seen


async def test_spares_are_bounded_when_every_buffer_is_kept(link: Link) -> None:
    t = link.transport
    kept = []
    for seed in range(SPARE_BUFFERS + 3):
        p = payload(BIG, seed)
        kept.append((p, await link.deliver(p)))
        link.pop()
        assert len(t._spares) <= SPARE_BUFFERS
    ids = [id(d.obj) for _, d in kept]
    assert len(set(ids)) == len(ids)  # every one its own buffer
    for p, d in kept:
        assert bytes(d) == p


async def test_buffers_are_full_size(link: Link) -> None:
    t = link.transport
    d = await link.deliver(payload(BIG, 1))
    link.pop()
    del d
    d = await link.deliver(payload(BIG, 2))
    link.pop()
    del d
    assert len(t._rbuf) == RECV_SIZE and all(len(b) == RECV_SIZE for b in t._spares)
    assert rawsock._UNREFERENCED >= 2
