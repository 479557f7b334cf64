"""The configuration document in a local file, changed only by whole-document commits.

This is the single-host counterpart of ceph-iscsi's RADOS object (``rbd/gateway.conf`` with an
``epoch`` xattr): one JSON document, an epoch that grows by one per committed change, and a
lock held while a change is applied. The guarantees:

* Readers take no lock and never see a half-written file: a commit writes a temporary file in
  the same directory, fsyncs it, ``os.replace``s it over the old one and fsyncs the directory,
  so after a crash the file is either the old or the new document.
* Writers serialise on ``flock`` of a separate ``<name>.lock`` file (never deleted: deleting a
  lock file lets two writers lock two different inodes). Under the lock the document is read
  again, so a change is always applied to the latest version.
* Optimistic concurrency: ``commit(..., expect_epoch=N)`` fails with ``EpochConflict`` when
  someone else committed since the caller read epoch N (the caller reloads and retries).
* A change that would make the document invalid is refused before anything is written.

The file holds CHAP secrets, so it is created with mode 0600.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import CONFIG_VERSION, GatewayConfig, timestamp

Mutator = Callable[[dict[str, Any]], None]


class EpochConflict(ConfigError):
    """The document changed since the caller read it; reload and retry."""

    def __init__(self, path: Path, expected: int, actual: int) -> None:
        super().__init__(
            f"{path}: the configuration changed meanwhile (now epoch {actual}, "
            f"expected {expected}); reload it and try again"
        )
        self.expected = expected
        self.actual = actual


class FileConfigStore:
    """``gateway.conf`` on the local filesystem; see the module docstring for guarantees."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"FileConfigStore({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def change_token(self) -> object:
        """A cheap value that changes whenever a commit replaced the file (for watchers)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- reading --------------------------------------------------------------------------

    def _read_raw(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the configuration: {exc.strerror}")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
            )
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.path}: the configuration must be a JSON object")
        return doc

    def load_dict(self) -> dict[str, Any]:
        """The raw document (an empty one, epoch 0, when the file does not exist yet)."""
        doc = self._read_raw()
        return GatewayConfig.empty_dict() if doc is None else doc

    def load(self) -> tuple[GatewayConfig, int]:
        """The validated configuration and its epoch."""
        doc = self.load_dict()
        try:
            config = GatewayConfig.from_dict(doc)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}")
        return config, config.epoch

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"{self.lock_path}: cannot create the lock file: {exc.strerror}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def commit(self, mutator: Mutator, expect_epoch: int | None = None) -> int:
        """Apply ``mutator`` to the latest document and write it; return the new epoch.

        ``mutator`` changes the dict in place (it may raise ``ConfigError`` to abort). If it
        changes nothing and the file exists, nothing is written and the current epoch is
        returned. Blocks while another process commits; call it via ``asyncio.to_thread``
        from the event loop.
        """
        with self._locked():
            current = self._read_raw()
            epoch, doc = next_document(
                current,
                mutator,
                expect_epoch,
                str(self.path),
                functools.partial(EpochConflict, self.path),
            )
            if doc is None:
                return epoch
            try:
                self._write_atomically(doc)
            except OSError as exc:
                raise ConfigError(f"{self.path}: cannot write the configuration: {exc.strerror}")
            return epoch + 1

    def _write_atomically(self, doc: dict[str, Any]) -> None:
        data = (json.dumps(doc, indent=4, sort_keys=True) + "\n").encode()
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def next_document(
    current: dict[str, Any] | None,
    mutator: Callable[[dict[str, Any]], None],
    expect_epoch: int | None,
    where: str,
    conflict: Callable[[int, int], ConfigError],
) -> tuple[int, dict[str, Any] | None]:
    """The step every store's commit shares: check the epoch, apply ``mutator`` to a copy of
    ``current``, stamp and validate the result. Returns ``(current epoch, new document)``, the
    document None when the mutator changed nothing (on an existing document)."""
    epoch = 0 if current is None else current.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ConfigError(f"{where}: epoch {epoch!r} is not an integer")
    if expect_epoch is not None and expect_epoch != epoch:
        raise conflict(expect_epoch, epoch)
    before = GatewayConfig.empty_dict() if current is None else current
    doc = copy.deepcopy(before)
    mutator(doc)
    if current is not None and doc == before:
        return epoch, None
    now = timestamp()
    doc.setdefault("version", CONFIG_VERSION)
    doc["epoch"] = epoch + 1
    doc["updated"] = now
    if not doc.get("created"):
        doc["created"] = now
    try:
        GatewayConfig.from_dict(doc)
    except ConfigError as exc:
        raise ConfigError(f"change refused, nothing was written: {exc}")
    return epoch, doc
