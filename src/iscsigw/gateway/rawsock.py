"""Listening and connected sockets driven straight from the event loop's selector.

asyncio's transports own their file descriptor, so nothing else may watch it for
writability, and their writes copy. The datapath needs os.writev/os.sendfile on the socket
(``sockwriter``), so connections use this small transport instead: readiness callbacks with
``add_reader``/``add_writer``, one ``recv`` per readable event, nothing buffered here.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

from .._types import Buffer
from ..errors import ConfigError

log = logging.getLogger("iscsigw.server")

RECV_SIZE = 1 << 20
HANDOVER_SIZE = 64 << 10
SPARE_BUFFERS = 4  # per connection


def _refs_of_listed() -> int:
    # References sys.getrefcount reports for an object held only by one list slot.
    probe = [bytearray(1)]
    return sys.getrefcount(probe[0])


_UNREFERENCED = _refs_of_listed()


class StreamProtocol(Protocol):
    def connection_made(self, transport: Any) -> None: ...
    def data_received(self, data: Buffer) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class RawTransport:
    """The subset of asyncio.Transport the iSCSI driver uses, over a non-blocking socket."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StreamProtocol
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._reading = False
        self._closed = False
        self._rbuf = bytearray(RECV_SIZE)
        self._spares: list[bytearray] = []  # handed-over receive buffers, reused when free
        self._extra = {"socket": sock, "peername": _peer(sock), "sockname": sock.getsockname()}

    def start(self) -> None:
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._protocol.connection_made(self)
        if not self._closed:
            self.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closed

    def pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._fd, self._read_ready)
            self._reading = True

    def close(self) -> None:
        self._shutdown(None)

    def abort(self) -> None:
        if not self._closed:
            try:  # RST instead of FIN: the peer must not take this for a clean close
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass
        self._shutdown(None)

    def _shutdown(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self.pause_reading()
        self._closed = True
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()

    def _read_ready(self) -> None:
        buf = self._rbuf
        try:
            n = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._shutdown(exc)
            return
        if not n:
            self._shutdown(None)
            return
        if n < HANDOVER_SIZE:
            # Commands, small writes: copy out and keep reusing the buffer. A fresh 1 MiB
            # bytes per recv() (what sock.recv does) costs page faults on every I/O.
            data: Buffer = buf[:n]
        else:
            # Bulk Data-Out: hand the buffer itself to the protocol (parsed PDUs keep views
            # of it, so it is never reused) and receive into a new one.
            data = memoryview(buf)[:n]
            self._rbuf = self._next_buffer(buf)
        self._protocol.data_received(data)

    def _next_buffer(self, given: bytearray) -> bytearray:
        """A buffer for the next recv after ``given`` was handed over.

        A handed-over buffer is reused once nothing refers to it any more (every PDU view of
        it is gone: the command completed); a memoryview keeps its bytearray referenced, so
        the reference count tells. Saves zero-filling and faulting in 1 MiB per large recv.
        """
        spares = self._spares
        for i in range(len(spares)):
            if sys.getrefcount(spares[i]) <= _UNREFERENCED:  # same expression as calibrated
                spare = spares[i]
                spares[i] = given
                return spare
        if len(spares) < SPARE_BUFFERS:
            spares.append(given)
        return bytearray(RECV_SIZE)


def _peer(sock: socket.socket) -> tuple[Any, ...] | None:
    try:
        return tuple(sock.getpeername())
    except OSError:
        return None


class Listener:
    """One portal: accepts connections and hands each to a new protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], StreamProtocol],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept a connection: %s", exc.strerror)
                    return
                raise
            RawTransport(self._loop, conn, self._factory()).start()

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    label = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"portal {label} is already in use by another program; pick another --portal"
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"portal {label}: address {ip} is not configured on this host")
        raise ConfigError(f"cannot listen on portal {label}: {exc.strerror}")
    return sock
