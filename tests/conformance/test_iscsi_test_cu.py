"""libiscsi's conformance suite (iscsi-test-cu) against a fresh gateway's file-backed demo LUN.

Runs ``iscsi-test-cu --dataloss -t ALL -i IQN1 -I IQN2 URL URL`` (the URL twice opens a second
session and enables the MultipathIO suite), keeps the full log in the test's tmp dir and in
``build/conformance/``, prints a pass/fail/skip table, and fails when a test not listed in
``known-failures.txt`` fails (or the tool crashes / never reaches its summary).

Environment knobs for development:
  ISCSIGW_CU_TESTS   test selection instead of ALL, e.g. ``SCSI.Read10`` or ``iSCSI``
  ISCSIGW_CU_ARGS    extra arguments, e.g. ``--allow-sanitize``
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conformance.cunit import FAILED, PASSED, SKIPPED, UNKNOWN, load_known_failures, parse, table
from integration.harness import REPO_ROOT, Gateway, require_tool

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent
KNOWN_FAILURES = HERE / "known-failures.txt"
BUILD_DIR = REPO_ROOT / "build" / "conformance"
INITIATOR_1 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
INITIATOR_2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
RUN_TIMEOUT = 600.0  # whole run (a healthy one takes well under a minute)
STALL_TIMEOUT = 180.0  # no new output for this long: the tool is stuck on one test


def run_test_cu(gw: Gateway, log_path: Path) -> tuple[int | None, float]:
    """Run the tool with both paths through ``gw`` (its URL twice)."""
    url = gw.lun_url()
    return run_test_cu_urls([url, url], log_path)


def run_test_cu_urls(
    urls: list[str], log_path: Path, options: tuple[str, ...] = ()
) -> tuple[int | None, float]:
    """Run the tool with its output going straight to ``log_path`` (kept even on a hang)."""
    tests = os.environ.get("ISCSIGW_CU_TESTS", "ALL")
    extra = [*options, *shlex.split(os.environ.get("ISCSIGW_CU_ARGS", ""))]
    argv = [
        "iscsi-test-cu",
        "--dataloss",
        "-t",
        tests,
        "-i",
        INITIATOR_1,
        "-I",
        INITIATOR_2,
        *extra,
        *urls,
    ]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        log.write(("$ " + shlex.join(argv) + "\n").encode())
        log.flush()
        # line-buffered stdout, so the log shows where a stuck run stopped
        stdbuf = ["stdbuf", "-oL", "-eL"] if shutil.which("stdbuf") else []
        proc = subprocess.Popen(
            [*stdbuf, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        rc: int | None = None
        last_size, last_change = -1, started
        while True:
            try:
                rc = proc.wait(1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            size = log_path.stat().st_size
            if size != last_size:
                last_size, last_change = size, now
            if now - started > RUN_TIMEOUT or now - last_change > STALL_TIMEOUT:
                proc.kill()
                proc.wait(10)
                rc = None
                break
    return rc, time.monotonic() - started


def last_test_started(text: str) -> str:
    suite, test = "?", "?"
    for line in text.splitlines():
        if line.startswith("Suite: "):
            suite = line[7:].strip()
        elif line.startswith("  Test: "):
            test = line[8:].split(" ...")[0]
    return f"{suite}.{test}"


def test_iscsi_test_cu(gateway: Gateway, tmp_path: Path) -> None:
    require_tool("iscsi-test-cu")
    known = load_known_failures(KNOWN_FAILURES)
    log_path = tmp_path / "iscsi-test-cu.log"
    rc, elapsed = run_test_cu(gateway, log_path)

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log_path, BUILD_DIR / "iscsi-test-cu.log")
    shutil.copyfile(gateway.log_path, BUILD_DIR / "gateway.stderr.log")

    text = log_path.read_text(errors="replace")
    log = parse(text)
    counts = log.counts()
    summary_line = (
        f"iscsi-test-cu: {counts[PASSED]} passed, {counts[FAILED]} failed, "
        f"{counts[SKIPPED]} skipped, {counts[UNKNOWN]} without result; "
        f"exit {rc}, {elapsed:.0f}s; log: {BUILD_DIR / 'iscsi-test-cu.log'}"
    )
    report = table(log.results) + "\n\n" + summary_line
    (BUILD_DIR / "results.txt").write_text(report + "\n")
    print(report)

    tail = "\n".join(text.splitlines()[-40:])
    gateway.assert_alive()
    assert rc is not None, (
        f"iscsi-test-cu was killed: no output for {STALL_TIMEOUT:.0f}s or over {RUN_TIMEOUT:.0f}s "
        f"in total; stuck in {last_test_started(text)}\n{summary_line}\n{tail}"
    )
    assert log.results, f"no test results in the log\n{tail}"
    assert log.summary is not None, f"iscsi-test-cu ended without its run summary\n{tail}"
    assert log.summary.ran == len(log.results), (
        f"parsed {len(log.results)} tests but CUnit ran {log.summary.ran}"
    )
    assert log.summary.failed == counts[FAILED], (
        f"parsed {counts[FAILED]} failures but CUnit counted {log.summary.failed}"
    )

    unexpected = [r for r in log.results if r.status in (FAILED, UNKNOWN) and r.name not in known]
    now_passing = [r.name for r in log.results if r.name in known and r.status in (PASSED, SKIPPED)]
    ran = {r.name for r in log.results}
    stale = sorted(n for n in known if n not in ran)
    if now_passing:
        print("\nknown failures that now pass (remove them from known-failures.txt):")
        print("\n".join(f"  {n}" for n in now_passing))
    if stale and os.environ.get("ISCSIGW_CU_TESTS", "ALL") == "ALL":
        print("\nknown-failures.txt entries that did not run:", ", ".join(stale))
    assert not unexpected, (
        f"{len(unexpected)} iscsi-test-cu tests failed that are not in {KNOWN_FAILURES.name}:\n"
        + table(unexpected)
        + "\n\n"
        + summary_line
    )
