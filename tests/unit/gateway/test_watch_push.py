"""ConfigWatcher on a store that pushes changes (the RADOS store's watch/notify): no polling."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from iscsigw.config.model import GatewayConfig
from iscsigw.gateway.runtime import ApplyReport
from iscsigw.gateway.watch import ConfigWatcher


class PushStore:
    def __init__(self) -> None:
        self.epoch = 1
        self.loads = 0
        self.callback: Callable[[int | None], None] | None = None
        self.closed = False

    def load(self) -> tuple[GatewayConfig, int]:
        self.loads += 1
        doc = GatewayConfig.empty_dict()
        doc["epoch"] = self.epoch
        return GatewayConfig.from_dict(doc), self.epoch

    def load_dict(self) -> dict[str, Any]:
        return GatewayConfig.empty_dict()

    def commit(self, mutator: Any, expect_epoch: int | None = None) -> int:
        raise NotImplementedError

    def change_token(self) -> object:
        raise AssertionError("a pushed store must not be polled")

    def watch(self, callback: Callable[[int | None], None], *, loop: Any = None) -> Any:
        def deliver(epoch: int | None) -> None:
            loop.call_soon_threadsafe(callback, epoch)

        self.callback = deliver
        store = self

        class Handle:
            def close(self) -> None:
                store.closed = True

        return Handle()


class Runtime:
    def __init__(self) -> None:
        doc = GatewayConfig.empty_dict()
        doc["epoch"] = 1
        self.config = GatewayConfig.from_dict(doc)
        self.applied: list[int] = []

    async def apply_config(self, new: GatewayConfig) -> ApplyReport:
        self.config = new
        self.applied.append(new.epoch)
        return ApplyReport(epoch=new.epoch)


async def _wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_notify_and_rewatch_trigger_a_reread_without_polling() -> None:
    store, runtime = PushStore(), Runtime()
    watcher = ConfigWatcher(store, runtime, interval=3600)  # polling would never fire
    watcher.start()
    try:
        await _wait_for(lambda: store.callback is not None)
        store.epoch = 2
        assert store.callback is not None
        threading.Thread(target=store.callback, args=(2,)).start()  # a librados thread
        await _wait_for(lambda: runtime.applied == [2])
        store.epoch = 3
        store.callback(None)  # the watch was re-established: a notify may have been missed
        await _wait_for(lambda: runtime.applied == [2, 3])
        loads = store.loads
        store.callback(3)  # an old epoch: nothing to do, not even a read
        await asyncio.sleep(0.05)
        assert store.loads == loads and watcher.notifications == 3
    finally:
        await watcher.stop()
    assert store.closed
