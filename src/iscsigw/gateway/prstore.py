"""LU state shared by every gateway that exports a LU: persistent reservations, the SCSI-2
reservation, resets, mode pages and SANITIZE, kept next to the shared configuration.

Why not inside ``gateway.conf``: every commit there bumps the configuration epoch and makes
every gateway re-apply the whole document, and PR commits must be cheap and never conflict
with configuration edits. So each LU gets its own small files in ``DATA_DIR/lu-state/``
(the directory that holds the shared ``gateway.conf``), named after the disk key and a hash of
its WWN (a disk deleted and created again does not inherit old registrations):

``<name>.json``
    The state document, replaced atomically (temporary file, fsync, rename, directory fsync;
    APTPL demands that a committed registration survives a power loss). ``version`` grows by
    one per commit; ``pr`` is the ``PrState`` (its own ``version`` is the PR compare-and-swap
    token), ``pr_log`` the notices of the last commits (unit attentions and PREEMPT AND ABORT
    for the nexuses they name, on whichever gateway serves them), ``scsi2`` the SCSI-2
    reservation holder, ``resets`` a LU reset counter, ``mode`` the shared mode page values,
    ``sanitize`` a running or failed SANITIZE.
``<name>.seq``
    One page, ``mmap``-ed ``MAP_SHARED`` by every gateway on the host; bytes 0-7 hold the
    version of the last committed document and are written after the document. Every command
    compares these 8 bytes with the version it last absorbed (a memory read), so a change
    committed through gateway A before a command reaches gateway B is always seen by that
    command: a reservation taken through A blocks a write through B at once, and a LUN reset
    through A is a unit attention on B's next command. Commits are serialised with ``flock``
    on this file (plus a thread lock inside one process) and compare-and-swap on the PR
    version inside the lock.
``<name>.alive``
    Every gateway that has the LU open holds a shared ``flock`` on it. A gateway that gets it
    exclusively while opening the LU knows no other gateway has it open: a cold start, where
    ``PrState.after_power_loss()`` drops everything that was not registered with APTPL.

A poll task (``POLL_INTERVAL``) also checks every LU so that PREEMPT AND ABORT reaches tasks
of idle sessions on the other gateways; a ``stat`` of the document covers gateways whose
``mmap`` is not coherent with the writer's (another host on a shared filesystem).

The files must live on a filesystem all gateways see. With the RADOS configuration store the
gateways may have separate data directories; then this state is per gateway (as PR state was
before) until a RADOS object per LU with watch/notify implements the same ``LuCluster`` and
``PrStore`` protocols.

``FileRangeLock`` is the host-wide lock that makes COMPARE AND WRITE on a file backend
atomic across gateway processes (open file description locks, ``F_OFD_SETLK``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import re
import struct
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..scsi.cluster import ClusterMember
from ..scsi.pr import Listener, PrState

log = logging.getLogger("iscsigw.prstore")

STATE_DIR = "lu-state"
POLL_INTERVAL = 0.1
SEQ_SIZE = 4096
PR_LOG = 64  # notices of this many PR commits are kept for gateways that look late
_SEQ = struct.Struct("<Q")

Doc = dict[str, Any]


def state_name(disk_key: str, stable_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", disk_key)
    return f"{safe}.{hashlib.sha256(stable_id.encode()).hexdigest()[:12]}"


def _empty_doc() -> Doc:
    pr = PrState().to_dict()
    pr.pop("notices", None)
    return {"version": 0, "pr": pr, "pr_log": [], "scsi2": None, "resets": 0}


class FileLuState:
    """``PrStore`` and ``LuCluster`` of one LU over the files described in the module doc."""

    def __init__(self, directory: Path, name: str, gateway: str) -> None:
        self.directory = directory
        self.doc_path = directory / f"{name}.json"
        self.seq_path = directory / f"{name}.seq"
        self.alive_path = directory / f"{name}.alive"
        self.gateway = gateway
        self.cold_start = False
        self._tlock = threading.Lock()
        self._mm: mmap.mmap | None = None
        self._seq_fd = -1
        self._alive_fd = -1
        self._seen = b""
        self._stat: tuple[int, int, int] | None = None
        self._version = -1
        self._pr = PrState()
        self._listeners: list[Listener] = []
        self._member: ClusterMember | None = None
        self._initial: Doc | None = None
        self._resets = 0
        self._own_resets: set[int] = set()
        self._mode_seq = 0
        self._own_modes: set[int] = set()
        self._sanitize: str | None = None
        self._holder: str | None = None
        self._deferred: list[PrState] = []
        self.on_close: Callable[[FileLuState], None] | None = None

    # -- files --------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating) the files and detect a cold start. Blocking: call in a thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.seq_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SEQ_SIZE:
                os.ftruncate(fd, SEQ_SIZE)
            self._mm = mmap.mmap(fd, SEQ_SIZE)
            self._alive_fd = os.open(self.alive_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            os.close(fd)
            raise
        self._seq_fd = fd
        with self._locked():
            doc = self._read()
            try:
                fcntl.flock(self._alive_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.cold_start = True
            except BlockingIOError:
                self.cold_start = False
            changed = False
            if self.cold_start:
                # No gateway had the LU open: what a power loss leaves (SPC-4 §5.13.5).
                pr = PrState.from_dict(doc["pr"]).after_power_loss()
                doc["pr"] = _pr_dict(pr)
                doc["pr_log"] = []
                doc["scsi2"] = None
                doc["sanitize"] = None
                doc.pop("mode", None)
                changed = True
            elif (doc.get("scsi2") or {}).get("gateway") == self.gateway:
                doc["scsi2"] = None  # held through an earlier run of this gateway
                changed = True
            if changed:
                doc["version"] += 1
                self._write(doc)
            # Converting while holding the commit lock: no other opener can slip in between.
            fcntl.flock(self._alive_fd, fcntl.LOCK_SH)
        self._initial = doc
        self._baseline(doc)

    def _baseline(self, doc: Doc) -> None:
        self._version = int(doc["version"])
        self._seen = self._mm[0:8] if self._mm is not None else b""
        self._pr = PrState.from_dict(doc["pr"])
        self._resets = int(doc.get("resets", 0))
        self._mode_seq = int((doc.get("mode") or {}).get("seq", 0))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._tlock:
            fcntl.flock(self._seq_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._seq_fd, fcntl.LOCK_UN)

    def _read(self) -> Doc:
        try:
            raw = self.doc_path.read_bytes()
        except FileNotFoundError:
            return _empty_doc()
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
            raise ValueError(f"{self.doc_path}: not a LU state document")
        doc.setdefault("pr", _empty_doc()["pr"])
        return doc

    def _write(self, doc: Doc) -> None:
        data = json.dumps(doc, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.doc_path.name}.", dir=self.directory)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.doc_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self._mm is not None:
            self._mm[0:8] = _SEQ.pack(doc["version"])

    def _commit_sync(self, mutate: Callable[[Doc], bool]) -> tuple[bool, Doc]:
        with self._locked():
            doc = self._read()
            if not mutate(doc):
                return False, doc
            doc["version"] += 1
            self._write(doc)
            return True, doc

    async def _commit(self, mutate: Callable[[Doc], bool]) -> bool:
        ok, doc = await asyncio.to_thread(self._commit_sync, mutate)
        self._absorb(doc, defer_aborts=False)
        return ok

    def close(self) -> None:
        hook, self.on_close = self.on_close, None
        if hook is not None:
            hook(self)
        self._member = None
        self._listeners.clear()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        for fd in (self._seq_fd, self._alive_fd):
            if fd >= 0:
                os.close(fd)  # drops the shared "alive" lock
        self._seq_fd = self._alive_fd = -1

    # -- picking up changes ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Called for every command: 8 bytes compared unless another gateway committed."""
        mm = self._mm
        if mm is None or mm[0:8] == self._seen:
            return
        self._reload(defer_aborts=True)

    def _reload(self, *, defer_aborts: bool) -> None:
        mm = self._mm
        if mm is None:
            return
        seen = mm[0:8]
        try:
            doc = self._read()
        except (OSError, ValueError) as exc:
            log.error("reading %s failed: %s", self.doc_path, exc)
            return
        self._seen = seen
        self._absorb(doc, defer_aborts=defer_aborts)

    def poll(self) -> None:
        """The periodic check: changes, and PREEMPT AND ABORT deferred by ``refresh``."""
        if self._mm is None:
            return
        try:
            st = os.stat(self.doc_path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._mm[0:8] != self._seen or stamp != self._stat:
            self._stat = stamp
            self._reload(defer_aborts=False)
        deferred, self._deferred = self._deferred, []
        for state in deferred:
            self._notify(state)

    def _absorb(self, doc: Doc, *, defer_aborts: bool) -> None:
        """Deliver what changed in ``doc`` since the last document absorbed (event loop)."""
        version = int(doc["version"])
        if version <= self._version:
            return
        self._version = version
        pr = PrState.from_dict(doc["pr"])
        if pr.version != self._pr.version:
            old = self._pr.version
            self._pr = pr
            entries = [e for e in doc.get("pr_log", ()) if int(e["version"]) > old]
            for entry in entries:
                notices = PrState.from_dict({"notices": entry["notices"]}).notices
                if defer_aborts and any(n.abort for n in notices):
                    # The command that noticed this change may be one of the tasks to abort;
                    # the aborts wait for the next poll (the UA reaches that command now).
                    self._deferred.append(
                        replace(pr, notices=tuple(replace(n, code=None) for n in notices))
                    )
                    notices = tuple(replace(n, abort=False) for n in notices)
                self._notify(replace(pr, notices=notices))
            if not entries:
                self._notify(pr)
        member = self._member
        resets = int(doc.get("resets", 0))
        if resets > self._resets:
            mine = set(range(self._resets + 1, resets + 1))
            remote = bool(mine - self._own_resets)
            self._own_resets -= mine
            self._resets = resets
            if remote and member is not None:
                member.cluster_reset()
        holder = (doc.get("scsi2") or {}).get("holder")
        if member is not None:
            member.cluster_reservation(holder)
        self._holder = holder
        mode = doc.get("mode")
        if mode and int(mode.get("seq", 0)) > self._mode_seq:
            seqs = set(range(self._mode_seq + 1, int(mode["seq"]) + 1))
            remote = bool(seqs - self._own_modes)
            self._own_modes -= seqs
            self._mode_seq = int(mode["seq"])
            if member is not None:
                member.cluster_mode(
                    bool(mode["wce"]), bool(mode["d_sense"]), bool(mode["swp"]), changed=remote
                )
        self._deliver_sanitize(doc, member)

    def _deliver_sanitize(self, doc: Doc, member: ClusterMember | None) -> None:
        san = doc.get("sanitize") or {}
        state = san.get("state")
        if state == "running" and san.get("gateway") == self.gateway:
            state = None  # this gateway runs it and knows
        if state != self._sanitize:
            self._sanitize = state
            if member is not None:
                member.cluster_sanitize(state)

    def _notify(self, state: PrState) -> None:
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("PR state listener failed")

    # -- PrStore --------------------------------------------------------------------------------

    @property
    def current(self) -> PrState:
        return self._pr

    async def load(self) -> PrState:
        self.refresh()
        return self._pr

    async def commit(self, expected_version: int, new: PrState) -> bool:
        def mutate(doc: Doc) -> bool:
            if int(doc["pr"].get("version", 0)) != expected_version:
                return False
            doc["pr"] = _pr_dict(new)
            entry = {"version": new.version, "notices": new.to_dict()["notices"]}
            doc["pr_log"] = [*doc.get("pr_log", ())[-(PR_LOG - 1) :], entry]
            return True

        return await self._commit(mutate)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # -- LuCluster ------------------------------------------------------------------------------

    def attach(self, member: ClusterMember) -> None:
        self._member = member
        doc, self._initial = self._initial, None
        if doc is None:
            return
        holder = (doc.get("scsi2") or {}).get("holder")
        self._holder = holder
        member.cluster_reservation(holder)
        mode = doc.get("mode")
        if mode:
            member.cluster_mode(
                bool(mode["wce"]), bool(mode["d_sense"]), bool(mode["swp"]), changed=False
            )
        self._deliver_sanitize(doc, member)

    async def reserve(self, key: str) -> bool:
        held = False

        def mutate(doc: Doc) -> bool:
            nonlocal held
            current = (doc.get("scsi2") or {}).get("holder")
            held = current in (None, key)
            if current is not None:
                return False
            doc["scsi2"] = {"holder": key, "gateway": self.gateway}
            return True

        await self._commit(mutate)
        return held

    async def release(self, key: str) -> None:
        def mutate(doc: Doc) -> bool:
            if (doc.get("scsi2") or {}).get("holder") != key:
                return False
            doc["scsi2"] = None
            return True

        await self._commit(mutate)

    async def reset(self) -> None:
        def mutate(doc: Doc) -> bool:
            doc["resets"] = int(doc.get("resets", 0)) + 1
            self._own_resets.add(doc["resets"])
            doc["scsi2"] = None
            return True

        await self._commit(mutate)

    async def set_mode(self, wce: bool, d_sense: bool, swp: bool) -> None:
        def mutate(doc: Doc) -> bool:
            seq = int((doc.get("mode") or {}).get("seq", 0)) + 1
            self._own_modes.add(seq)
            doc["mode"] = {"wce": wce, "d_sense": d_sense, "swp": swp, "seq": seq}
            return True

        await self._commit(mutate)

    async def set_sanitize(self, state: str | None) -> None:
        def mutate(doc: Doc) -> bool:
            doc["sanitize"] = None if state is None else {"state": state, "gateway": self.gateway}
            return True

        await self._commit(mutate)


def _pr_dict(state: PrState) -> Doc:
    d = state.to_dict()
    d.pop("notices", None)
    return d


class LuStateDirectory:
    """The ``FileLuState`` of every LU one gateway has open, and their poll task."""

    def __init__(self, directory: Path, gateway: str, *, interval: float = POLL_INTERVAL) -> None:
        self.directory = directory
        self.gateway = gateway
        self.interval = interval
        self._states: set[FileLuState] = set()
        self._task: asyncio.Task[None] | None = None

    async def open(self, disk_key: str, stable_id: str) -> FileLuState:
        state = FileLuState(self.directory, state_name(disk_key, stable_id), self.gateway)
        await asyncio.to_thread(state.open)
        if state.cold_start:
            log.info("%s: cold start of the shared LU state (APTPL registrations kept)", disk_key)
        self._states.add(state)
        state.on_close = self._states.discard
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lu-state-poll")
        return state

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for state in list(self._states):
                try:
                    state.poll()
                except Exception:
                    log.exception("polling %s failed", state.doc_path)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for state in list(self._states):
            state.close()


# -- COMPARE AND WRITE across processes ----------------------------------------------------------

_FLOCK = struct.Struct("hhqqi4x")  # struct flock (Linux, 64-bit off_t)


class FileRangeLock:
    """``CawLock`` for a file backend: an exclusive OFD byte-range lock on the backing file
    while one COMPARE AND WRITE reads, compares and writes. Gateway processes on one host (or
    on a filesystem with coherent POSIX locks) exclude each other; within a process the LU
    write gate already serialises them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __call__(self, offset: int, length: int) -> contextlib.AbstractAsyncContextManager[None]:
        return self._hold(offset, length)

    @asynccontextmanager
    async def _hold(self, offset: int, length: int) -> AsyncIterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, length, 0)
            delay = 0.0002
            while True:
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.005)
            yield
        finally:
            os.close(fd)  # releases the lock


__all__ = [
    "POLL_INTERVAL",
    "STATE_DIR",
    "FileLuState",
    "FileRangeLock",
    "LuStateDirectory",
    "state_name",
]
