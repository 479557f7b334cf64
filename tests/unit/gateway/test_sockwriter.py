"""``SocketWriter``: everything handed to ``write`` arrives, in order, whatever the kernel takes
per call (a small send buffer forces partial writevs and the add_writer path)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from iscsigw._types import FileSlice, Payload
from iscsigw.gateway.sockwriter import SocketWriter, _unsent


def test_unsent_skips_whole_and_partial_buffers() -> None:
    items: list[Payload] = [b"abc", bytearray(b"defg"), memoryview(b"hij")]
    assert _unsent(items, 0) == items
    assert [bytes(x) for x in _unsent(items, 2)] == [b"c", b"defg", b"hij"]
    assert [bytes(x) for x in _unsent(items, 3)] == [b"defg", b"hij"]
    assert [bytes(x) for x in _unsent(items, 8)] == [b"ij"]
    assert _unsent(items, 10) == []


async def _drain(sock: socket.socket, want: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < want:
        chunk = await loop.sock_recv(sock, 1 << 16)
        assert chunk, "peer closed early"
        got += chunk
    return bytes(got)


class _Events:
    def __init__(self) -> None:
        self.errors: list[OSError] = []
        self.paused = 0
        self.resumed = 0


def _writer(fd: int, ev: _Events) -> SocketWriter:
    return SocketWriter(
        asyncio.get_running_loop(),
        fd,
        on_error=ev.errors.append,
        on_pause=lambda: setattr(ev, "paused", ev.paused + 1),
        on_resume=lambda: setattr(ev, "resumed", ev.resumed + 1),
    )


@pytest.mark.parametrize("with_file", [False, True])
async def test_everything_arrives_in_order(tmp_path: Path, with_file: bool) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    blob = os.urandom(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(blob)
    fd = os.open(path, os.O_RDONLY)
    ev = _Events()
    w = _writer(a.fileno(), ev)
    expected = bytearray()
    try:
        for i in range(40):
            items: list[Payload] = [bytes([i]) * 48, memoryview(blob)[i * 1000 : i * 1000 + 70000]]
            expected += items[0] + bytes(items[1])
            if with_file and i % 5 == 0:
                items.append(FileSlice(fd, i * 4096, 100000))
                expected += blob[i * 4096 : i * 4096 + 100000]
            w.write(items)
        got = await _drain(b, len(expected))
        assert got == bytes(expected)
        for _ in range(50):  # the writer finishes its queue from the loop
            if not w.pending:
                break
            await asyncio.sleep(0.01)
        assert w.pending == 0 and not ev.errors
        drained: list[bool] = []
        w.when_drained(lambda: drained.append(True))
        assert drained == [True]
    finally:
        w.close()
        os.close(fd)
        a.close()
        b.close()


async def test_small_replies_go_out_at_once() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    ev = _Events()
    w = _writer(a.fileno(), ev)
    try:
        w.write([b"\x21" * 48, b""])
        assert w.pending == 0  # written by the call itself, nothing queued
        b.settimeout(5)
        assert b.recv(100) == b"\x21" * 48
    finally:
        w.close()
        a.close()
        b.close()


async def test_a_dead_peer_is_reported_once() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    ev = _Events()
    w = _writer(a.fileno(), ev)
    try:
        w.write([b"x" * 100])
        w.write([b"y" * 100])  # closed after the first error: ignored
        assert len(ev.errors) == 1
    finally:
        w.close()
        a.close()
