"""The iscsi-test-cu log parser, on an excerpt of a real run (libiscsi 1.19 against tgt 1.0.85).

The excerpt is cut in the middle of ExtendedCopy.Simple, like a log whose tool crashed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cunit import FAILED, PASSED, SKIPPED, UNKNOWN, load_known_failures, parse

DATA = Path(__file__).parent / "data" / "tgt-1.0.85-excerpt.log"


def test_parse_real_excerpt() -> None:
    log = parse(DATA.read_text())
    status = {r.name: r.status for r in log.results}
    assert status["CompareAndWrite.Simple"] == SKIPPED  # "[SKIPPED] ... passed"
    assert status["ExtendedCopy.Simple"] == UNKNOWN  # cut off: no result word
    assert status["GetLBAStatus.Simple"] == PASSED
    assert status["GetLBAStatus.BeyondEol"] == FAILED  # "[FAILED] msg" then "FAILED"
    assert status["GetLBAStatus.UnmapSingle"] == SKIPPED
    # "passed" followed on the same line by the next suite's setup "[FAILED] PRIN ..." message
    assert status["ModeSense6.Residuals"] == PASSED
    assert status["Reserve6.LUNReset"] == PASSED
    assert status["Reserve6.2Initiators"] == FAILED
    assert status["iSCSIdatasn.iSCSIDataSnInvalid"] == FAILED  # "...FAILED" on the Test line
    assert log.counts() == {PASSED: 18, FAILED: 3, SKIPPED: 9, UNKNOWN: 1}
    assert log.summary is not None
    assert (log.summary.ran, log.summary.passed, log.summary.failed) == (230, 221, 9)
    beyond = next(r for r in log.results if r.name == "GetLBAStatus.BeyondEol")
    assert beyond.reason.startswith("[FAILED] GET_LBA_STATUS successful")


def test_parse_without_summary() -> None:
    log = parse("Suite: A\n  Test: B ...passed\n  Test: C ...")
    assert [(r.name, r.status) for r in log.results] == [("A.B", PASSED), ("A.C", UNKNOWN)]
    assert log.summary is None


def test_known_failures_format(tmp_path: Path) -> None:
    f = tmp_path / "kf.txt"
    f.write_text(
        "# comment\n\nGetLBAStatus.BeyondEol  # no LBA check yet, SBC-3 5.7\n"
        "iSCSIdatasn.iSCSIDataSnInvalid\n"
    )
    assert load_known_failures(f) == {
        "GetLBAStatus.BeyondEol": "no LBA check yet, SBC-3 5.7",
        "iSCSIdatasn.iSCSIDataSnInvalid": "",
    }
    f.write_text("not a test name # x\n")
    with pytest.raises(ValueError):
        load_known_failures(f)


def test_repository_known_failures_file_parses() -> None:
    load_known_failures(Path(__file__).parent / "known-failures.txt")
