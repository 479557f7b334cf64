"""Keep the running gateway in step with the shared configuration store.

A store that can push changes (``RadosConfigStore.watch``: a RADOS watch on the config object,
told by the writer's notify within milliseconds) is watched, not polled: a notify, or the watch
being re-established after a connection loss (a notify may have been missed), wakes the watcher,
which re-reads the document; as a safety net it also re-reads every ``SAFETY_INTERVAL``
seconds. Other stores are polled (``change_token``: for the file store a ``stat`` of
``gateway.conf``, every 0.2 s by default, so several gateways sharing one ``--data-dir`` see
each other's commits at once). When the document changed it is loaded and handed to
``GatewayRuntime.apply_config``. A gateway that was down simply starts from the latest
document, so changes made meanwhile are applied when it comes back.

``sync()`` is also called directly by the REST API right after it committed a change, so the
gateway that served the request has applied it before it answers. Applies are serialised and
never go backwards (an epoch at or below ``applied_epoch`` is skipped). The outcome of the
last few applies is kept by epoch for ``GET /api/_status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..config.model import GatewayConfig
from ..config.store import ConfigStore, change_token
from ..errors import IscsiGwError
from .runtime import ApplyReport

log = logging.getLogger("iscsigw.watch")

POLL_INTERVAL = 0.2
SAFETY_INTERVAL = 30.0  # pushed stores: re-read this often even without a notify
STOP_TIMEOUT = 3.0  # seconds stop() waits for the store's watch to close
HISTORY = 64


class Applier(Protocol):
    config: GatewayConfig

    async def apply_config(self, new: GatewayConfig) -> ApplyReport: ...


@dataclass
class ApplyOutcome:
    """What applying one epoch did on this gateway (or why it failed)."""

    epoch: int
    ok: bool
    opened: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    sessions_closed: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConfigWatcher:
    def __init__(
        self, store: ConfigStore, runtime: Applier, *, interval: float = POLL_INTERVAL
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.interval = interval
        self.applied_epoch = runtime.config.epoch
        self.failed_epoch = 0
        self.history: OrderedDict[int, ApplyOutcome] = OrderedDict()
        self._lock = asyncio.Lock()
        self._token: object = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._watch: Any = None  # the store's watch handle (has close()) when pushed
        self.notifications = 0  # notifies and re-watches received (for tests and logs)

    def _remember(self, outcome: ApplyOutcome) -> None:
        self.history[outcome.epoch] = outcome
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)

    def outcome_for(self, epoch: int) -> ApplyOutcome | None:
        """The apply that covered ``epoch`` (it may have been folded into a later one)."""
        for e, outcome in self.history.items():
            if e >= epoch:
                return outcome
        return None

    async def sync(self) -> ApplyOutcome | None:
        """Apply the store's latest document if it is newer than what runs; None if not."""
        async with self._lock:
            if self._watch is None:  # polled: remember what this read corresponds to
                self._token = await asyncio.to_thread(change_token, self.store)
            config, epoch = await asyncio.to_thread(self.store.load)
            if epoch <= self.applied_epoch:
                return None
            try:
                report = await self.runtime.apply_config(config)
            except (IscsiGwError, OSError) as exc:
                self.failed_epoch = epoch
                outcome = ApplyOutcome(epoch, False, error=str(exc))
                self._remember(outcome)
                log.error("applying configuration epoch %d failed: %s", epoch, exc)
                return outcome
            self.applied_epoch = epoch
            outcome = ApplyOutcome(
                epoch,
                True,
                opened=list(report.opened),
                resized=list(report.resized),
                closed=list(report.closed),
                sessions_closed=report.sessions_closed,
            )
            self._remember(outcome)
            log.info(
                "applied configuration epoch %d (opened %s, resized %s, closed %s)",
                epoch,
                report.opened or "-",
                report.resized or "-",
                report.closed or "-",
            )
            return outcome

    async def _poll_once(self) -> None:
        token = await asyncio.to_thread(change_token, self.store)
        if token != self._token:
            await self.sync()

    def _notified(self, epoch: int | None) -> None:
        """On the loop: the store says it changed (``epoch``) or its watch was re-established
        (``None``: re-read, a change may have been missed)."""
        self.notifications += 1
        if epoch is None or epoch > self.applied_epoch:
            self._wake.set()

    async def _start_watch(self) -> bool:
        """Register the store's push notifications, when it has them."""
        watch = getattr(self.store, "watch", None)
        if not callable(watch):
            return False
        loop = asyncio.get_running_loop()
        try:
            self._watch = await asyncio.to_thread(watch, self._notified, loop=loop)
        except Exception as exc:
            log.error("cannot watch the configuration (%s); polling it instead", exc)
            return False
        log.info("watching the configuration for changes (notify)")
        return True

    async def run(self) -> None:
        pushed = await self._start_watch()
        if pushed:
            self._wake.set()  # a commit may have landed before the watch was registered
        while True:
            if pushed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), SAFETY_INTERVAL)
                self._wake.clear()
            else:
                await asyncio.sleep(self.interval)
            try:
                if pushed:
                    await self.sync()
                else:
                    await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching; a bad document is reported, not fatal
                log.error("watching the configuration failed: %s", exc)
                if pushed:
                    await asyncio.sleep(1.0)
                    self._wake.set()  # the store is unreachable or the document bad: retry

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="config-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watch, self._watch = self._watch, None
        if watch is not None:
            try:  # an unreachable cluster must not hold the shutdown up
                await asyncio.wait_for(asyncio.to_thread(watch.close), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("closing the configuration watch timed out; going on")


__all__ = ["POLL_INTERVAL", "ApplyOutcome", "ConfigWatcher"]
