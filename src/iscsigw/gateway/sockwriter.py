"""Scatter-gather socket output: os.writev for buffers, os.sendfile for file slices.

asyncio's transport joins a ``writelines`` batch into one bytes object (a copy of every
Data-In payload) and cannot mix in sendfile. This writer owns the socket's output side: it
writes what the kernel takes at once and queues the rest behind an ``add_writer`` callback.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from collections.abc import Callable

from .._types import FileSlice, Payload

_IOV_MAX = 1024
HIGH_WATER = 8 << 20
LOW_WATER = 2 << 20


def _unsent(items: list[Payload], sent: int) -> list[Payload]:
    """What is left of ``items`` (buffers only) after the first ``sent`` bytes went out."""
    for i, item in enumerate(items):
        size = len(item)
        if sent < size:
            rest = items[i + 1 :]
            return [memoryview(item)[sent:], *rest] if sent else items[i:]  # type: ignore[arg-type]
        sent -= size
    return []


class SocketWriter:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        *,
        on_error: Callable[[OSError], None],
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: deque[Payload] = deque()
        self._queued = 0
        self._waiting = False
        self._paused = False
        self._closed = False
        self._on_error = on_error
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._drained: list[Callable[[], None]] = []

    @property
    def pending(self) -> int:
        return self._queued

    def write(self, items: list[Payload]) -> None:
        if self._closed:
            return
        q = self._queue
        if not q and not self._waiting and len(items) <= _IOV_MAX:
            # Nothing queued (the usual case): one writev straight from the list.
            total = 0
            for item in items:
                if isinstance(item, FileSlice):
                    break
                total += len(item)
            else:
                try:
                    n = os.writev(self._fd, items)  # type: ignore[arg-type]
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self.close()
                    self._on_error(exc)
                    return
                if n == total:
                    return
                items = _unsent(items, n)
        for item in items:
            n = len(item)
            if n:
                q.append(item)
                self._queued += n
        if not self._waiting and q:
            self._send()

    def when_drained(self, callback: Callable[[], None]) -> None:
        if not self._queue:
            callback()
        else:
            self._drained.append(callback)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._queued = 0
        if self._waiting:
            self._loop.remove_writer(self._fd)
            self._waiting = False

    def _on_writable(self) -> None:
        self._send()

    def _send(self) -> None:
        q = self._queue
        fd = self._fd
        try:
            while q:
                head = q[0]
                if isinstance(head, FileSlice):
                    n = os.sendfile(fd, head.fd, head.offset, head.length)
                    if n == 0:
                        # The file ended early (truncated behind our back): zeros keep the
                        # stream framed; the data was past the end of the device's file.
                        q[0] = bytes(head.length)
                        continue
                    self._queued -= n
                    if n < head.length:
                        q[0] = head.slice(n, head.length - n)
                        break
                    q.popleft()
                    continue
                bufs: list[Payload] = []
                for item in q:
                    if isinstance(item, FileSlice) or len(bufs) == _IOV_MAX:
                        break
                    bufs.append(item)
                n = os.writev(fd, bufs)  # type: ignore[arg-type]
                self._queued -= n
                while n:
                    item = q[0]
                    size = len(item)
                    if n >= size:
                        q.popleft()
                        n -= size
                    else:
                        q[0] = memoryview(item)[n:]  # type: ignore[arg-type]
                        n = 0
                        break
                else:
                    continue
                break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                pass
            else:
                self.close()
                self._on_error(exc)
                return
        if q:
            if not self._waiting:
                self._loop.add_writer(fd, self._on_writable)
                self._waiting = True
        elif self._waiting:
            self._loop.remove_writer(fd)
            self._waiting = False
        # Backpressure: stop reading new commands while the initiator is not draining replies.
        if self._paused:
            if self._queued <= LOW_WATER:
                self._paused = False
                self._on_resume()
        elif self._queued > HIGH_WATER:
            self._paused = True
            self._on_pause()
        if not q and self._drained:
            callbacks, self._drained = self._drained, []
            for cb in callbacks:
                cb()
