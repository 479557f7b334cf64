"""libiscsi's iscsi-test-cu with its two paths through two gateways.

Gateway A (127.0.0.2) and gateway B (127.0.0.3) are two ``iscsigw serve --demo`` processes
sharing one ``--data-dir`` (so one gateway.conf, one file-backed demo LUN, one per-LU cluster
state). ``iscsi-test-cu --dataloss -i IQN1 -I IQN2 URL_A URL_B`` then runs every suite with
the MultipathIO suite's second path through B; libiscsi 1.19 also uses that second session
for every "second initiator" test (ProutReserve.Access*/Ownership*, Reserve6.2Initiators,
...), so persistent and SCSI-2 reservations, unit attentions after resets and COMPARE AND
WRITE atomicity are all exercised across the two gateways.

Zero failures are allowed outside ``known-failures-multigw.txt``. The same environment knobs
as ``test_iscsi_test_cu.py`` apply (ISCSIGW_CU_TESTS, ISCSIGW_CU_ARGS). Like that test it runs
without ``-S``: with SANITIZE allowed, Sanitize.Reset ends in
``while (TUR fails) sleep(60)`` without servicing its connection, so the gateway's NOP-In
timeout (5 + 5 s, ceph's values) drops it, the reconnected nexus reports 29/00 and the loop
never ends. Run the Sanitize suite test by test with ``ISCSIGW_CU_TESTS=SCSI.Sanitize.<Test>
ISCSIGW_CU_ARGS=-S``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.cunit import FAILED, PASSED, SKIPPED, UNKNOWN, load_known_failures, parse, table
from conformance.test_iscsi_test_cu import (
    BUILD_DIR,
    STALL_TIMEOUT,
    last_test_started,
    run_test_cu_urls,
)
from integration.harness import Gateway, require_tool

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent
KNOWN_FAILURES = HERE / "known-failures-multigw.txt"
OUT_DIR = BUILD_DIR / "multigw"


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    data, logs = tmp_path / "data", tmp_path / "logs"
    a = Gateway(data, logs, host="127.0.0.2", name="gwa")
    b = Gateway(data, logs, host="127.0.0.3", name="gwb")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for gw in (b, a):
            if gw.alive():
                gw.stop()
            gw.cleanup()


def test_iscsi_test_cu_two_gateways(two_gateways: tuple[Gateway, Gateway], tmp_path: Path) -> None:
    require_tool("iscsi-test-cu")
    a, b = two_gateways
    assert a.iqn == b.iqn and a.lun == b.lun
    known = load_known_failures(KNOWN_FAILURES)
    log_path = tmp_path / "iscsi-test-cu.log"
    rc, elapsed = run_test_cu_urls([a.lun_url(), b.lun_url()], log_path)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log_path, OUT_DIR / "iscsi-test-cu.log")
    for gw in (a, b):
        shutil.copyfile(gw.log_path, OUT_DIR / f"{gw.name}.stderr.log")

    text = log_path.read_text(errors="replace")
    log = parse(text)
    counts = log.counts()
    summary_line = (
        f"iscsi-test-cu (A={a.portal}, B={b.portal}): {counts[PASSED]} passed, "
        f"{counts[FAILED]} failed, {counts[SKIPPED]} skipped, {counts[UNKNOWN]} without result; "
        f"exit {rc}, {elapsed:.0f}s; log: {OUT_DIR / 'iscsi-test-cu.log'}"
    )
    report = table(log.results) + "\n\n" + summary_line
    (OUT_DIR / "results.txt").write_text(report + "\n")
    print(report)

    tail = "\n".join(text.splitlines()[-40:])
    a.assert_alive()
    b.assert_alive()
    assert rc is not None, (
        f"iscsi-test-cu was killed: no output for {STALL_TIMEOUT:.0f}s or too long in total; "
        f"stuck in {last_test_started(text)}\n{summary_line}\n{tail}"
    )
    assert log.results and log.summary is not None, f"no run summary\n{tail}"
    assert log.summary.ran == len(log.results)
    multipath = [r for r in log.results if r.name.startswith("MultipathIO.")]
    assert all(r.status == PASSED for r in multipath), table(multipath)
    unexpected = [r for r in log.results if r.status in (FAILED, UNKNOWN) and r.name not in known]
    now_passing = [r.name for r in log.results if r.name in known and r.status in (PASSED, SKIPPED)]
    if now_passing:
        print("\nknown failures that now pass:", ", ".join(now_passing))
    if os.environ.get("ISCSIGW_CU_TESTS", "ALL") == "ALL":
        assert len(multipath) == 4, table(multipath)
        assert counts[PASSED] >= 200, summary_line
    assert not unexpected, (
        f"{len(unexpected)} tests failed that are not in {KNOWN_FAILURES.name}:\n"
        + table(unexpected)
        + "\n\n"
        + summary_line
    )
