"""Creating, growing, deleting and snapshotting the images behind disks, per backstore.

The REST API never touches storage itself: it asks the ``ImageAdmin`` of the disk's backstore.
``file`` images are sparse files ``DATA_DIR/<pool>/<image>`` (so ``rbd/disk_1`` is the file
``DATA_DIR/rbd/disk_1``); their snapshots are sparse copies under
``DATA_DIR/.snapshots/<pool>/<image>/<name>``. ``memory`` images live in each gateway's RAM
and need no administration. ``rbd`` images are administered through librbd
(``backends.rbd.RbdAdmin``, imported only when an rbd disk is managed) on the cluster of
``iscsi-gateway.cfg`` (``register_rbd_admin``; default ``$CEPH_CONF`` as client.admin): new
images get exclusive-lock (and layering, object-map, fast-diff, deep-flatten), optionally with
their data in another pool (``data_pool``, e.g. an erasure-coded one).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..config.settings import CephConnection
from ..errors import BackendError, BackendNotFound, ConfigError

log = logging.getLogger("iscsigw.images")
_T = TypeVar("_T")

SNAPSHOT_DIR = ".snapshots"


class ImageAdmin(Protocol):
    async def size_of(self, pool: str, image: str) -> int | None:
        """The image's size in bytes, None when it does not exist."""
        ...

    async def create(
        self, pool: str, image: str, size: int, *, data_pool: str | None = None
    ) -> None:
        """``data_pool``: keep the image's data in another pool (rbd only)."""
        ...

    async def resize(self, pool: str, image: str, size: int) -> None: ...

    async def delete(self, pool: str, image: str) -> None: ...

    async def snapshots(self, pool: str, image: str) -> list[str]: ...

    async def snapshot(self, pool: str, image: str, name: str, mode: str) -> None:
        """``mode`` is create, delete or rollback."""
        ...


def _os_error(exc: OSError, what: str) -> ConfigError:
    return ConfigError(f"{what}: {exc.strerror or exc}")


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy only the data extents of ``src`` (holes stay holes); ``dst`` ends the same size."""
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        os.ftruncate(fout.fileno(), size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), end - pos, pos, pos)
                if n == 0:
                    break
                pos += n
            offset = end
        os.fsync(fout.fileno())
    os.replace(tmp, dst)


def _sparse_copy_into(src: Path, dst: Path) -> None:
    """Overwrite ``dst`` in place (same inode, so open handles see the data) with ``src``."""
    size = src.stat().st_size
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        os.ftruncate(fout.fileno(), 0)
        os.ftruncate(fout.fileno(), size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            remaining = end - start
            while remaining:
                chunk = fin.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                fout.write(chunk)
                remaining -= len(chunk)
            offset = end
        fout.flush()
        os.fsync(fout.fileno())


class FileImageAdmin:
    """Sparse files under the gateway's data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def path(self, pool: str, image: str) -> Path:
        return self.data_dir / pool / image

    def _snap_path(self, pool: str, image: str, name: str) -> Path:
        if name in (".", "..") or "\0" in name or "/" in name or "@" in name:
            raise ConfigError("snapshot name is invalid")
        return self.data_dir / SNAPSHOT_DIR / pool / image / name

    async def size_of(self, pool: str, image: str) -> int | None:
        try:
            return self.path(pool, image).stat().st_size
        except FileNotFoundError:
            return None

    async def create(
        self, pool: str, image: str, size: int, *, data_pool: str | None = None
    ) -> None:
        if data_pool:
            raise ConfigError("data_pool is only supported by the rbd backstore")
        path = self.path(pool, image)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"Image {pool}/{image} already exists ({path}); attach it with "
                "create_image=false or delete it first"
            )
        except OSError as exc:
            raise _os_error(exc, f"cannot create {path}")
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise _os_error(exc, f"cannot size {path}")
        os.close(fd)

    async def resize(self, pool: str, image: str, size: int) -> None:
        path = self.path(pool, image)
        current = await self.size_of(pool, image)
        if current is None:
            # A disk that was never opened yet: the gateway creates it at the new size.
            return
        if size < current:
            raise ConfigError(f"Image {pool}/{image} is {current} bytes; it can only grow")
        try:
            os.truncate(path, size)
        except OSError as exc:
            raise _os_error(exc, f"cannot resize {path}")

    async def delete(self, pool: str, image: str) -> None:
        try:
            self.path(pool, image).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, f"cannot delete {self.path(pool, image)}")
        snaps = self.data_dir / SNAPSHOT_DIR / pool / image
        for snap in list(snaps.glob("*")) if snaps.is_dir() else []:
            snap.unlink(missing_ok=True)
        if snaps.is_dir():
            snaps.rmdir()

    async def snapshots(self, pool: str, image: str) -> list[str]:
        snaps = self.data_dir / SNAPSHOT_DIR / pool / image
        if not snaps.is_dir():
            return []
        return sorted(p.name for p in snaps.iterdir() if not p.name.endswith(".tmp"))

    async def snapshot(self, pool: str, image: str, name: str, mode: str) -> None:
        src = self.path(pool, image)
        snap = self._snap_path(pool, image, name)
        if mode == "create":
            if snap.exists():
                raise ConfigError(f"snapshot {name} of {pool}/{image} already exists")
            if not src.exists():
                raise ConfigError(f"Image {pool}/{image} does not exist ({src})")
            snap.parent.mkdir(parents=True, exist_ok=True)
            try:
                await asyncio.to_thread(_sparse_copy, src, snap)
            except OSError as exc:
                raise _os_error(exc, f"cannot snapshot {src}")
        elif mode == "delete":
            if not snap.exists():
                raise ConfigError(f"snapshot {name} of {pool}/{image} does not exist")
            snap.unlink()
        elif mode == "rollback":
            if not snap.exists():
                raise ConfigError(f"snapshot {name} of {pool}/{image} does not exist")
            try:
                await asyncio.to_thread(_sparse_copy_into, snap, src)
            except OSError as exc:
                raise _os_error(exc, f"cannot roll {src} back")
        else:
            raise ConfigError("mode is invalid; use create or rollback")


class MemoryImageAdmin:
    """RAM disks exist only inside each gateway; there is nothing to create or delete."""

    async def size_of(self, pool: str, image: str) -> int | None:
        return None

    async def create(
        self, pool: str, image: str, size: int, *, data_pool: str | None = None
    ) -> None:
        if data_pool:
            raise ConfigError("data_pool is only supported by the rbd backstore")

    async def resize(self, pool: str, image: str, size: int) -> None:
        return None

    async def delete(self, pool: str, image: str) -> None:
        return None

    async def snapshots(self, pool: str, image: str) -> list[str]:
        return []

    async def snapshot(self, pool: str, image: str, name: str, mode: str) -> None:
        raise ConfigError("the memory backstore has no snapshots")


DELETE_BUSY_WAIT = 10.0  # seconds a delete waits for peers to close an image they still serve


class RbdImageAdmin:
    """RBD images through librbd (``backends.rbd.RbdAdmin``); one connection per cluster is
    shared by every request. librbd errors become ConfigErrors with librbd's reason."""

    _shared: dict[CephConnection, Any] = {}
    _shared_lock = threading.Lock()

    def __init__(self, conn: CephConnection | None = None) -> None:
        self.conn = conn or CephConnection()

    def _admin(self) -> Any:
        with self._shared_lock:
            admin = self._shared.get(self.conn)
            if admin is None:
                try:
                    from ..backends.rbd import CephSettings, RbdAdmin
                except ImportError as exc:
                    raise ConfigError(
                        f"the rbd backstore needs Ceph's Python bindings ({exc}); see docs/ceph.md"
                    )
                admin = RbdAdmin(
                    CephSettings(
                        conf=self.conn.conf,
                        client=self.conn.client,
                        cluster=self.conn.cluster,
                        options=self.conn.options(),
                    )
                )
                self._shared[self.conn] = admin
            return admin

    async def _run(self, call: Callable[[Any], Awaitable[_T]]) -> _T:
        try:
            return await call(self._admin())
        except BackendError as exc:
            raise ConfigError(str(exc))

    async def size_of(self, pool: str, image: str) -> int | None:
        admin = self._admin()
        try:
            info = await admin.image_info(pool, image)
        except BackendNotFound as exc:
            if str(exc).startswith("pool "):  # not the image: the pool is missing
                raise ConfigError(str(exc))
            return None
        except BackendError as exc:
            raise ConfigError(str(exc))
        return int(info.size)

    async def create(
        self, pool: str, image: str, size: int, *, data_pool: str | None = None
    ) -> None:
        await self._run(lambda a: a.create_image(pool, image, size, data_pool=data_pool or None))

    async def resize(self, pool: str, image: str, size: int) -> None:
        current = await self.size_of(pool, image)
        if current is None:
            return  # never opened yet: the gateway creates it at the new size
        if size < current:
            raise ConfigError(f"Image {pool}/{image} is {current} bytes; it can only grow")
        await self._run(lambda a: a.resize_image(pool, image, size))

    async def delete(self, pool: str, image: str) -> None:
        # The gateways close the image when they apply the change that dropped the disk; a
        # peer may still have it open for a moment: wait for it rather than fail.
        deadline = time.monotonic() + DELETE_BUSY_WAIT
        while True:
            try:
                await self._admin().delete_image(pool, image)
                return
            except BackendNotFound:
                return
            except ConfigError as exc:
                if "in use" not in str(exc) or time.monotonic() > deadline:
                    raise
            except BackendError as exc:
                raise ConfigError(str(exc))
            await asyncio.sleep(0.25)

    async def snapshots(self, pool: str, image: str) -> list[str]:
        try:
            snaps = await self._admin().list_snapshots(pool, image)
        except BackendNotFound:
            return []
        except BackendError as exc:
            raise ConfigError(str(exc))
        return [str(s["name"]) for s in snaps]

    async def snapshot(self, pool: str, image: str, name: str, mode: str) -> None:
        if mode == "create":
            await self._run(lambda a: a.create_snapshot(pool, image, name))
        elif mode == "delete":
            await self._run(lambda a: a.delete_snapshot(pool, image, name))
        elif mode == "rollback":
            await self._run(lambda a: a.rollback_snapshot(pool, image, name))
        else:
            raise ConfigError("mode is invalid; use create or rollback")

    @classmethod
    async def close_all(cls) -> None:
        with cls._shared_lock:
            admins = list(cls._shared.values())
            cls._shared.clear()
        for admin in admins:
            await admin.close()


AdminFactory = Callable[[Path], ImageAdmin]
_ADMINS: dict[str, AdminFactory] = {
    "file": FileImageAdmin,
    "memory": lambda _data_dir: MemoryImageAdmin(),
    "rbd": lambda _data_dir: RbdImageAdmin(),
}


def register_image_admin(backstore: str, factory: AdminFactory) -> None:
    """Plug in image management for a backstore (e.g. ``rbd``)."""
    _ADMINS[backstore] = factory


def register_rbd_admin(conn: CephConnection) -> None:
    """RBD image management on this cluster (iscsi-gateway.cfg's connection settings)."""
    register_image_admin("rbd", lambda _data_dir: RbdImageAdmin(conn))


def image_admin(backstore: str, data_dir: Path) -> ImageAdmin:
    name = "rbd" if backstore == "user:rbd" else backstore
    factory = _ADMINS.get(name)
    if factory is None:
        raise ConfigError(
            f"image management for the {backstore!r} backstore is not available in this "
            f"gateway; available: {', '.join(sorted(_ADMINS))}"
        )
    return factory(data_dir)


__all__ = [
    "FileImageAdmin",
    "ImageAdmin",
    "MemoryImageAdmin",
    "RbdImageAdmin",
    "image_admin",
    "register_image_admin",
    "register_rbd_admin",
]
