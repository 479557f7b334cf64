"""rbd backend pieces that need no cluster: errno translation, the CAW capability helper.

The cluster tests are in tests/ceph/. These need only Ceph's Python bindings to import the
module (skipped without them; the base-helper tests always run).
"""

from __future__ import annotations

import errno

import pytest

from iscsigw.backends.base import compare_and_write, first_mismatch
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import BackendError, BackendFenced, BackendNoSpace, BackendNotFound


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (b"", b"", -1),
        (b"abc", b"abc", -1),
        (b"abc", b"abd", 2),
        (bytes(4096), bytes(4095) + b"\x01", 4095),
        (bytes(4096), b"\x01" + bytes(4095), 0),
        (bytes(1000), bytes(500) + b"\x01" + bytes(499), 500),
    ],
)
def test_first_mismatch(a: bytes, b: bytes, expected: int) -> None:
    assert first_mismatch(a, b) == expected
    assert first_mismatch(bytearray(a), memoryview(b)) == expected


async def test_compare_and_write_falls_back_to_read_compare_write() -> None:
    m = MemoryBackend(8192)
    await m.write(512, b"a" * 512)
    assert await compare_and_write(m, 512, b"a" * 512, b"b" * 512) == -1
    assert await m.read(512, 512) == b"b" * 512
    assert await compare_and_write(m, 512, b"b" * 10 + b"x" + b"b" * 501, b"c" * 512) == 10
    assert await m.read(512, 512) == b"b" * 512


async def test_compare_and_write_uses_the_backend_capability() -> None:
    calls = []

    class Native(MemoryBackend):
        async def compare_and_write(
            self, offset: int, compare: bytes, data: bytes, *, fua: bool = False
        ) -> int:
            calls.append((offset, fua))
            return 7

    assert await compare_and_write(Native(4096), 0, bytes(512), bytes(512), fua=True) == 7
    assert calls == [(0, True)]


@pytest.fixture
def rbdmod() -> object:
    pytest.importorskip("rados", reason="Ceph's Python bindings (python3-rados) not installed")
    pytest.importorskip("rbd", reason="Ceph's Python bindings (python3-rbd) not installed")
    from iscsigw.backends import rbd as mod

    return mod


@pytest.mark.parametrize(
    ("err", "cls"),
    [
        (errno.ENOENT, BackendNotFound),
        (errno.ENOSPC, BackendNoSpace),
        (errno.EDQUOT, BackendNoSpace),
        (errno.ESHUTDOWN, BackendFenced),  # EBLOCKLISTED
        (errno.EROFS, BackendFenced),  # another client holds the exclusive lock
        (errno.EIO, BackendError),
        (errno.ETIMEDOUT, BackendError),
    ],
)
def test_errno_translation(rbdmod: object, err: int, cls: type[BackendError]) -> None:
    exc = rbdmod._translate_errno(-err, "rbd/img: writing")  # type: ignore[attr-defined]
    assert type(exc) is cls
    assert "rbd/img: writing" in str(exc)


def test_bindings_exceptions_translate(rbdmod: object) -> None:
    import rbd

    t = rbdmod._translate  # type: ignore[attr-defined]
    assert isinstance(t(rbd.ImageNotFound("x", errno=errno.ENOENT), "op"), BackendNotFound)
    assert isinstance(t(rbd.ConnectionShutdown("x", errno=errno.ESHUTDOWN), "op"), BackendFenced)
    assert isinstance(t(rbd.ReadOnlyImage("x", errno=errno.EROFS), "op"), BackendFenced)
    assert isinstance(t(rbd.NoSpace("x", errno=errno.ENOSPC), "op"), BackendNoSpace)
    assert type(t(RuntimeError("boom"), "op")) is BackendError


def test_missing_conf_is_a_config_error(rbdmod: object, tmp_path: object) -> None:
    from iscsigw.errors import ConfigError

    settings = rbdmod.CephSettings(conf="/nonexistent/ceph.conf")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="not found"):
        rbdmod.connect(settings)  # type: ignore[attr-defined]


def test_registered() -> None:
    from iscsigw.backends import registry

    assert "rbd" in registry.names()
