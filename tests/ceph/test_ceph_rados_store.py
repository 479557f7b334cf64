"""RadosConfigStore on a real cluster: racing writers in two processes, watch/notify latency."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from cephharness import CephCluster

from iscsigw.config.file_store import EpochConflict
from iscsigw.config.model import GatewayConfig
from iscsigw.config.rados_store import RadosConfigStore

pytestmark = pytest.mark.timeout(120)

# One writer process: N commits, each adding a gateway entry of its own (no expect_epoch: a
# lost race is retried on the newer document). Prints how many commits it made.
WRITER = r"""
import sys
from iscsigw.config.rados_store import RadosConfigStore
obj, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = RadosConfigStore(obj=obj)
store.load()  # connect before the race starts
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
epochs = []
for i in range(n):
    epochs.append(store.commit(lambda d, i=i: d["gateways"].__setitem__(f"{tag}-{i}", {"i": i})))
store.close()
print(" ".join(map(str, epochs)))
"""

# One process that loads epoch E and commits with expect_epoch=E: prints "ok N" or "conflict".
EXPECT = r"""
import sys
from iscsigw.config.rados_store import RadosConfigStore
from iscsigw.config.file_store import EpochConflict
obj, tag = sys.argv[1], sys.argv[2]
store = RadosConfigStore(obj=obj)
_, epoch = store.load()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
try:
    print("ok", store.commit(lambda d: d["gateways"].__setitem__(tag, {}), expect_epoch=epoch))
except EpochConflict:
    print("conflict")
store.close()
"""


def start_all(script: str, argvs: list[list[str]]) -> list[str]:
    """Start one process per argv, release them at once, return their outputs."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line == "ready\n", (line, p.stderr.read() if p.stderr else "")
    for p in procs:  # go!
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


@pytest.fixture
def obj() -> str:
    return f"gateway-{uuid.uuid4().hex[:8]}.conf"


@pytest.fixture
def store(ceph_cluster: CephCluster, obj: str) -> Any:
    s = RadosConfigStore(obj=obj)
    yield s
    s.close()


def test_missing_object_loads_empty_and_first_commit_creates_it(
    store: RadosConfigStore, ceph_cluster: CephCluster
) -> None:
    config, epoch = store.load()
    assert epoch == 0 and not config.disks and not store.exists()
    assert store.commit(lambda d: d["gateways"].__setitem__("gw1", {})) == 1
    raw = ceph_cluster.run_bytes("rados", "-p", "rbd", "get", store.obj, "-")
    doc = json.loads(raw)
    assert doc["epoch"] == 1 and "gw1" in doc["gateways"]
    assert ceph_cluster.run("rados", "-p", "rbd", "getxattr", store.obj, "epoch").strip() == "1"
    assert store.read_epoch() == 1
    # A change that changes nothing writes nothing.
    assert store.commit(lambda d: None) == 1
    # An invalid change is refused before anything is written.
    with pytest.raises(Exception, match="nothing was written"):
        store.commit(lambda d: d.__setitem__("disks", {"rbd/x": {"backstore": "nope"}}))
    assert store.load()[1] == 1


def test_racing_writers_never_lose_a_commit(store: RadosConfigStore, obj: str) -> None:
    n = 25
    stop = threading.Event()
    bad: list[str] = []
    seen: list[int] = []

    def reader() -> None:  # the object is a whole valid document at every moment
        r = RadosConfigStore(obj=obj)
        try:
            while not stop.is_set():
                try:
                    _config, epoch = r.load()
                    seen.append(epoch)
                except Exception as exc:
                    bad.append(repr(exc))
        finally:
            r.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        outs = start_all(WRITER, [[obj, "pa", str(n)], [obj, "pb", str(n)]])
    finally:
        stop.set()
        t.join()
    assert not bad, bad[:3]
    epochs = [int(e) for out in outs for e in out.split()]
    # Every commit got its own epoch: nobody overwrote anybody.
    assert sorted(epochs) == list(range(1, 2 * n + 1))
    config, epoch = store.load()
    assert epoch == 2 * n
    assert len(config.gateways) == 2 * n
    assert seen == sorted(seen)  # epochs only grow


def test_expect_epoch_lets_exactly_one_writer_win(store: RadosConfigStore, obj: str) -> None:
    store.commit(lambda d: d["gateways"].__setitem__("base", {}))
    outs = start_all(EXPECT, [[obj, "wa"], [obj, "wb"], [obj, "wc"]])
    assert sorted(o.split()[0] for o in outs) == ["conflict", "conflict", "ok"], outs
    config, epoch = store.load()
    assert epoch == 2 and len(config.gateways) == 2
    with pytest.raises(EpochConflict):
        store.commit(lambda d: None, expect_epoch=1)


def test_watch_notify_latency(ceph_cluster: CephCluster, obj: str) -> None:
    writer = RadosConfigStore(obj=obj)
    peer = RadosConfigStore(obj=obj)  # its own cluster connection, like another gateway
    got: dict[int, float] = {}
    cond = threading.Condition()

    def on_change(epoch: int | None) -> None:
        with cond:
            if epoch is not None:
                got[epoch] = time.perf_counter()
            cond.notify_all()

    watch = peer.watch(on_change)
    latencies = []
    try:
        for i in range(20):
            t0 = time.perf_counter()
            epoch = writer.commit(lambda d, i=i: d["gateways"].__setitem__(f"g{i}", {}))
            with cond:
                assert cond.wait_for(lambda e=epoch: e in got, timeout=5), "no notify in 5 s"
            latencies.append(got[epoch] - t0)
            # The notified peer reads the committed document.
            assert peer.load()[1] == epoch
    finally:
        watch.close()
        writer.close()
        peer.close()
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"\n[ceph] config commit -> peer notified: median {statistics.median(ms):.1f} ms, "
        f"max {ms[-1]:.1f} ms over {len(ms)} commits"
    )
    assert ms[-1] < 1000


def test_watch_with_loop_delivers_on_the_loop(store: RadosConfigStore, obj: str) -> None:
    import asyncio

    async def main() -> int | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int | None] = loop.create_future()
        peer = RadosConfigStore(obj=obj)

        def cb(epoch: int | None) -> None:
            assert asyncio.get_running_loop() is loop
            if not fut.done():
                fut.set_result(epoch)

        w = await asyncio.to_thread(peer.watch, cb, loop=loop)
        try:
            epoch = await asyncio.to_thread(
                store.commit, lambda d: d["gateways"].__setitem__("x", {})
            )
            assert await asyncio.wait_for(fut, 5) == epoch
            return epoch
        finally:
            w.close()
            await asyncio.to_thread(peer.close)

    assert asyncio.run(main()) == store.load()[1]


def test_config_object_matches_the_model(store: RadosConfigStore) -> None:
    store.commit(
        lambda d: d["disks"].__setitem__(
            "rbd/disk_1", {"pool": "rbd", "image": "disk_1", "backstore": "rbd", "size": 1 << 30}
        )
    )
    config, _ = store.load()
    assert isinstance(config, GatewayConfig)
    assert config.disks["rbd/disk_1"].backstore == "rbd"


def test_watch_reestablished_after_an_error_asks_for_a_reread(
    store: RadosConfigStore, obj: str
) -> None:
    got: list[int | None] = []
    cond = threading.Condition()

    def on_change(epoch: int | None) -> None:
        with cond:
            got.append(epoch)
            cond.notify_all()

    peer = RadosConfigStore(obj=obj)
    watch = peer.watch(on_change)
    try:
        watch._on_error(-107)  # what librados reports when the watch session is lost (ENOTCONN)
        with cond:
            assert cond.wait_for(lambda: None in got, timeout=10), "no re-read request"
        assert watch.reconnects == 1
        epoch = store.commit(lambda d: d["gateways"].__setitem__("after", {}))
        with cond:
            assert cond.wait_for(lambda: epoch in got, timeout=5), "re-established watch is deaf"
    finally:
        watch.close()
        peer.close()
