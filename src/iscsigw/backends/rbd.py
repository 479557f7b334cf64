"""A LUN backed by a Ceph RBD image, through librbd's Python bindings.

This is the only module of iscsigw that imports ``rados`` and ``rbd`` (Debian's
``python3-rados``/``python3-rbd``); the registry imports it only when an ``rbd`` disk is opened,
so the gateway runs without Ceph installed.

I/O path
--------
Every datapath call is one librbd *aio* request. Its completion callback runs on a librbd
thread; it only hands the return value to the event loop with ``loop.call_soon_threadsafe``,
which resolves an asyncio future. No thread is started or borrowed per request: the event loop
submits (``rbd_aio_*`` returns at once) and librbd's own threads complete. The blocking calls
(connect, open, lock acquisition, resize, extent walks, close) run in ``asyncio.to_thread``.

Each opened image has its own cluster connection (``rados.Rados``), as tcmu-runner does: when
another gateway breaks this image's lock, Ceph blocklists that connection's address, and only
this image is fenced, not every LUN of the gateway.

Durability: the librbd cache is off by default (``rbd_cache=false``, as tcmu-runner sets it).
A completed write is then on the OSDs, so a gateway crash or a lock takeover loses nothing that
was acknowledged; ``flush`` and FUA cost one ``aio_flush`` round trip at most. With
``cache=True`` (write-back), FUA writes are followed by a flush before they complete.

Errors: librbd's errno values are translated here (``_translate``): ENOENT → BackendNotFound,
ENOSPC/EDQUOT → BackendNoSpace, ESHUTDOWN (108, which is also EBLOCKLISTED) → BackendFenced for
good (the connection is blocklisted; every later call fails fast with BackendFenced without
touching the cluster until ``reconnect()``), EROFS → BackendFenced (another client holds the
exclusive lock), everything else BackendError.

Exclusive lock and fencing (HA)
-------------------------------
``open_rbd(..., exclusive=True)`` (the default) acquires the image's exclusive lock with
``lock_acquire(RBD_LOCK_MODE_EXCLUSIVE)``: from then on librbd refuses to hand the lock to other
clients, whose writes fail with EROFS. Another gateway takes the image over with
``takeover=True`` (or ``RbdBackend.acquire_lock(break_lock=True)``): it breaks the lock, which
blocklists the previous owner, then acquires it. The previous owner's in-flight and later
writes fail with ESHUTDOWN and never reach the image.

COMPARE AND WRITE
-----------------
librbd's compare-and-write is atomic on the OSD, across gateways. Ceph 16's Python bindings do
not expose it, so it is called through ``ctypes`` on librbd's C API with the bindings' own image
handle (found and checked at open; see ``_NativeCaw``). librbd 16 accepts it only within one
512-byte sector; other requests (e.g. 4096-byte blocks) are done as read, compare, write: atomic
against this gateway's own I/O and, while this gateway holds the exclusive lock, against every
other client too (their writes are refused).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import rados
import rbd

from .._types import Buffer, Received, contiguous
from ..errors import BackendError, BackendFenced, BackendNoSpace, BackendNotFound, ConfigError
from .base import Extent, extents_between, first_mismatch

log = logging.getLogger(__name__)

_T = TypeVar("_T")

ESHUTDOWN = errno.ESHUTDOWN  # librados' EBLOCKLISTED is ESHUTDOWN (108) on Linux
_NOT_FOUND = {errno.ENOENT}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}

# Features of new images: what ceph-iscsi sets (exclusive-lock is required for HA).
DEFAULT_FEATURES = (
    rbd.RBD_FEATURE_LAYERING
    | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
    | rbd.RBD_FEATURE_OBJECT_MAP
    | rbd.RBD_FEATURE_FAST_DIFF
    | rbd.RBD_FEATURE_DEEP_FLATTEN
)


# ---------------------------------------------------------------------------------------------
# errors


def _errno_of(exc: BaseException) -> int:
    value = getattr(exc, "errno", None)
    return abs(value) if isinstance(value, int) else 0


def _translate_errno(err: int, detail: str) -> BackendError:
    err = abs(err)
    if err in _NOT_FOUND:
        return BackendNotFound(detail)
    if err in _NO_SPACE:
        return BackendNoSpace(detail)
    if err == ESHUTDOWN:
        return BackendFenced(f"{detail}: this client was blocklisted (the lock was taken over)")
    if err == errno.EROFS:
        return BackendFenced(f"{detail}: another client holds the exclusive lock")
    return BackendError(f"{detail}: {os.strerror(err) if err else 'error'}")


def _translate(exc: BaseException, detail: str) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, rbd.ImageNotFound | rados.ObjectNotFound):
        return BackendNotFound(f"{detail}: not found")
    err = _errno_of(exc)
    if err:
        return _translate_errno(err, detail)
    return BackendError(f"{detail}: {exc}")


# ---------------------------------------------------------------------------------------------
# cluster connections


@dataclass(frozen=True)
class CephSettings:
    """How to reach the cluster: ``iscsi-gateway.cfg``'s cluster_name / cluster_client_name.

    ``conf`` defaults to ``$CEPH_CONF``, else ``/etc/ceph/<cluster>.conf``; the keyring is
    whatever that file names for ``client`` (as with the ``ceph`` CLI). ``options`` are extra
    librados/librbd settings (``conf_set``).
    """

    conf: str | None = None
    client: str = "client.admin"
    cluster: str = "ceph"
    connect_timeout: int = 15
    options: dict[str, str] = field(default_factory=dict)

    @property
    def conf_path(self) -> str:
        return self.conf or os.environ.get("CEPH_CONF") or f"/etc/ceph/{self.cluster}.conf"


def connect(settings: CephSettings, **options: str) -> Any:
    """A connected ``rados.Rados`` (blocking; call it in a thread from the event loop)."""
    name = settings.client if "." in settings.client else f"client.{settings.client}"
    conf = settings.conf_path
    if not os.path.exists(conf):
        raise ConfigError(f"Ceph configuration {conf} not found (set CEPH_CONF or conf=)")
    try:
        cluster = rados.Rados(name=name, clustername=settings.cluster, conffile=conf)
        cluster.conf_parse_env()
        timeout = str(settings.connect_timeout)
        cluster.conf_set("client_mount_timeout", timeout)
        cluster.conf_set("rados_mon_op_timeout", timeout)
        for key, value in {**settings.options, **options}.items():
            cluster.conf_set(key, value)
        cluster.connect(timeout=settings.connect_timeout)
    except rados.Error as exc:
        raise _translate(exc, f"connecting to Ceph as {name} with {conf}")
    return cluster


def _shutdown(cluster: Any, *handles: Any) -> None:
    """Close ``handles`` (images, ioctxs) then the connection, ignoring errors (blocking)."""
    for h in handles:
        if h is None:
            continue
        try:
            h.close()
        except Exception as exc:  # closing after fencing/loss: nothing left to save
            log.debug("closing %r: %s", h, exc)
    try:
        cluster.shutdown()
    except Exception as exc:
        log.debug("rados shutdown: %s", exc)


# ---------------------------------------------------------------------------------------------
# librbd's compare-and-write through ctypes

_CAW_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _NativeCaw:
    """``rbd_aio_compare_and_write`` on the image handle owned by a bindings ``rbd.Image``.

    The bindings keep ``rbd_image_t`` as the first C field of ``Image`` (after the object
    header) and the ``Ioctx`` object passed at open three fields later. Both are checked at
    open: the Ioctx slot must hold exactly that object and ``rbd_get_size`` through the handle
    must report the image's size, else native compare-and-write is not used.
    """

    _lib: Any = None
    _lib_loaded = False
    _lock = threading.Lock()
    _tokens = itertools.count(1)
    # token -> (loop, future, completion, keep-alive buffers)
    _pending: dict[
        int,
        tuple[
            asyncio.AbstractEventLoop,
            asyncio.Future[tuple[int, int]],
            ctypes.c_void_p,
            tuple[object, ...],
        ],
    ] = {}

    @classmethod
    def lib(cls) -> Any:
        with cls._lock:
            if not cls._lib_loaded:
                cls._lib_loaded = True
                try:
                    lib = ctypes.CDLL(ctypes.util.find_library("rbd") or "librbd.so.1")
                    lib.rbd_aio_create_completion.argtypes = [
                        ctypes.c_void_p,
                        _CAW_CB,
                        ctypes.POINTER(ctypes.c_void_p),
                    ]
                    lib.rbd_aio_create_completion.restype = ctypes.c_int
                    lib.rbd_aio_compare_and_write.argtypes = [
                        ctypes.c_void_p,
                        ctypes.c_uint64,
                        ctypes.c_size_t,
                        ctypes.c_char_p,
                        ctypes.c_char_p,
                        ctypes.c_void_p,
                        ctypes.POINTER(ctypes.c_uint64),
                        ctypes.c_int,
                    ]
                    lib.rbd_aio_compare_and_write.restype = ctypes.c_int
                    lib.rbd_aio_get_return_value.argtypes = [ctypes.c_void_p]
                    lib.rbd_aio_get_return_value.restype = ctypes.c_ssize_t
                    lib.rbd_aio_release.argtypes = [ctypes.c_void_p]
                    lib.rbd_aio_release.restype = None
                    lib.rbd_get_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
                    lib.rbd_get_size.restype = ctypes.c_int
                    _declare_event_api(lib)
                    cls._lib = lib
                except (OSError, AttributeError) as exc:
                    log.info("librbd C API not usable for compare-and-write: %s", exc)
            return cls._lib

    @classmethod
    def handle(cls, image: Any, ioctx: Any) -> int | None:
        """The ``rbd_image_t`` of ``image`` if it can be found and verified, else None."""
        lib = cls.lib()
        if lib is None or type(image).__basicsize__ < 48:
            return None
        base = id(image)

        def word(off: int) -> int:
            return int.from_bytes(ctypes.string_at(base + off, 8), "little")

        if ctypes.sizeof(ctypes.c_void_p) != 8 or word(40) != id(ioctx):
            return None
        handle = word(16)
        if handle == 0 or word(24) & 0xFFFFFFFF:  # null handle or `closed` set
            return None
        size = ctypes.c_uint64()
        if lib.rbd_get_size(ctypes.c_void_p(handle), ctypes.byref(size)) != 0:
            return None
        return handle if size.value == image.size() else None

    @classmethod
    def submit(
        cls, handle: int, offset: int, compare: bytes, data: bytes
    ) -> asyncio.Future[tuple[int, int]]:
        """Start the request; the future yields (return value, mismatch offset)."""
        lib = cls._lib
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()
        token = next(cls._tokens)
        completion = ctypes.c_void_p()
        mismatch = ctypes.c_uint64(0)
        if (
            lib.rbd_aio_create_completion(
                ctypes.c_void_p(token), _CAW_DONE, ctypes.byref(completion)
            )
            != 0
        ):
            raise BackendError("compare-and-write: cannot create a librbd completion")
        cls._pending[token] = (loop, fut, completion, (compare, data, mismatch))
        r = lib.rbd_aio_compare_and_write(
            ctypes.c_void_p(handle),
            offset,
            len(data),
            compare,
            data,
            completion,
            ctypes.byref(mismatch),
            0,
        )
        if r < 0:
            cls._pending.pop(token, None)
            lib.rbd_aio_release(completion)
            raise _translate_errno(r, "compare-and-write")
        return fut


def _caw_done(comp: int | None, arg: int | None) -> None:
    """librbd thread (ctypes holds the GIL): hand the result to the loop, nothing else."""
    entry = _NativeCaw._pending.pop(arg or 0, None)
    if entry is None:
        return
    loop, fut, completion, keep = entry
    lib = _NativeCaw._lib
    rv = int(lib.rbd_aio_get_return_value(completion))
    lib.rbd_aio_release(completion)
    mismatch = cast(ctypes.c_uint64, keep[2]).value
    try:
        loop.call_soon_threadsafe(_settle, fut, (rv, mismatch))
    except RuntimeError:  # loop closed meanwhile
        pass


_CAW_DONE = _CAW_CB(_caw_done)  # one C callback for all requests, alive for the process


def _declare_event_api(lib: Any) -> None:
    """Prototypes of the calls ``_EventQueue`` and the native datapath make."""
    vp, u64, sz, i = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int
    protos: dict[str, tuple[list[Any], Any]] = {
        "rbd_set_image_notification": ([vp, i, i], i),
        "rbd_poll_io_events": ([vp, ctypes.POINTER(vp), i], i),
        "rbd_aio_read": ([vp, u64, sz, vp, vp], i),
        "rbd_aio_write": ([vp, u64, sz, ctypes.c_char_p, vp], i),
        "rbd_aio_flush": ([vp, vp], i),
        "rbd_aio_discard": ([vp, u64, u64, vp], i),
        "rbd_aio_write_zeroes": ([vp, u64, sz, vp, i, i], i),
    }
    for name, (args, res) in protos.items():
        fn = getattr(lib, name, None)
        if fn is None:
            continue  # an old librbd: the feature needing it stays off
        fn.argtypes = args
        fn.restype = res


def _forget(inflight: set[asyncio.Future[Any]], _completion: Any, fut: asyncio.Future[Any]) -> None:
    inflight.discard(fut)


def _settle(fut: asyncio.Future[_T], value: _T) -> None:
    if not fut.done():
        fut.set_result(value)


class _EventQueue:
    """librbd completions of one image, harvested on the event loop.

    ``rbd_set_image_notification`` makes librbd signal an eventfd as each request completes
    (completions created without a callback); the loop reads it and collects the finished
    completions with ``rbd_poll_io_events``. No librbd thread ever runs Python or waits for
    the GIL (the bindings' callbacks do both, through a work-queue hop, per I/O), and every
    completion that finished meanwhile is settled in one wakeup. Every asynchronous request
    on the image must then go through here: librbd queues each completed request for the
    poll, whoever made it.
    """

    BATCH = 64

    def __init__(self, lib: Any, handle: int, loop: asyncio.AbstractEventLoop) -> None:
        self._lib = lib
        self._handle = ctypes.c_void_p(handle)
        self._loop = loop
        # completion -> (what to call with the return value, what must stay alive until then)
        self._pending: dict[int, tuple[Callable[[int], None], object]] = {}
        self._idle: asyncio.Future[None] | None = None
        self._comps = (ctypes.c_void_p * self.BATCH)()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        r = lib.rbd_set_image_notification(self._handle, self._efd, _EVENT_TYPE_EVENTFD)
        if r < 0:
            os.close(self._efd)
            raise _translate_errno(r, "rbd_set_image_notification")
        loop.add_reader(self._efd, self._drain)

    @classmethod
    def create(cls, handle: int | None) -> _EventQueue | None:
        lib = _NativeCaw.lib()
        if handle is None or lib is None or not hasattr(lib, "rbd_poll_io_events"):
            return None
        try:
            return cls(lib, handle, asyncio.get_running_loop())
        except (OSError, BackendError) as exc:
            log.info("librbd event notification unavailable (%s); using callbacks", exc)
            return None

    def submit(self, start: Callable[[ctypes.c_void_p], int], keep: object) -> asyncio.Future[int]:
        """Create a completion, run ``start(completion)`` (an ``rbd_aio_*`` call), and return
        a future for the request's return value. ``keep`` stays referenced until then."""
        fut: asyncio.Future[int] = self._loop.create_future()
        self.start(start, keep, functools.partial(_settle, fut))
        return fut

    def start(
        self, start: Callable[[ctypes.c_void_p], int], keep: object, done: Callable[[int], None]
    ) -> None:
        """Like ``submit``, but ``done(return value)`` is called on the loop instead."""
        lib = self._lib
        comp = ctypes.c_void_p()
        if lib.rbd_aio_create_completion(None, _NO_CALLBACK, ctypes.byref(comp)) < 0:
            raise BackendError("cannot create a librbd completion")
        r = start(comp)
        if r < 0:
            lib.rbd_aio_release(comp)
            raise _translate_errno(r, "submitting a request")
        self._pending[comp.value or 0] = (done, keep)

    async def wait_idle(self) -> None:
        """Until every request started here has completed."""
        while self._pending:
            if self._idle is None or self._idle.done():
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)

    def _drain(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except (BlockingIOError, InterruptedError):
            pass
        lib = self._lib
        comps = self._comps
        pending = self._pending
        while True:
            n = lib.rbd_poll_io_events(self._handle, comps, self.BATCH)
            for i in range(max(n, 0)):
                comp = comps[i]
                rv = int(lib.rbd_aio_get_return_value(comp))
                lib.rbd_aio_release(comp)
                entry = pending.pop(comp or 0, None)
                if entry is not None:
                    try:
                        entry[0](rv)
                    except Exception:  # a completion handler must not stop the others
                        log.exception("librbd completion handler failed")
            if n < self.BATCH:
                break
        idle = self._idle
        if not pending and idle is not None and not idle.done():
            idle.set_result(None)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        """Stop listening; call once nothing is pending (the image is closed right after)."""
        if self._efd >= 0:
            self._loop.remove_reader(self._efd)
            os.close(self._efd)
            self._efd = -1


_EVENT_TYPE_EVENTFD = 2  # librbd.h: EVENT_TYPE_EVENTFD
_NO_CALLBACK = _CAW_CB()  # a NULL rbd_callback_t: the completion is polled


# ---------------------------------------------------------------------------------------------
# the backend


class RbdBackend:
    """A ``BlockBackend`` (and ``SupportsCompareAndWrite``) over one RBD image."""

    def __init__(
        self,
        settings: CephSettings,
        pool: str,
        name: str,
        *,
        namespace: str = "",
        block_size: int = 512,
        cache: bool = False,
        exclusive: bool = True,
        osd_op_timeout: int = 30,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.name = name
        self.namespace = namespace
        self._block_size = block_size
        self._cache = cache
        self.exclusive = exclusive
        self._osd_op_timeout = osd_op_timeout
        self._cluster: Any = None
        self._ioctx: Any = None
        self._image: Any = None
        self._size = 0
        self._object_size = 4 << 20
        self._caw_handle: int | None = None
        self._events: _EventQueue | None = None  # the native datapath (see _EventQueue)
        self._caw_lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._fenced: str | None = None  # sticky: set when the connection is blocklisted
        self._closed = False

    def __repr__(self) -> str:
        return f"<RbdBackend {self.spec}>"

    @property
    def spec(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.pool}/{ns}{self.name}"

    # -- properties ---------------------------------------------------------------------------

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def size(self) -> int:
        return self._size

    @property
    def discard_zeroes(self) -> bool:
        # rbd_skip_partial_discard=false is set on our connection: partial discards zero.
        return True

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    @property
    def native_compare_and_write(self) -> bool:
        return self._caw_handle is not None

    # -- opening ------------------------------------------------------------------------------

    def _open_blocking(
        self, *, size: int | None, create: bool, data_pool: str | None, takeover: bool
    ) -> None:
        cluster = connect(
            self.settings,
            rbd_cache="true" if self._cache else "false",
            rbd_skip_partial_discard="false",
            rados_osd_op_timeout=str(self._osd_op_timeout),
        )
        ioctx = image = None
        try:
            try:
                ioctx = cluster.open_ioctx(self.pool)
            except rados.ObjectNotFound:
                raise BackendNotFound(f"{self.spec}: pool {self.pool!r} does not exist")
            if self.namespace:
                ioctx.set_namespace(self.namespace)
            try:
                image = rbd.Image(ioctx, self.name)
            except rbd.ImageNotFound:
                if not create:
                    raise BackendNotFound(f"{self.spec}: RBD image does not exist")
                if not size:
                    raise ConfigError(f"{self.spec}: cannot create an RBD image without a size")
                _create_image(ioctx, self.name, size, data_pool=data_pool)
                log.info("created RBD image %s (%d bytes)", self.spec, size)
                image = rbd.Image(ioctx, self.name)
            cur = image.size()
            if size is not None and cur < size:
                image.resize(size)  # a grow that did not reach the image (like the file backend)
                cur = size
            self._object_size = int(image.stat().get("obj_size", 4 << 20))
            self._cluster, self._ioctx, self._image = cluster, ioctx, image
            self._size = cur - cur % self._block_size
            if self._size == 0:
                raise BackendError(
                    f"{self.spec}: image smaller than one {self._block_size}-byte block"
                )
            if self.exclusive:
                self._acquire_blocking(takeover)
            self._caw_handle = _NativeCaw.handle(image, ioctx)
            if self._caw_handle is None:
                log.info(
                    "%s: librbd compare-and-write unavailable; using read-compare-write", self.spec
                )
        except BaseException as exc:
            self._cluster = self._ioctx = self._image = None
            _shutdown(cluster, image, ioctx)
            if isinstance(exc, Exception) and not isinstance(exc, BackendError | ConfigError):
                raise _translate(exc, f"opening {self.spec}")
            raise

    def _acquire_blocking(self, takeover: bool) -> None:
        image = self._image
        try:
            image.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
            return
        except rbd.ReadOnlyImage:
            if not takeover:
                raise BackendFenced(
                    f"{self.spec}: another client holds the exclusive lock "
                    f"({', '.join(self._owners_blocking())}); take it over to break it"
                )
        except Exception as exc:
            raise _translate(exc, f"{self.spec}: acquiring the exclusive lock")
        for owner in self._owners_blocking():
            log.warning(
                "%s: breaking the exclusive lock of %s (it gets blocklisted)", self.spec, owner
            )
            try:
                image.lock_break(rbd.RBD_LOCK_MODE_EXCLUSIVE, owner)
            except Exception as exc:
                if _errno_of(exc) not in (errno.ENOENT,):  # already released
                    raise _translate(exc, f"{self.spec}: breaking the lock of {owner}")
        try:
            image.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
        except Exception as exc:
            raise _translate(exc, f"{self.spec}: acquiring the exclusive lock after breaking it")

    def _owners_blocking(self) -> list[str]:
        try:
            return [str(o["owner"]) for o in self._image.lock_get_owners()]
        except Exception as exc:
            raise _translate(exc, f"{self.spec}: listing lock owners")

    async def acquire_lock(self, *, break_lock: bool = False) -> None:
        """Take the exclusive lock; with ``break_lock`` break (and blocklist) its holder."""
        self._check_open()
        await asyncio.to_thread(self._acquire_blocking, break_lock)
        self.exclusive = True

    async def is_lock_owner(self) -> bool:
        self._check_open()
        try:
            return bool(await asyncio.to_thread(self._image.is_exclusive_lock_owner))
        except Exception as exc:
            raise self._fail(exc, "checking the lock")

    async def lock_owners(self) -> list[str]:
        self._check_open()
        return await asyncio.to_thread(self._owners_blocking)

    async def release_lock(self) -> None:
        """Give the exclusive lock up (graceful hand-over to another gateway)."""
        self._check_open()
        try:
            await asyncio.to_thread(self._image.lock_release)
        except Exception as exc:
            raise self._fail(exc, "releasing the lock")
        self.exclusive = False

    async def reconnect(self, *, takeover: bool = False) -> None:
        """After fencing: drop the blocklisted connection and open the image anew."""
        await self._drain()
        self._stop_events()
        old = (self._cluster, self._image, self._ioctx)
        self._cluster = self._ioctx = self._image = None
        self._caw_handle = None
        if old[0] is not None:
            await asyncio.to_thread(_shutdown, *old)
        await asyncio.to_thread(
            self._open_blocking, size=None, create=False, data_pool=None, takeover=takeover
        )
        self._start_events()
        self._fenced = None

    # -- helpers ------------------------------------------------------------------------------

    def _start_events(self) -> None:
        self._events = _EventQueue.create(self._caw_handle)

    def _stop_events(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            events.close()

    async def _native(
        self, what: str, start: Callable[[ctypes.c_void_p], int], keep: object = None
    ) -> int:
        """One request on the native datapath; returns its (non-negative) return value."""
        assert self._events is not None
        try:
            fut = self._events.submit(start, keep)
        except BackendError as exc:
            self._note(exc)
            raise
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        rv = await fut
        if rv < 0:
            err = _translate_errno(rv, f"{self.spec}: {what}")
            self._note(err)
            raise err
        return rv

    def _check_open(self) -> Any:
        if self._fenced is not None:
            raise BackendFenced(self._fenced)
        image = self._image
        if image is None or self._closed:
            raise BackendError(f"{self.spec}: backend is closed")
        return image

    def _check(self, offset: int, length: int) -> Any:
        image = self._check_open()
        if offset < 0 or length < 0 or offset + length > self._size:
            raise BackendError(
                f"{self.spec}: range {offset}+{length} outside device of {self._size} bytes"
            )
        return image

    def _fail(self, exc: BaseException, what: str) -> BackendError:
        err = _translate(exc, f"{self.spec}: {what}")
        self._note(err)
        return err

    def _note(self, err: BackendError) -> None:
        if isinstance(err, BackendFenced) and "blocklisted" in str(err) and not self._fenced:
            self._fenced = str(err)
            log.error("%s: fenced; no I/O reaches the image until reconnect()", self.spec)

    def _aio(self, what: str, start: Callable[[Callable[..., None]], Any]) -> asyncio.Future[Any]:
        """Run ``start(callback)`` (an ``rbd.Image.aio_*`` call) and return a future that
        resolves to (return value, payload) on the loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def done(completion: Any, *payload: Any) -> None:  # librbd thread
            rv = completion.get_return_value()
            try:
                loop.call_soon_threadsafe(_settle, fut, (rv, payload[0] if payload else None))
            except RuntimeError:
                pass

        try:
            completion = start(done)
        except Exception as exc:
            raise self._fail(exc, what)
        self._inflight.add(fut)
        # The done-callback keeps the completion alive as long as the future is pending.
        fut.add_done_callback(functools.partial(_forget, self._inflight, completion))
        return fut

    async def _run(self, what: str, start: Callable[[Callable[..., None]], Any]) -> Any:
        rv, payload = await self._aio(what, start)
        if rv < 0:
            err = _translate_errno(rv, f"{self.spec}: {what}")
            self._note(err)
            raise err
        return payload

    async def _drain(self) -> None:
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        if self._events is not None:
            await self._events.wait_idle()

    # -- datapath -----------------------------------------------------------------------------

    def start_read(self, offset: int, length: int, done: Callable[[int, Buffer], None]) -> bool:
        """Start a read now; ``done(return value, data)`` follows on the loop. False when it
        cannot start here (no native datapath, fenced, closed, out of range): use ``read``."""
        events = self._events
        if (
            events is None
            or self._fenced is not None
            or self._closed
            or offset < 0
            or length <= 0
            or offset + length > self._size
        ):
            return False
        buf = bytearray(length)
        dest = (ctypes.c_char * length).from_buffer(buf)
        handle, lib = self._caw_handle, _NativeCaw._lib
        try:
            events.start(
                lambda c: lib.rbd_aio_read(handle, offset, length, dest, c),
                dest,
                lambda rv: done(rv, buf),
            )
        except BackendError:
            return False
        return True

    def start_write(self, offset: int, data: Received, done: Callable[[int, Buffer], None]) -> bool:
        """Start a write now (no FUA: the cache is off, an acknowledged write is on the OSDs);
        ``done(return value, b"")`` follows on the loop. False: use ``write``."""
        events = self._events
        n = len(data)
        if (
            events is None
            or self._cache
            or self._fenced is not None
            or self._closed
            or offset < 0
            or n <= 0
            or offset + n > self._size
        ):
            return False
        payload = data if isinstance(data, bytes) else bytes(contiguous(data))
        handle, lib = self._caw_handle, _NativeCaw._lib
        try:
            events.start(
                lambda c: lib.rbd_aio_write(handle, offset, n, payload, c),
                payload,
                lambda rv: done(rv, b""),
            )
        except BackendError:
            return False
        return True

    async def read(self, offset: int, length: int) -> Buffer:
        image = self._check(offset, length)
        if length == 0:
            return b""
        if self._events is not None:
            buf = bytearray(length)
            dest = (ctypes.c_char * length).from_buffer(buf)
            handle, lib = self._caw_handle, _NativeCaw._lib
            await self._native(
                f"reading {offset}+{length}",
                lambda c: lib.rbd_aio_read(handle, offset, length, dest, c),
                dest,
            )
            del dest  # releases the export of buf; unread bytes past the image stay zero
            return buf
        data = await self._run(
            f"reading {offset}+{length}",
            lambda cb: image.aio_read(offset, length, cb),
        )
        out = cast(bytes, data)
        if len(out) < length:  # librbd never returns short reads within the image; be safe
            out += bytes(length - len(out))
        return out

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        payload = data if isinstance(data, bytes) else bytes(data)
        image = self._check(offset, len(payload))
        if not payload:
            return
        if self._events is not None:
            handle, lib, n = self._caw_handle, _NativeCaw._lib, len(payload)
            await self._native(
                f"writing {offset}+{n}",
                lambda c: lib.rbd_aio_write(handle, offset, n, payload, c),
                payload,
            )
            if fua and self._cache:
                await self.flush()
            return
        await self._run(
            f"writing {offset}+{len(payload)}", lambda cb: image.aio_write(payload, offset, cb)
        )
        if fua and self._cache:
            await self.flush()

    async def flush(self) -> None:
        image = self._check_open()
        if self._events is not None:
            handle, lib = self._caw_handle, _NativeCaw._lib
            await self._native("flushing", lambda c: lib.rbd_aio_flush(handle, c))
            return
        await self._run("flushing", lambda cb: image.aio_flush(cb))

    async def discard(self, offset: int, length: int) -> None:
        image = self._check(offset, length)
        if length and self._events is not None:
            handle, lib = self._caw_handle, _NativeCaw._lib
            await self._native(
                f"discarding {offset}+{length}",
                lambda c: lib.rbd_aio_discard(handle, offset, length, c),
            )
        elif length:
            await self._run(
                f"discarding {offset}+{length}", lambda cb: image.aio_discard(offset, length, cb)
            )

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        image = self._check(offset, length)
        if not length:
            return
        lib = _NativeCaw._lib
        if unmap:
            await self.discard(offset, length)
        elif self._events is not None and getattr(lib, "rbd_aio_write_zeroes", None) is not None:
            handle = self._caw_handle
            await self._native(
                f"zeroing {offset}+{length}",
                lambda c: lib.rbd_aio_write_zeroes(handle, offset, length, c, 0, 0),
            )
        elif hasattr(image, "aio_write_zeroes"):
            await self._run(
                f"zeroing {offset}+{length}", lambda cb: image.aio_write_zeroes(offset, length, cb)
            )
        else:  # old librbd: a discard that zeroes partial objects reads back as zeros
            await self.discard(offset, length)

    async def compare_and_write(
        self, offset: int, compare: Buffer, data: Buffer, *, fua: bool = False
    ) -> int:
        cmp = compare if isinstance(compare, bytes) else bytes(compare)
        new = data if isinstance(data, bytes) else bytes(data)
        if len(cmp) != len(new):
            raise BackendError(f"{self.spec}: compare-and-write needs equal halves")
        self._check(offset, len(new))
        if not new:
            return -1
        handle = self._caw_handle
        # librbd 16: only within one 512-byte sector (EINVAL otherwise).
        if handle is not None and offset // 512 == (offset + len(new) - 1) // 512:
            async with self._caw_lock:  # orders it against our other compare-and-writes
                self._check_open()
                # Not through _EventQueue: librbd's C rbd_aio_compare_and_write never uses the
                # event socket (it is not "native async"); its callback signals completion.
                fut = _NativeCaw.submit(handle, offset, cmp, new)
                self._inflight.add(fut)
                fut.add_done_callback(self._inflight.discard)
                rv, mismatch = await fut
            if rv == -errno.EILSEQ:
                return await self._mismatch_index(offset, cmp, mismatch)
            if rv < 0:
                err = _translate_errno(rv, f"{self.spec}: compare-and-write at {offset}")
                self._note(err)
                raise err
            if fua and self._cache:
                await self.flush()
            return -1
        async with self._caw_lock:
            current = await self.read(offset, len(cmp))
            diff = first_mismatch(current, cmp)
            if diff >= 0:
                return diff
            await self.write(offset, new, fua=fua)
            return -1

    async def _mismatch_index(self, offset: int, cmp: bytes, reported: int) -> int:
        """librbd's mismatch offset, relative to ``offset``. Ceph 16 reports it from the start
        of the object, later versions from the start of the image; when neither fits the
        request, compare a fresh read instead."""
        n = len(cmp)
        object_start = offset - offset % self._object_size
        for base in (offset, object_start, 0):
            rel = reported - base
            if 0 <= rel < n and (base != 0 or object_start == 0):
                return rel
        diff = first_mismatch(await self.read(offset, n), cmp)
        return diff if diff >= 0 else 0

    # GET LBA STATUS asks for this much in one extents() call: each call is a thread hop and
    # a precise diff of the first object (an OSD round trip); past it, the object map is local.
    extents_window = 128 << 20

    async def extents(self, offset: int, length: int) -> list[Extent]:
        image = self._check(offset, length)
        if length == 0:
            return []
        runs: list[tuple[int, int]] = []

        def collect(off: int, ln: int, exists: bool) -> int:
            if exists:
                runs.append((off, off + ln))
            return 0

        # Precise (per-object sparse information from the OSD) within the object holding
        # ``offset``; beyond it, whole objects from the object map (local with fast-diff: a
        # 128 MiB range costs ~0.2 ms instead of ~3 ms). An existing object is then reported
        # mapped as a whole: conservative (never "deallocated" where data may be).
        obj = max(self._object_size, self._block_size)
        first_end = min(offset + length, (offset // obj + 1) * obj)

        def walk() -> None:
            image.diff_iterate(
                offset, first_end - offset, None, collect, include_parent=True, whole_object=False
            )
            if first_end < offset + length:
                image.diff_iterate(
                    first_end,
                    offset + length - first_end,
                    None,
                    collect,
                    include_parent=True,
                    whole_object=True,
                )

        try:
            await asyncio.to_thread(walk)
        except Exception as exc:
            raise self._fail(exc, "mapping extents")
        bs = self._block_size
        end = offset + length
        merged: list[tuple[int, int]] = []
        for start, stop in sorted(runs):
            start = max(offset, start - start % bs)
            stop = min(end, -(-stop // bs) * bs)
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            elif stop > start:
                merged.append((start, stop))
        return extents_between(merged, offset, end)

    # -- management ---------------------------------------------------------------------------

    async def resize(self, size: int) -> None:
        image = self._check_open()
        if size <= 0 or size % self._block_size:
            raise BackendError(
                f"{self.spec}: size {size} is not a positive multiple of {self._block_size}"
            )
        try:
            await asyncio.to_thread(image.resize, size)
        except Exception as exc:
            raise self._fail(exc, f"resizing to {size}")
        self._size = size

    async def refresh_size(self) -> int:
        """Re-read the image size (another gateway may have resized it)."""
        image = self._check_open()
        try:
            cur = int(await asyncio.to_thread(image.size))
        except Exception as exc:
            raise self._fail(exc, "reading the size")
        self._size = cur - cur % self._block_size
        return self._size

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._drain()
        self._stop_events()
        handles = (self._cluster, self._image, self._ioctx)
        self._cluster = self._ioctx = self._image = None
        self._caw_handle = None
        if handles[0] is not None:
            # Image.close flushes and releases the exclusive lock.
            await asyncio.to_thread(_shutdown, *handles)


async def open_rbd(
    *,
    pool: str,
    image: str,
    size: int | None = None,
    block_size: int = 512,
    namespace: str = "",
    conf: str | None = None,
    client: str | None = None,
    cluster: str | None = None,
    settings: CephSettings | None = None,
    exclusive: bool = True,
    takeover: bool = False,
    create: bool = False,
    data_pool: str | None = None,
    cache: bool = False,
    osd_op_timeout: int = 30,
    options: dict[str, str] | None = None,
    **_: object,
) -> RbdBackend:
    """Registry factory for the ``rbd`` backend.

    ``exclusive`` acquires the image's exclusive lock (failing with BackendFenced while another
    client holds it, unless ``takeover`` breaks it: that client is blocklisted). ``create``
    makes a missing image of ``size`` bytes (with ``data_pool`` for its data, e.g. an
    erasure-coded pool); when ``size`` exceeds an existing image's size the image is grown.
    """
    if block_size not in (512, 4096):
        raise ConfigError(f"{pool}/{image}: block_size must be 512 or 4096, not {block_size}")
    if settings is None:
        settings = CephSettings(
            conf=conf,
            client=client or "client.admin",
            cluster=cluster or "ceph",
            options=dict(options or {}),
        )
    backend = RbdBackend(
        settings,
        pool,
        image,
        namespace=namespace,
        block_size=block_size,
        cache=cache,
        exclusive=exclusive,
        osd_op_timeout=osd_op_timeout,
    )
    await asyncio.to_thread(
        backend._open_blocking,
        size=size or None,
        create=create,
        data_pool=data_pool,
        takeover=takeover,
    )
    backend._start_events()
    return backend


# ---------------------------------------------------------------------------------------------
# image administration (for the REST API and the shell)


def _create_image(
    ioctx: Any, name: str, size: int, *, data_pool: str | None = None, features: int | None = None
) -> None:
    try:
        rbd.RBD().create(
            ioctx,
            name,
            size,
            old_format=False,
            features=DEFAULT_FEATURES if features is None else features,
            data_pool=data_pool,
        )
    except rbd.ImageExists:
        raise ConfigError(f"RBD image {ioctx.get_pool_name()}/{name} already exists")
    except Exception as exc:
        raise _translate(exc, f"creating RBD image {name}")


@dataclass(frozen=True)
class ImageInfo:
    pool: str
    image: str
    size: int
    object_size: int
    features: list[str]
    data_pool: str | None
    lock_owners: list[str]
    watchers: list[str]
    snapshots: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "image": self.image,
            "size": self.size,
            "object_size": self.object_size,
            "features": self.features,
            "data_pool": self.data_pool,
            "lock_owners": self.lock_owners,
            "watchers": self.watchers,
            "snapshots": self.snapshots,
        }


_FEATURE_NAMES = {
    rbd.RBD_FEATURE_LAYERING: "layering",
    rbd.RBD_FEATURE_STRIPINGV2: "striping",
    rbd.RBD_FEATURE_EXCLUSIVE_LOCK: "exclusive-lock",
    rbd.RBD_FEATURE_OBJECT_MAP: "object-map",
    rbd.RBD_FEATURE_FAST_DIFF: "fast-diff",
    rbd.RBD_FEATURE_DEEP_FLATTEN: "deep-flatten",
    rbd.RBD_FEATURE_JOURNALING: "journaling",
    rbd.RBD_FEATURE_DATA_POOL: "data-pool",
}


class RbdAdmin:
    """Image management on one cluster connection: what ``/disks create|resize|delete`` and
    snapshots need. Every method is a coroutine that runs librbd in a worker thread; errors
    are iscsigw errors (ConfigError for requests that cannot be done as asked)."""

    def __init__(self, settings: CephSettings | None = None) -> None:
        self.settings = settings or CephSettings()
        self._cluster: Any = None
        self._lock = threading.Lock()

    async def __aenter__(self) -> RbdAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connected(self) -> Any:
        with self._lock:
            if self._cluster is None:
                self._cluster = connect(self.settings)
            return self._cluster

    @contextmanager
    def _ioctx(self, pool: str) -> Iterator[Any]:
        cluster = self._connected()
        try:
            ioctx = cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            raise BackendNotFound(f"pool {pool!r} does not exist")
        except Exception as exc:
            raise _translate(exc, f"opening pool {pool}")
        try:
            yield ioctx
        finally:
            ioctx.close()

    @contextmanager
    def _image(self, pool: str, name: str, *, read_only: bool = False) -> Iterator[Any]:
        with self._ioctx(pool) as ioctx:
            try:
                image = rbd.Image(ioctx, name, read_only=read_only)
            except rbd.ImageNotFound:
                raise BackendNotFound(f"RBD image {pool}/{name} does not exist")
            except Exception as exc:
                raise _translate(exc, f"opening {pool}/{name}")
            try:
                yield image
            finally:
                image.close()

    async def _call(self, func: Callable[..., _T], *args: Any, what: str = "") -> _T:
        try:
            return await asyncio.to_thread(func, *args)
        except (BackendError, ConfigError):
            raise
        except Exception as exc:
            raise _translate(exc, what or getattr(func, "__name__", "rbd"))

    # -- images -------------------------------------------------------------------------------

    async def create_image(
        self,
        pool: str,
        image: str,
        size: int,
        *,
        data_pool: str | None = None,
        features: int | None = None,
    ) -> None:
        """Create an image (features: layering, exclusive-lock, object-map, fast-diff,
        deep-flatten); ``data_pool`` keeps its data in another pool (erasure-coded pools need
        ``allow_ec_overwrites``)."""
        if size <= 0:
            raise ConfigError(f"{pool}/{image}: size must be positive")

        def run() -> None:
            with self._ioctx(pool) as ioctx:
                _create_image(ioctx, image, size, data_pool=data_pool, features=features)

        await self._call(run, what=f"creating {pool}/{image}")

    async def delete_image(self, pool: str, image: str) -> None:
        """Delete an image; refused while a client has it open or it has snapshots."""

        def run() -> None:
            with self._ioctx(pool) as ioctx:
                try:
                    rbd.RBD().remove(ioctx, image)
                except rbd.ImageNotFound:
                    raise BackendNotFound(f"RBD image {pool}/{image} does not exist")
                except rbd.ImageBusy:
                    raise ConfigError(f"RBD image {pool}/{image} is in use (open by a client)")
                except rbd.ImageHasSnapshots:
                    raise ConfigError(f"RBD image {pool}/{image} has snapshots; delete them first")

        await self._call(run, what=f"deleting {pool}/{image}")

    async def resize_image(
        self, pool: str, image: str, size: int, *, allow_shrink: bool = False
    ) -> None:
        def run() -> None:
            with self._image(pool, image) as img:
                cur = img.size()
                if size < cur and not allow_shrink:
                    raise ConfigError(
                        f"{pool}/{image}: shrinking from {cur} to {size} bytes loses data; "
                        "pass allow_shrink to do it anyway"
                    )
                if size != cur:
                    img.resize(size)

        await self._call(run, what=f"resizing {pool}/{image}")

    async def list_images(self, pool: str) -> list[str]:
        def run() -> list[str]:
            with self._ioctx(pool) as ioctx:
                return sorted(str(n) for n in rbd.RBD().list(ioctx))

        return await self._call(run, what=f"listing pool {pool}")

    async def image_info(self, pool: str, image: str) -> ImageInfo:
        def run() -> ImageInfo:
            with self._image(pool, image) as img:  # read-only images cannot list lock owners
                feats = int(img.features())
                try:
                    data_pool_id = int(img.data_pool_id())
                    data_pool = (
                        str(self._connected().pool_reverse_lookup(data_pool_id))
                        if feats & rbd.RBD_FEATURE_DATA_POOL
                        else None
                    )
                except Exception:
                    data_pool = None
                st = img.stat()
                return ImageInfo(
                    pool=pool,
                    image=image,
                    size=int(img.size()),
                    object_size=int(st.get("obj_size", 0)),
                    features=[n for bit, n in _FEATURE_NAMES.items() if feats & bit],
                    data_pool=data_pool,
                    lock_owners=[str(o["owner"]) for o in img.lock_get_owners()],
                    watchers=[str(w["addr"]) for w in img.watchers_list()],
                    snapshots=[str(s["name"]) for s in img.list_snaps()],
                )

        return await self._call(run, what=f"reading {pool}/{image}")

    # -- snapshots ----------------------------------------------------------------------------

    async def create_snapshot(self, pool: str, image: str, snap: str) -> None:
        _check_snap_name(snap)

        def run() -> None:
            with self._image(pool, image) as img:
                try:
                    img.create_snap(snap)
                except rbd.ImageExists:
                    raise ConfigError(f"{pool}/{image}@{snap} already exists")

        await self._call(run, what=f"snapshotting {pool}/{image}@{snap}")

    async def list_snapshots(self, pool: str, image: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self._image(pool, image, read_only=True) as img:
                return [
                    {"name": str(s["name"]), "id": int(s["id"]), "size": int(s["size"])}
                    for s in img.list_snaps()
                ]

        return await self._call(run, what=f"listing snapshots of {pool}/{image}")

    async def rollback_snapshot(self, pool: str, image: str, snap: str) -> None:
        """Roll the image back; do it while no gateway serves it (the data changes under the
        initiator's cache otherwise)."""

        def run() -> None:
            with self._image(pool, image) as img:
                try:
                    img.rollback_to_snap(snap)
                except rbd.ImageNotFound:
                    raise BackendNotFound(f"{pool}/{image}@{snap} does not exist")

        await self._call(run, what=f"rolling {pool}/{image} back to {snap}")

    async def delete_snapshot(self, pool: str, image: str, snap: str) -> None:
        def run() -> None:
            with self._image(pool, image) as img:
                try:
                    img.remove_snap(snap)
                except rbd.ImageNotFound:
                    raise BackendNotFound(f"{pool}/{image}@{snap} does not exist")
                except rbd.ImageBusy:
                    raise ConfigError(f"{pool}/{image}@{snap} is protected or in use")

        await self._call(run, what=f"deleting {pool}/{image}@{snap}")

    # -- locks (HA) ---------------------------------------------------------------------------

    async def lock_owners(self, pool: str, image: str) -> list[str]:
        def run() -> list[str]:
            with self._image(pool, image) as img:
                return [str(o["owner"]) for o in img.lock_get_owners()]

        return await self._call(run, what=f"listing lock owners of {pool}/{image}")

    async def break_lock(self, pool: str, image: str) -> list[str]:
        """Break the exclusive lock of ``pool/image``: its holders are blocklisted (fenced).
        Returns the addresses that were fenced."""

        def run() -> list[str]:
            with self._image(pool, image) as img:
                owners = [str(o["owner"]) for o in img.lock_get_owners()]
                for owner in owners:
                    img.lock_break(rbd.RBD_LOCK_MODE_EXCLUSIVE, owner)
                return owners

        return await self._call(run, what=f"breaking the lock of {pool}/{image}")

    async def blocklist(self, addr: str, seconds: int = 3600) -> None:
        """Fence a client address (as ``ceph osd blocklist add``)."""
        await self._call(
            lambda: self._connected().blocklist_add(addr, seconds), what=f"blocklisting {addr}"
        )

    async def config_key_get(self, key: str) -> str:
        """A value of the monitors' config-key store (``config://KEY`` in iscsi-gateway.cfg)."""
        import json

        def run() -> str:
            ret, out, err = self._connected().mon_command(
                json.dumps({"prefix": "config-key get", "key": key}), b""
            )
            if ret == -errno.ENOENT:
                raise BackendNotFound(f"config-key {key!r} is not set")
            if ret < 0:
                raise _translate_errno(ret, f"config-key get {key}: {err}")
            return bytes(out).decode()

        return await self._call(run, what=f"config-key get {key}")

    async def close(self) -> None:
        with self._lock:
            cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await asyncio.to_thread(_shutdown, cluster)


def _check_snap_name(snap: str) -> None:
    if not snap or "/" in snap or "@" in snap:
        raise ConfigError(f"snapshot name {snap!r}: must be non-empty without '/' or '@'")
