"""A LUN backed by a sparse regular file: the local, Ceph-free datapath.

Durability model (what an acknowledged write means)
----------------------------------------------------
The file is opened once, buffered (no ``O_DIRECT``), and the LUN reports a *volatile write
cache* (SCSI WCE=1):

* ``write()`` copies the data into the kernel page cache with ``pwrite`` and returns. The data
  survives a crash of this process (the kernel owns it) but not a power loss or kernel crash
  until it has been flushed. This is exactly what an initiator expects of a disk with a write
  cache enabled: it sends SYNCHRONIZE CACHE or sets FUA when it needs durability.
* ``flush()`` (SYNCHRONIZE CACHE) runs ``fdatasync`` and returns after every write that had
  completed before the call is on stable storage. Concurrent flushes share one ``fdatasync``.
* ``write(fua=True)`` is durable when it returns: it is written with ``pwritev(RWF_DSYNC)``
  (only that range is synced), falling back to ``pwrite`` + ``fdatasync`` where the kernel lacks
  per-write flags.
* ``discard()`` punches a hole; it is as durable as a write (the next flush covers it).
* ``close()`` flushes once more, so a clean shutdown loses nothing.
* A failed ``fdatasync`` is sticky: Linux may already have dropped the dirty pages, so a retry
  could falsely succeed. Every later flush fails too; the LUN has to be reopened.

Why the split between threads: ``pread``/``pwrite`` against the page cache take microseconds,
far less than the cost of handing the work to a thread, so they run on the event loop thread.
Anything that waits for the disk (``fdatasync``, synced writes, hole punching, extent walks,
large zero fills) runs in a worker thread via ``asyncio.to_thread`` so the loop keeps serving
other sessions meanwhile.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._types import Buffer, Received, Segments
from ..errors import BackendError, BackendNoSpace, BackendNotFound, ConfigError
from .base import Extent, FileSlice, extents_between

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

# Zero fills up to this size are done inline on the loop thread; larger ones go to a thread.
_INLINE_ZERO_LIMIT = 1 << 20
_IOV_MAX = 1024  # iovecs per pwritev(2) (Linux UIO_MAXIOV)
_ZERO_CHUNK = bytes(1 << 20)

_NOT_SUPPORTED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    """Return libc's 64-bit ``fallocate`` (os has only ``posix_fallocate``), or None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if func is None:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    result: Callable[[int, int, int, int], int] = func
    return result


_fallocate = _load_fallocate()


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate [offset, offset+length) keeping the file size; raises OSError."""
    if _fallocate is None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _translate(exc: OSError, path: str, what: str) -> BackendError:
    """Map an OSError to the backend error tree with a message naming the file."""
    detail = f"{what} {path}: {exc.strerror or exc}"
    if exc.errno == errno.ENOENT:
        return BackendNotFound(detail)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackendNoSpace(detail)
    return BackendError(detail)


class FileBackend:
    """A ``BlockBackend`` over one regular (normally sparse) file; see the module docstring."""

    def __init__(self, fd: int, path: str, size: int, block_size: int) -> None:
        self._fd = fd
        self._path = path
        self._size = size
        self._block_size = block_size
        self._punch_supported = True
        # Flush coalescing: every mutation bumps _write_gen; a completed fdatasync that started
        # at generation g makes everything <= g durable. Starts "dirty" so the first flush after
        # open also covers writes a previous process left in the page cache.
        self._write_gen = 1
        # (hole generation, start, end) of the last data run SEEK_DATA/SEEK_HOLE found; the
        # hole generation counts discards and resizes, the only things that make holes.
        self._data_run: tuple[int, int, int] | None = None
        self._hole_gen = 0
        self._synced_gen = 0
        self._sync_task: asyncio.Task[None] | None = None
        # After a failed fdatasync Linux may have dropped the dirty pages and a retry would
        # "succeed"; the failure is therefore sticky: every later flush reports it too.
        self._sync_error: BackendError | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def size(self) -> int:
        return self._size

    @property
    def discard_zeroes(self) -> bool:
        # Punched holes read as zeros; without hole punching we write zeros instead.
        return True

    # -- helpers ------------------------------------------------------------------------

    def _check(self, offset: int, length: int) -> int:
        fd = self._fd
        if fd < 0:
            raise BackendError(f"{self._path}: backend is closed")
        if offset < 0 or length < 0 or offset + length > self._size:
            raise BackendError(
                f"{self._path}: range {offset}+{length} outside device of {self._size} bytes"
            )
        return fd

    async def _in_thread(self, what: str, func: Callable[..., _T], *args: object) -> _T:
        try:
            return await asyncio.to_thread(func, *args)
        except OSError as exc:
            raise _translate(exc, self._path, what) from exc

    def _zero_fill(self, fd: int, offset: int, length: int) -> None:
        """Write zeros over the range with pwrite (blocking; no error translation)."""
        view = memoryview(_ZERO_CHUNK)
        end = offset + length
        while offset < end:
            n = os.pwrite(fd, view[: min(len(view), end - offset)], offset)
            offset += n

    async def _write_zeros(self, fd: int, offset: int, length: int) -> None:
        self._write_gen += 1
        self._note_write(offset, length)
        if length <= _INLINE_ZERO_LIMIT:
            try:
                self._zero_fill(fd, offset, length)
            except OSError as exc:
                raise _translate(exc, self._path, "zeroing") from exc
        else:
            await self._in_thread("zeroing", self._zero_fill, fd, offset, length)

    # -- datapath -----------------------------------------------------------------------

    async def read(self, offset: int, length: int) -> Buffer:
        return self.read_now(offset, length)

    def read_now(self, offset: int, length: int) -> Buffer:
        fd = self._check(offset, length)
        try:
            data = os.pread(fd, length, offset)
            if len(data) == length:
                return data
            # Short read: the file ends before the device does (truncated behind our back)
            # or the kernel returned early. Keep reading; whatever lies past EOF is zeros.
            buf = bytearray(length)
            got = len(data)
            buf[:got] = data
            while got < length:
                n = os.preadv(fd, [memoryview(buf)[got:]], offset + got)
                if n == 0:
                    break
                got += n
            return buf
        except OSError as exc:
            raise _translate(exc, self._path, "reading") from exc

    def _note_write(self, offset: int, length: int) -> None:
        run = self._data_run
        if run is not None and offset <= run[2] < offset + length:
            self._data_run = None  # the hole that ended the cached data run is filled now

    def read_slice(self, offset: int, length: int) -> FileSlice:
        """The range as a FileSlice for sendfile(2); the caller sends it before closing us."""
        return FileSlice(self._check(offset, length), offset, length)

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        if not fua:
            self.write_now(offset, data)
            return
        view = memoryview(data).cast("B")
        fd = self._check(offset, view.nbytes)
        self._write_gen += 1
        self._note_write(offset, view.nbytes)
        await self._in_thread("writing", self._write_synced, fd, view, offset)

    def write_now(self, offset: int, data: Received) -> None:
        length = data.nbytes if isinstance(data, memoryview | Segments) else len(data)
        fd = self._check(offset, length)
        self._write_gen += 1
        run = self._data_run
        if run is not None and offset <= run[2] < offset + length:
            self._data_run = None
        try:
            if isinstance(data, Segments):
                # Data-Out still in the receive buffers it arrived in: one pwritev, no join.
                n = os.pwritev(fd, data.parts[:_IOV_MAX], offset)
                if n == length:
                    return
                data = data.tobytes()  # short write or more pieces than one call takes
            else:
                n = os.pwrite(fd, data, offset)
            if n < length:  # short writes are rare on regular files, but legal
                view = memoryview(data).cast("B")
                while n < length:
                    n += os.pwrite(fd, view[n:], offset + n)
        except OSError as exc:
            raise _translate(exc, self._path, "writing") from exc

    def _write_synced(self, fd: int, view: memoryview, offset: int) -> None:
        """Blocking FUA write: RWF_DSYNC syncs just this range; else pwrite + fdatasync."""
        flag = getattr(os, "RWF_DSYNC", 0)
        done = 0
        if flag:
            try:
                while done < view.nbytes:
                    done += os.pwritev(fd, [view[done:]], offset + done, flag)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:], offset + done)
        os.fdatasync(fd)

    async def flush(self) -> None:
        if self._fd < 0:
            raise BackendError(f"{self._path}: backend is closed")
        target = self._write_gen
        while self._synced_gen < target:
            if self._sync_error is not None:
                raise self._sync_error
            task = self._sync_task
            if task is None:
                task = asyncio.get_running_loop().create_task(self._sync_once())
                self._sync_task = task
            # shield: a cancelled caller must not cancel a sync others are waiting on.
            await asyncio.shield(task)

    async def _sync_once(self) -> None:
        gen = self._write_gen
        try:
            await self._in_thread("syncing", os.fdatasync, self._fd)
            self._synced_gen = max(self._synced_gen, gen)
        except BackendError as exc:
            self._sync_error = exc
            raise
        finally:
            self._sync_task = None

    async def discard(self, offset: int, length: int) -> None:
        fd = self._check(offset, length)
        if length == 0:
            return
        self._write_gen += 1
        self._hole_gen += 1
        self._data_run = None
        if self._punch_supported:
            try:
                await asyncio.to_thread(_punch_hole, fd, offset, length)
                return
            except OSError as exc:
                if exc.errno not in _NOT_SUPPORTED:
                    raise _translate(exc, self._path, "punching a hole in") from exc
                log.info("%s: hole punching not supported, discard writes zeros", self._path)
                self._punch_supported = False
        await self._write_zeros(fd, offset, length)

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        if unmap:
            await self.discard(offset, length)
            return
        fd = self._check(offset, length)
        if length:
            await self._write_zeros(fd, offset, length)

    def mapped_now(self, offset: int, length: int) -> bool:
        """True when [offset, offset+length) is known to hold data without a syscall (inside
        the cached data run); False means "not known", not "unmapped"."""
        known = self._data_run
        return (
            self._fd >= 0
            and known is not None
            and known[0] == self._hole_gen
            and known[1] <= offset
            and offset + length <= known[2]
        )

    async def extents(self, offset: int, length: int) -> list[Extent]:
        fd = self._check(offset, length)
        if length == 0:
            return []
        known = self._data_run
        if (
            known is not None
            and known[0] == self._hole_gen
            and known[1] <= offset
            and offset + length <= known[2]
        ):
            return [Extent(offset, length, True)]  # all inside the cached data run: no hop
        return await self._in_thread("mapping", self._extents, fd, offset, length)

    def _extents(self, fd: int, offset: int, length: int) -> list[Extent]:
        """Walk SEEK_DATA/SEEK_HOLE; a block is mapped if any byte of it holds data."""
        bs = self._block_size
        end = offset + length
        mapped: list[tuple[int, int]] = []
        pos = offset
        write_gen = self._write_gen
        hole_gen = self._hole_gen
        while pos < end:
            known = self._data_run
            if known is not None and known[0] == hole_gen and known[1] <= pos < known[2]:
                # Inside a data run found earlier: no syscall. Writes cannot create holes, so
                # the run stays valid until a discard/resize or a write over its end (see
                # _note_write). tmpfs walks every page for SEEK_HOLE (15 ms per GiB), and QEMU
                # asks before each read.
                data, hole_at = pos, known[2]
            else:
                try:
                    data = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data at or after pos
                        break
                    if exc.errno == errno.EINVAL:  # filesystem cannot tell: say all mapped
                        return [Extent(offset, length, True)]
                    raise
                if data >= end:
                    break
                hole_at = os.lseek(fd, data, os.SEEK_HOLE)
                if self._write_gen == write_gen and self._hole_gen == hole_gen:
                    self._data_run = (hole_gen, data, hole_at)  # nothing changed meanwhile
            hole = min(hole_at, end)
            start = data - data % bs
            stop = min(-(-hole // bs) * bs, end)
            if mapped and start <= mapped[-1][1]:
                mapped[-1] = (mapped[-1][0], max(mapped[-1][1], stop))
            else:
                mapped.append((start, stop))
            pos = hole
        return extents_between(mapped, offset, end)

    # -- management ---------------------------------------------------------------------

    async def resize(self, size: int) -> None:
        if self._fd < 0:
            raise BackendError(f"{self._path}: backend is closed")
        if size < 0 or size % self._block_size:
            raise BackendError(
                f"{self._path}: size {size} is not a multiple of the block size {self._block_size}"
            )
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise _translate(exc, self._path, "resizing") from exc
        self._write_gen += 1
        self._hole_gen += 1
        self._data_run = None
        self._size = size

    async def close(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        try:
            if self._synced_gen < self._write_gen:
                await self.flush()
        finally:
            self._fd = -1
            os.close(fd)


def _validate_block_size(block_size: int) -> None:
    if block_size < 512 or block_size > 65536 or block_size & (block_size - 1):
        raise ConfigError(f"block_size {block_size}: must be a power of two from 512 to 65536")


async def open_file(
    *,
    path: str,
    size: int | None = None,
    block_size: int = 512,
    create: bool = False,
    **_: object,
) -> FileBackend:
    """Registry factory for the ``file`` backend.

    ``create=True`` makes the file (sparse, ``size`` bytes) and its parent directories when it
    does not exist; an existing file is reused and never truncated. When ``size`` is given and
    the existing file is smaller, it is grown to ``size`` (a resize that did not reach this
    file); a larger file keeps its size. The device size is the file size rounded down to
    whole blocks.
    """
    _validate_block_size(block_size)
    if size is not None and (size <= 0 or size % block_size):
        raise ConfigError(f"{path}: size {size} must be a positive multiple of {block_size}")
    flags = os.O_RDWR | os.O_CLOEXEC
    fd = -1
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            if not create:
                raise
            if size is None:
                raise ConfigError(f"{path}: cannot create a file backend without a size")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags | os.O_CREAT, 0o600)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BackendError(f"{path}: not a regular file")
        cur = st.st_size
        if size is not None and cur < size:
            os.ftruncate(fd, size)
            cur = size
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise _translate(exc, path, "opening") from exc
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    usable = cur - cur % block_size
    if usable == 0:
        os.close(fd)
        raise BackendError(f"{path}: file is smaller than one {block_size}-byte block")
    return FileBackend(fd, path, usable, block_size)
