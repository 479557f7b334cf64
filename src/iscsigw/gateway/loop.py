"""Which event loop the gateway runs on.

uvloop (libuv) when it is installed: its selector callbacks and call_soon are C, which the
per-PDU path feels directly (see bench/RESULTS.md). ``ISCSIGW_LOOP=asyncio`` forces the
stdlib loop, e.g. to compare.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("iscsigw.server")


def run(main: Coroutine[Any, Any, T]) -> T:
    choice = os.environ.get("ISCSIGW_LOOP", "uvloop")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using the asyncio event loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
