"""Which event loop the gateway runs on.

The stdlib asyncio loop by default. ``ISCSIGW_LOOP=uvloop`` runs on uvloop (libuv) when it is
installed; in measurements so far (bench/micro_datapath.py, bench/run.py on a loaded 2-core
machine) the difference was within the noise, so it is not a dependency.
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
    choice = os.environ.get("ISCSIGW_LOOP", "asyncio")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using the asyncio event loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
