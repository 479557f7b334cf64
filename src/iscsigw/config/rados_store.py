"""The configuration document in a RADOS object, shared by every gateway of a cluster.

Same contract as ``FileConfigStore`` (``load() -> (GatewayConfig, epoch)``,
``commit(mutator, expect_epoch) -> epoch``, ``EpochConflict``) and the same layout as
ceph-iscsi: object ``gateway.conf`` in pool ``rbd`` (both settable) holding the JSON document
(sorted keys, indent 4), with its epoch also in the object's ``epoch`` xattr.

Guarantees:

* A commit is one RADOS write operation: ``assert_version(v)`` (the object version the change
  was computed from) + ``write_full`` + ``setxattr epoch``. The OSD applies all of it or none,
  so the object is always a whole, valid document and two writers never overwrite each other:
  the loser's operation fails with ERANGE, it reads the new document and applies its change
  again (``expect_epoch`` given: it raises ``EpochConflict`` instead).
* A missing object is created with ``LIBRADOS_CREATE_EXCLUSIVE`` (two gateways creating it at
  once: one wins, the other retries on top of it).
* After each commit the writer sends a RADOS notify on the object. ``watch(callback)`` registers
  a RADOS watch: peers are told of a change within milliseconds (no polling). When the watch
  breaks (OSD restart, network loss, this client's watch timed out) it is re-established in
  the background and the callback is called once with ``None``: the peer re-reads, since a
  notify may have been missed meanwhile.

The methods block (librados round trips); call them with ``asyncio.to_thread`` from the loop.
Callbacks of ``watch`` run on a librados thread unless a loop is given.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .file_store import EpochConflict, Mutator, next_document
from .model import GatewayConfig
from .settings import CephConnection

log = logging.getLogger(__name__)

EpochCallback = Callable[[int | None], None]

_MAX_RETRIES = 50


def _rados() -> Any:
    try:
        import rados
    except ImportError:
        raise ConfigError(
            "the RADOS config store needs Ceph's Python bindings "
            "(apt-get install python3-rados; see docs/ceph.md for using them from a venv)"
        )
    return rados


class RadosEpochConflict(EpochConflict):
    """``EpochConflict`` for the RADOS object (the message names pool/object, not a path)."""

    def __init__(self, where: str, expected: int, actual: int) -> None:
        ConfigError.__init__(
            self,
            f"{where}: the configuration changed meanwhile (now epoch {actual}, "
            f"expected {expected}); reload it and try again",
        )
        self.expected = expected
        self.actual = actual


class ConfigWatch:
    """A live watch on the config object; ``close()`` ends it."""

    def __init__(self, store: RadosConfigStore, callback: EpochCallback) -> None:
        self._store = store
        self._callback = callback
        self._watch: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._rewatching = False
        self.reconnects = 0

    def _start(self) -> None:
        ioctx = self._store._ioctx_locked()
        self._watch = ioctx.watch(
            self._store.obj, self._on_notify, self._on_error, self._store.watch_timeout
        )

    def _on_notify(self, notify_id: int, notifier_id: int, watch_id: int, data: bytes) -> None:
        epoch: int | None
        try:
            epoch = int(bytes(data).decode() or "x")
        except (ValueError, UnicodeDecodeError):
            epoch = None
        self._deliver(epoch)

    def _deliver(self, epoch: int | None) -> None:
        if self._closed:
            return
        try:
            self._callback(epoch)
        except Exception:
            log.exception("config watch callback failed")

    def _on_error(self, err: int) -> None:
        # librados thread: re-watching here could deadlock; do it in a thread of our own.
        log.warning("watch on %s broke (%s); re-establishing it", self._store, -abs(err))
        with self._lock:
            if self._closed or self._rewatching:
                return
            self._rewatching = True
        threading.Thread(target=self._rewatch, name="config-rewatch", daemon=True).start()

    def _rewatch(self) -> None:
        delay = 0.1
        try:
            while not self._closed:
                old, self._watch = self._watch, None
                try:
                    if old is not None:
                        old.close()
                except Exception:
                    pass
                try:
                    self._start()
                    break
                except Exception as exc:
                    log.warning("re-watching %s failed: %s; retrying", self._store, exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            with self._lock:
                self._rewatching = False
        if not self._closed:
            self.reconnects += 1
            self._deliver(None)  # a notify may have been missed: the peer re-reads

    def close(self) -> None:
        self._closed = True
        watch, self._watch = self._watch, None
        if watch is not None:
            try:
                watch.close()
            except Exception as exc:
                log.debug("closing the watch: %s", exc)


class RadosConfigStore:
    """``gateway.conf`` as a RADOS object; see the module docstring for guarantees."""

    def __init__(
        self,
        pool: str = "rbd",
        obj: str = "gateway.conf",
        *,
        conf: str | None = None,
        client: str = "client.admin",
        cluster: str = "ceph",
        namespace: str = "",
        connect_timeout: int = 15,
        watch_timeout: int = 10,
        notify_timeout_ms: int = 2000,
        options: dict[str, str] | None = None,
    ) -> None:
        self.pool = pool
        self.obj = obj
        self.conf = conf
        self.client = client
        self.cluster = cluster
        self.namespace = namespace
        self.connect_timeout = connect_timeout
        self.watch_timeout = watch_timeout
        self.notify_timeout_ms = notify_timeout_ms
        # A cluster that went away must not hang a gateway forever (librados waits for an OSD
        # without limit by default): reads, commits and unwatch fail after this many seconds.
        self.options = {"rados_osd_op_timeout": str(connect_timeout), **(options or {})}
        self._rados_mod: Any = None
        self._cluster: Any = None
        self._ioctx: Any = None
        self._lock = threading.RLock()  # the ioctx's "last version" is per handle
        self._watches: list[ConfigWatch] = []
        self._notifies: set[Any] = set()

    @classmethod
    def for_connection(
        cls, conn: CephConnection, pool: str = "rbd", obj: str = "gateway.conf", **kwargs: Any
    ) -> RadosConfigStore:
        """The store of ``iscsi-gateway.cfg``'s cluster (``GatewaySettings.ceph_connection()``)."""
        return cls(
            pool,
            obj,
            conf=conn.conf,
            client=conn.client,
            cluster=conn.cluster,
            options=conn.options(),
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"RadosConfigStore({self.pool!r}, {self.obj!r})"

    def change_token(self) -> object:
        """The ``epoch`` xattr: what ``store.change_token`` compares (one small read)."""
        return self.read_epoch()

    @property
    def where(self) -> str:
        return f"rados://{self.pool}/{self.obj}"

    # -- connection ---------------------------------------------------------------------------

    def _ioctx_locked(self) -> Any:
        with self._lock:
            if self._ioctx is None:
                from ..backends.rbd import CephSettings, connect

                self._rados_mod = _rados()
                settings = CephSettings(
                    conf=self.conf,
                    client=self.client,
                    cluster=self.cluster,
                    connect_timeout=self.connect_timeout,
                    options=self.options,
                )
                try:
                    cluster = connect(settings)
                except Exception as exc:
                    raise ConfigError(f"{self.where}: cannot connect to Ceph: {exc}")
                try:
                    ioctx = cluster.open_ioctx(self.pool)
                except Exception as exc:
                    cluster.shutdown()
                    raise ConfigError(f"{self.where}: cannot open pool {self.pool!r}: {exc}")
                if self.namespace:
                    ioctx.set_namespace(self.namespace)
                self._cluster, self._ioctx = cluster, ioctx
            return self._ioctx

    def close(self) -> None:
        for w in self._watches:
            w.close()
        self._watches.clear()
        for comp in list(self._notifies):
            try:
                comp.wait_for_complete()
            except Exception:
                pass
        with self._lock:
            ioctx, cluster = self._ioctx, self._cluster
            self._ioctx = self._cluster = None
        if ioctx is not None:
            ioctx.close()
        if cluster is not None:
            cluster.shutdown()

    def __enter__(self) -> RadosConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def _read_raw(self) -> tuple[dict[str, Any] | None, int]:
        """The document and the object version it was read at (None, 0 when missing)."""
        rados = self._rados_mod or _rados()
        with self._lock:
            ioctx = self._ioctx_locked()
            length = 1 << 16
            while True:
                try:
                    data = ioctx.read(self.obj, length)
                except rados.ObjectNotFound:
                    return None, 0
                except rados.Error as exc:
                    raise ConfigError(f"{self.where}: cannot read the configuration: {exc}")
                if len(data) < length:
                    break
                length *= 4  # the document is larger than what was asked for: ask again
            version = int(ioctx.get_last_version())
        if not data:
            return None, version  # created empty (e.g. by ceph-iscsi before seeding it)
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.where}: not valid JSON ({exc})")
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.where}: the configuration must be a JSON object")
        return doc, version

    def exists(self) -> bool:
        return self._read_raw()[0] is not None

    def load_dict(self) -> dict[str, Any]:
        doc, _ = self._read_raw()
        return GatewayConfig.empty_dict() if doc is None else doc

    def load(self) -> tuple[GatewayConfig, int]:
        doc = self.load_dict()
        try:
            config = GatewayConfig.from_dict(doc)
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}")
        return config, config.epoch

    def read_epoch(self) -> int:
        """The ``epoch`` xattr alone (cheap; 0 when the object does not exist)."""
        rados = self._rados_mod or _rados()
        with self._lock:
            try:
                return int(self._ioctx_locked().get_xattr(self.obj, "epoch").decode() or 0)
            except (rados.ObjectNotFound, rados.NoData):
                return 0
            except (ValueError, rados.Error) as exc:
                raise ConfigError(f"{self.where}: cannot read the epoch xattr: {exc}")

    # -- writing ------------------------------------------------------------------------------

    def commit(self, mutator: Mutator, expect_epoch: int | None = None) -> int:
        """Apply ``mutator`` to the latest document and write it; return the new epoch.

        Optimistic: the write is conditional on the object version that was read; when another
        gateway committed in between, the change is recomputed on the newer document (or, with
        ``expect_epoch``, ``EpochConflict`` is raised). A mutator that changes nothing writes
        nothing (when the object exists) and returns the current epoch.
        """
        rados = self._rados_mod or _rados()
        for _ in range(_MAX_RETRIES):
            current, version = self._read_raw()
            epoch, doc = next_document(
                current,
                mutator,
                expect_epoch,
                self.where,
                functools.partial(RadosEpochConflict, self.where),
            )
            if doc is None:
                return epoch
            data = (json.dumps(doc, indent=4, sort_keys=True) + "\n").encode()
            try:
                self._write(rados, data, epoch + 1, version)
            except rados.Error as exc:
                err = abs(getattr(exc, "errno", 0) or 0)
                if err in (errno.ERANGE, errno.EOVERFLOW, errno.EEXIST):
                    continue  # someone committed (or created it) first: redo on their version
                raise ConfigError(f"{self.where}: cannot write the configuration: {exc}")
            self._notify(epoch + 1)
            return epoch + 1
        raise ConfigError(f"{self.where}: gave up after {_MAX_RETRIES} conflicting commits")

    def _write(self, rados: Any, data: bytes, epoch: int, version: int) -> None:
        with self._lock:
            ioctx = self._ioctx_locked()
            with rados.WriteOpCtx() as op:
                if version == 0:
                    op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                else:
                    op.assert_version(version)
                op.write_full(data)
                op.set_xattr("epoch", str(epoch).encode())
                ioctx.operate_write_op(op, self.obj)

    def _notify(self, epoch: int) -> None:
        """Tell the watchers; asynchronous so that a dead watcher cannot stall the commit."""
        try:
            with self._lock:
                ioctx = self._ioctx_locked()

                def done(comp: Any, *_: Any) -> None:
                    self._notifies.discard(comp)

                comp = ioctx.aio_notify(
                    self.obj, done, msg=str(epoch), timeout_ms=self.notify_timeout_ms
                )
                self._notifies.add(comp)
        except Exception as exc:  # peers still see the change on their next read / reconnect
            log.warning("%s: notify after commit failed: %s", self.where, exc)

    # -- watching -----------------------------------------------------------------------------

    def watch(
        self, callback: EpochCallback, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> ConfigWatch:
        """Call ``callback(epoch)`` when another client commits (``epoch`` is the new epoch,
        or ``None`` after the watch was re-established: re-read then). Without ``loop`` it
        runs on a librados thread and must be quick; with ``loop`` it runs on that loop."""
        if loop is not None:
            target = callback

            def callback(epoch: int | None) -> None:
                try:
                    loop.call_soon_threadsafe(target, epoch)
                except RuntimeError:  # loop closed
                    pass

        w = ConfigWatch(self, callback)
        if not self.exists():
            self.commit(lambda doc: None)  # a watch needs the object: create the empty one
        try:
            w._start()
        except Exception as exc:
            raise ConfigError(f"{self.where}: cannot watch the configuration: {exc}")
        self._watches.append(w)
        return w


def config_key_values(conn: CephConnection, keys: list[str], timeout: int = 15) -> dict[str, str]:
    """``ceph config-key get`` of each key (missing keys are left out); blocking.

    What ``config://KEY`` values of iscsi-gateway.cfg resolve to (as ceph-iscsi does)."""
    _rados()
    from ..backends.rbd import CephSettings, connect

    settings = CephSettings(
        conf=conn.conf,
        client=conn.client,
        cluster=conn.cluster,
        connect_timeout=timeout,
        options=conn.options(),
    )
    try:
        cluster = connect(settings)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot connect to Ceph ({settings.conf_path}): {exc}")
    out: dict[str, str] = {}
    try:
        for key in keys:
            ret, value, err = cluster.mon_command(
                json.dumps({"prefix": "config-key get", "key": key}), b"", timeout=timeout
            )
            if ret == -errno.ENOENT:
                continue
            if ret < 0:
                raise ConfigError(f"config-key get {key}: {err or errno.errorcode.get(-ret, ret)}")
            out[key] = bytes(value).decode()
    finally:
        cluster.shutdown()
    return out
