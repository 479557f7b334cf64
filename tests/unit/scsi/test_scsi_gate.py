from __future__ import annotations

import asyncio

from iscsigw.scsi.gate import WriteGate


async def test_exclusive_waits_for_shared_to_drain() -> None:
    gate = WriteGate()
    gate.shared += 1
    entered = asyncio.Event()

    async def exclusive() -> None:
        async with gate.exclusively():
            entered.set()

    task = asyncio.create_task(exclusive())
    await asyncio.sleep(0.01)
    assert not entered.is_set()
    assert gate.exclusive
    gate.leave_shared()
    await asyncio.wait_for(task, 1)
    assert entered.is_set()
    assert not gate.exclusive


async def test_shared_waits_while_exclusive() -> None:
    gate = WriteGate()
    order: list[str] = []
    release = asyncio.Event()

    async def exclusive() -> None:
        async with gate.exclusively():
            order.append("x-in")
            await release.wait()
            order.append("x-out")

    async def shared() -> None:
        await gate.enter_shared()
        order.append("s")
        gate.leave_shared()

    tx = asyncio.create_task(exclusive())
    await asyncio.sleep(0)
    ts = asyncio.create_task(shared())
    await asyncio.sleep(0.01)
    assert order == ["x-in"]
    release.set()
    await asyncio.gather(tx, ts)
    assert order == ["x-in", "x-out", "s"]
    assert gate.shared == 0
