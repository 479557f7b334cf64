"""Process lifecycle: clean exit on SIGTERM/SIGINT with data on disk, and refusing a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from integration.harness import Gateway, GatewayFactory, free_port, require_tool, run_tool

MiB = 1 << 20


def read_backing(gw: Gateway, offset: int, length: int) -> bytes:
    with open(gw.disk_path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_sigterm_after_qemu_write_keeps_data(gateway: Gateway, tmp_path: Path) -> None:
    require_tool("qemu-img")
    data = os.urandom(8 * MiB)
    src = tmp_path / "src.img"
    src.write_bytes(data)
    res = run_tool(
        [
            "qemu-img",
            "convert",
            "-n",
            "-f",
            "raw",
            str(src),
            "--target-image-opts",
            gateway.qemu_opts(),
        ]
    )
    assert res.returncode == 0, res.describe()
    gateway.stop(signal.SIGTERM)  # asserts exit code 0 within 10 s
    assert read_backing(gateway, 0, len(data)) == data


def test_sigterm_with_open_session_and_unsynced_writes(gateway: Gateway) -> None:
    """Writes without FUA or SYNCHRONIZE CACHE, session still logged in, then SIGTERM: the
    gateway exits 0 within 10 s and the written blocks are in the backing file."""
    s = gateway.login()
    try:
        assert s.test_unit_ready().status == 0
        _, bs = s.read_capacity16()
        chunks = {lba: os.urandom(64 * 1024) for lba in (0, 8192, 2 * 1024 * 1024 - 256)}
        last_lba = (1 << 30) // bs - (64 * 1024) // bs
        chunks[last_lba] = os.urandom(64 * 1024)
        for lba, data in chunks.items():
            if lba * bs + len(data) > 1 << 30:
                continue
            w = s.write10(lba, data, bs)
            assert w.status == 0, f"WRITE(10) at {lba}: 0x{w.status:02x} {w.sense.hex()}"
        gateway.stop(signal.SIGTERM)
    finally:
        s.close()
    for lba, data in chunks.items():
        if lba * bs + len(data) > 1 << 30:
            continue
        assert read_backing(gateway, lba * bs, len(data)) == data, f"data at LBA {lba} lost"
    assert gateway.disk_path.stat().st_size == 1 << 30


def test_sigint_exits_cleanly(gateway: Gateway) -> None:
    with gateway.login() as s:
        assert s.test_unit_ready().status == 0
        gateway.stop(signal.SIGINT)


def test_restart_keeps_config_and_data(gateway: Gateway) -> None:
    """A restart on the same data dir serves the same target, credentials and data."""
    data = os.urandom(256 * 1024)
    with gateway.login() as s:
        assert s.test_unit_ready().status == 0
        _, bs = s.read_capacity16()
        assert s.write10(100, data, bs).status == 0
    gateway.restart()
    with gateway.login() as s:
        s.test_unit_ready()
        r = s.read10(100, len(data) // bs, bs)
        assert r.status == 0 and r.data == data


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    """A portal whose port is taken: clear message on stderr, non-zero exit, quickly."""
    host = "127.0.0.1"
    port = free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind((host, port))
        blocker.listen(1)
        gw = Gateway(tmp_path / "data", tmp_path / "logs", host=host, port=port)
        started = time.monotonic()
        proc = subprocess.run(
            gw.argv(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        elapsed = time.monotonic() - started
    assert proc.returncode != 0, f"gateway started on a busy port:\n{proc.stdout}\n{proc.stderr}"
    assert elapsed < 20, f"took {elapsed:.1f}s to give up"
    err = proc.stderr.lower()
    assert str(port) in err or "in use" in err, f"unclear error message:\n{proc.stderr}"
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr


def test_two_gateways_on_loopback_aliases(gateway_factory: GatewayFactory) -> None:
    """Two independent gateways (127.0.0.1 and 127.0.0.2) run side by side and stop cleanly."""
    gw1 = gateway_factory(name="gw1", host="127.0.0.1")
    gw2 = gateway_factory(name="gw2", host="127.0.0.2")
    for gw in (gw1, gw2):
        res = run_tool(["iscsi-inq", gw.lun_url()])
        assert res.returncode == 0, res.describe()
    gw2.stop()
    gw1.assert_alive()
    res = run_tool(["iscsi-inq", gw1.lun_url()])
    assert res.returncode == 0, res.describe()
