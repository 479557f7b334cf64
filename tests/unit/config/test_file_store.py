"""FileConfigStore: epochs, refusal of invalid changes, atomic replace, and real process races."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
import time
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest

from iscsigw.config.file_store import EpochConflict, FileConfigStore
from iscsigw.config.model import GatewayConfig
from iscsigw.errors import ConfigError

CTX = mp.get_context("fork")


def add_gateway(name: str) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        doc.setdefault("gateways", {})[name] = {"active_luns": 0}

    return mutate


def test_missing_file_loads_as_empty(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    cfg, epoch = store.load()
    assert epoch == 0 and cfg == GatewayConfig.empty()
    assert not store.exists()


def test_commit_creates_file_bumps_epoch_and_stamps(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "sub" / "gateway.conf")
    assert store.commit(lambda doc: None) == 1  # creating the file is a change
    assert store.exists()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600  # holds CHAP secrets
    assert store.commit(add_gateway("gw1"), expect_epoch=1) == 2
    cfg, epoch = store.load()
    assert epoch == 2 and cfg.epoch == 2 and set(cfg.gateways) == {"gw1"}
    raw = json.loads(store.path.read_text())
    assert raw["version"] == 11
    assert time.strptime(raw["created"], "%Y/%m/%d %H:%M:%S")
    assert time.strptime(raw["updated"], "%Y/%m/%d %H:%M:%S")
    assert list(raw) == sorted(raw)  # written with sorted keys, like ceph-iscsi


def test_no_op_commit_writes_nothing(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    store.commit(add_gateway("gw1"))
    before = os.stat(store.path)
    assert store.commit(add_gateway("gw1")) == 1
    after = os.stat(store.path)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_stale_epoch_is_a_conflict(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    store.commit(add_gateway("gw1"))
    store.commit(add_gateway("gw2"))
    with pytest.raises(EpochConflict, match="now epoch 2, expected 1") as info:
        store.commit(add_gateway("gw3"), expect_epoch=1)
    assert isinstance(info.value, ConfigError)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert "gw3" not in store.load()[0].gateways


def test_invalid_change_is_refused_and_file_untouched(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    store.commit(add_gateway("gw1"))
    text = store.path.read_text()

    def bad(doc: dict[str, Any]) -> None:
        doc["targets"] = {"not-an-iqn": {}}

    with pytest.raises(
        ConfigError, match=r"change refused, nothing was written: targets\['not-an-iqn'\]"
    ):
        store.commit(bad)
    assert store.path.read_text() == text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_mutator_exception_aborts(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    store.commit(add_gateway("gw1"))

    def boom(doc: dict[str, Any]) -> None:
        doc["gateways"]["gw2"] = {}
        raise ConfigError("no thanks")

    with pytest.raises(ConfigError, match="no thanks"):
        store.commit(boom)
    assert store.load()[1] == 1


def test_mutator_gets_a_copy(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    seen: list[dict[str, Any]] = []
    store.commit(lambda doc: seen.append(doc))
    seen[0]["gateways"]["sneaky"] = {}  # changing it afterwards changes nothing
    assert "sneaky" not in store.load()[0].gateways


def test_corrupt_file_is_reported(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    store.path.write_text('{"version": 11, "epoch": ')
    with pytest.raises(ConfigError, match=r"gateway.conf: not valid JSON \(line 1"):
        store.load()
    store.path.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        store.load()
    store.path.write_text('{"version": 9}')
    with pytest.raises(ConfigError, match=r"gateway\.conf: config\.version 9"):
        store.load()


def test_unknown_keys_survive_commits(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    doc = GatewayConfig.empty_dict()
    doc["future_key"] = {"x": 1}
    store.path.write_text(json.dumps(doc))
    store.commit(add_gateway("gw1"))
    assert json.loads(store.path.read_text())["future_key"] == {"x": 1}


# -- races between real processes ------------------------------------------------------------


def _race_once(path: str, barrier: Barrier, name: str, results: Any) -> None:
    store = FileConfigStore(path)
    _, epoch = store.load()
    barrier.wait()  # both have read the same epoch; now both commit
    try:
        results.put((name, "won", store.commit(add_gateway(name), expect_epoch=epoch)))
    except EpochConflict as exc:
        results.put((name, "conflict", exc.actual))


def test_two_processes_race_one_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.conf")
    FileConfigStore(path).commit(lambda doc: None)
    for round_ in range(5):
        barrier = CTX.Barrier(2)
        results = CTX.Queue()
        procs = [
            CTX.Process(target=_race_once, args=(path, barrier, f"gw{round_}{c}", results))
            for c in "ab"
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        outcome = sorted(results.get(timeout=5) for _ in procs)
        assert [o[1] for o in outcome].count("won") == 1, outcome
        assert [o[1] for o in outcome].count("conflict") == 1, outcome
        winner = next(o for o in outcome if o[1] == "won")
        cfg, epoch = FileConfigStore(path).load()
        assert epoch == round_ + 2 == winner[2]
        assert winner[0] in cfg.gateways
        loser = next(o for o in outcome if o[1] == "conflict")
        assert loser[0] not in cfg.gateways and loser[2] == epoch


def _increment_with_retry(path: str, name: str, count: int, start: Event) -> None:
    store = FileConfigStore(path)
    start.wait()
    for i in range(count):
        while True:
            _, epoch = store.load()
            try:
                store.commit(add_gateway(f"{name}-{i}"), expect_epoch=epoch)
                break
            except EpochConflict:
                continue


def _reader(path: str, stop: Event, bad: Any) -> None:
    reads = 0
    while not stop.is_set():
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            continue
        try:
            json.loads(text)
            reads += 1
        except ValueError:
            bad.put(text[:200])
            return
    bad.put(reads)


def test_concurrent_writers_with_retry_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.conf")
    FileConfigStore(path).commit(lambda doc: None)
    start, stop = CTX.Event(), CTX.Event()
    bad = CTX.Queue()
    reader = CTX.Process(target=_reader, args=(path, stop, bad))
    reader.start()
    writers = [
        CTX.Process(target=_increment_with_retry, args=(path, f"w{n}", 15, start)) for n in range(4)
    ]
    for w in writers:
        w.start()
    start.set()
    for w in writers:
        w.join(60)
        assert w.exitcode == 0
    stop.set()
    reader.join(10)
    reads = bad.get(timeout=5)
    assert isinstance(reads, int) and reads > 0, f"reader saw a torn file: {reads!r}"
    cfg, epoch = FileConfigStore(path).load()
    assert epoch == 1 + 4 * 15
    assert len(cfg.gateways) == 4 * 15
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _hold_lock(path: str, locked: Event, release: Event) -> None:
    def slow(doc: dict[str, Any]) -> None:
        locked.set()
        release.wait(10)
        doc.setdefault("gateways", {})["slow"] = {}

    FileConfigStore(path).commit(slow)


def test_commit_waits_for_the_lock_and_rereads(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.conf")
    FileConfigStore(path).commit(lambda doc: None)
    locked, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold_lock, args=(path, locked, release))
    holder.start()
    assert locked.wait(10)
    release_at = time.monotonic() + 0.3
    timer = CTX.Process(target=_release_later, args=(release, 0.3))
    timer.start()
    # No expect_epoch: applied on top of whatever the holder committed.
    epoch = FileConfigStore(path).commit(add_gateway("fast"))
    assert time.monotonic() >= release_at - 0.05  # it really waited for the lock
    holder.join(10)
    timer.join(10)
    cfg, final = FileConfigStore(path).load()
    assert epoch == final == 3
    assert {"slow", "fast"} <= set(cfg.gateways)


def _release_later(release: Event, delay: float) -> None:
    time.sleep(delay)
    release.set()
