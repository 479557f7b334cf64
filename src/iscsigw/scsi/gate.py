"""A shared/exclusive gate that makes COMPARE AND WRITE atomic against other writes on a LU.

Ordinary medium-modifying commands hold the gate shared (a counter, no await on the fast
path); COMPARE AND WRITE holds it exclusively, which waits until in-flight writes have drained
and holds back new ones until the compare and the write are both done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteGate:
    __slots__ = ("_drained", "_exclusive", "_lock", "_open", "shared")

    def __init__(self) -> None:
        self.shared = 0
        self._exclusive = False
        self._lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._open.set()
        self._drained: asyncio.Future[None] | None = None

    @property
    def exclusive(self) -> bool:
        return self._exclusive

    async def enter_shared(self) -> None:
        while self._exclusive:
            await self._open.wait()
        self.shared += 1

    def leave_shared(self) -> None:
        self.shared -= 1
        drained = self._drained
        if self.shared == 0 and drained is not None and not drained.done():
            drained.set_result(None)

    @asynccontextmanager
    async def exclusively(self) -> AsyncIterator[None]:
        async with self._lock:
            self._exclusive = True
            self._open.clear()
            try:
                if self.shared:
                    self._drained = asyncio.get_running_loop().create_future()
                    await self._drained
                yield
            finally:
                self._exclusive = False
                self._drained = None
                self._open.set()
