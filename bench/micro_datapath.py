"""CPU cost of the datapath per I/O, without sockets: PDUs in, PDUs out, in one process.

Drives the real sans-IO ``Connection``, the real SCSI ``LogicalUnit`` and a real backend
(``file`` on /dev/shm, or ``memory``) the way ``gateway/driver.py`` does, and reports
microseconds of CPU per command. Far less sensitive to other load on the machine than the
end-to-end benchmark, so it is the one to use when changing the hot path:

    python3 bench/micro_datapath.py [--ios 50000] [--size 4096] [--write] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from iscsigw.backends.file import open_file
from iscsigw.backends.memory import MemoryBackend
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.auth import ChapSecrets
from iscsigw.iscsi.connection import Connection
from iscsigw.iscsi.events import CommandReady, LoginCompleted
from iscsigw.iscsi.framing import encode_bytes
from iscsigw.iscsi.keys import TargetSettings
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.target import LunMap
from iscsigw.scsi.task import ITNexus, ScsiCommand

TARGET = "iqn.2026-11.io.iscsigw:bench"
INITIATOR = "iqn.2026-11.io.iscsigw:bench-initiator"
SIZE = 1 << 30


class _Target:
    name = TARGET
    alias = ""
    tpgt = 1

    def allows(self, initiator_name: str) -> bool:
        return True

    def chap_for(self, initiator_name: str) -> ChapSecrets | None:
        return None


class _Policy:
    settings = TargetSettings()

    def find_target(self, name: str) -> _Target | None:
        return _Target()

    def discovery_chap(self, initiator_name: str) -> ChapSecrets | None:
        return None

    def bind_session(self, **_: object) -> int:
        return 1

    def send_targets(self, *_: object) -> list[tuple[str, list[str]]]:
        return []


def _cdb(write: bool, lba: int, blocks: int) -> bytes:
    return (
        bytes([0x2A if write else 0x28, 0])
        + lba.to_bytes(4, "big")
        + bytes([0])
        + blocks.to_bytes(2, "big")
        + bytes([0])
    )


async def run(
    ios: int, size: int, write: bool, depth: int, backend_kind: str, slow: bool = False
) -> float:
    if backend_kind == "file":
        path = (
            Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)) / "disk"
        )
        backend = await open_file(path=str(path), size=SIZE, create=True)
    else:
        backend = MemoryBackend(SIZE)
    lu = LogicalUnit(backend, LuIdentity.from_stable_id("bench"))
    lunmap = LunMap({0: lu})
    conn = Connection(_Policy(), _Policy(), now=0.0)  # type: ignore[arg-type]
    keys = (
        f"InitiatorName={INITIATOR}\0SessionType=Normal\0TargetName={TARGET}\0"
        "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0"
        "ImmediateData=Yes\0InitialR2T=Yes\0MaxBurstLength=1048576\0FirstBurstLength=262144\0"
    ).encode()
    conn.receive_data(
        encode_bytes(
            P.login_request(isid=1, itt=0, cmdsn=1, csg=1, nsg=3, transit=True, data=keys)
        ),
        0.0,
    )
    ev = conn.next_event()
    assert isinstance(ev, LoginCompleted), ev
    conn.data_to_send()
    nexus = ITNexus(INITIATOR, 1, TARGET, 1)
    blocks = size // 512
    rnd = random.Random(1)
    payload = os.urandom(size) if write else b""
    # Pre-encode the commands in batches of `depth` (what one recv() would carry at QD=depth).
    batches: list[bytes] = []
    cmdsn = 1
    for start in range(0, ios, depth):
        chunk = []
        for itt in range(start, min(ios, start + depth)):
            lba = rnd.randrange(0, SIZE // 512 - blocks)
            chunk.append(
                encode_bytes(
                    P.scsi_command(
                        itt,
                        _cdb(write, lba, blocks),
                        edtl=size,
                        cmdsn=cmdsn,
                        read=not write,
                        write=write,
                        data=payload,
                    )
                )
            )
            cmdsn += 1
        batches.append(b"".join(chunk))
    sent = 0
    t0 = time.process_time()
    for batch in batches:
        conn.receive_data(batch, 0.0)
        while (ev := conn.next_event()) is not None:
            assert isinstance(ev, CommandReady)
            if not slow:
                data = lu.execute_now(nexus, ev.cdb, ev.data, ev.expected_length)
                if data is not None:
                    conn.complete_good(ev.itt, data)
                    continue
            result = await lunmap.execute(
                ev.lun,
                ScsiCommand(
                    ev.cdb, nexus, expected_length=ev.expected_length, data_out=ev.data, tag=ev.itt
                ),
            )
            conn.complete_command(ev.itt, result, len(ev.data) if ev.write else None)
        for buf in conn.data_to_send():
            sent += len(buf)
    elapsed = time.process_time() - t0
    await backend.close()
    return elapsed * 1e6 / ios


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ios", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--backend", choices=("file", "memory"), default="file")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--slow",
        action="store_true",
        help="skip the READ/WRITE fast path (LogicalUnit.execute_now)",
    )
    args = ap.parse_args()
    coro = run(args.ios, args.size, args.write, args.depth, args.backend, args.slow)
    if args.profile:
        prof = cProfile.Profile()
        us = prof.runcall(asyncio.run, coro)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        us = asyncio.run(coro)
    kind = ("write" if args.write else "read") + (" (slow path)" if args.slow else "")
    print(
        f"{kind} {args.size} B QD{args.depth} {args.backend}: {us:.1f} us CPU per I/O ({1e6 / us:,.0f} IOPS on one core)"
    )


if __name__ == "__main__":
    main()
