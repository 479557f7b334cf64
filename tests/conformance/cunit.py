"""Parse the verbose CUnit output of libiscsi's ``iscsi-test-cu`` into per-test results.

The format (libiscsi 1.19, CUnit 2.1-3, verbose mode) looks like::

    Suite: GetLBAStatus
      Test: Simple ...passed
      Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed ...
    FAILED
        1. test_get_lba_status_beyond_eol.c:38  - CU_ASSERT_EQUAL(_r,0)
      Test: UnmapSingle ...    [SKIPPED] Logical unit is fully provisioned. Skipping test
    passed
    ...
    Run Summary:    Type  Total    Ran Passed Failed Inactive
                  suites     51     51    n/a      0        0
                   tests    230    230    221      9        0

CUnit prints the result word (``passed`` / ``FAILED``) right after whatever the test printed,
so it ends a line.  CUnit counts a test that printed ``[SKIPPED]`` as passed; we report it as
SKIPPED.  The test's own messages use the bracketed ``[FAILED]``, which is not the result word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PASSED = "PASSED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
UNKNOWN = "UNKNOWN"  # no result word: the tool crashed or was killed during this test

_SUITE = re.compile(r"^Suite: (?P<suite>\S+)\s*$")
_TEST = re.compile(r"^  Test: (?P<test>.+?) \.\.\.(?P<rest>.*)$")
_RESULT_AT_START = re.compile(r"^(passed|FAILED)(?![\]\w])")
_RESULT_FAILED = re.compile(r"(?<!\[)FAILED\s*$")
_RESULT_PASSED = re.compile(r"passed\s*$")
_SUMMARY_TESTS = re.compile(
    r"^\s+tests\s+(?P<total>\d+)\s+(?P<ran>\d+)\s+(?P<passed>\d+)\s+(?P<failed>\d+)\s+(?P<inactive>\d+)"
)


@dataclass
class TestResult:
    name: str  # "Suite.Test"
    status: str
    output: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """The first [FAILED]/[SKIPPED] message the test printed, for tables."""
        for line in self.output:
            s = line.strip()
            for tag in ("[FAILED]", "[SKIPPED]"):
                if tag in s:
                    return s[s.index(tag) :]
        for line in self.output:
            s = line.strip()
            if re.match(r"^\d+\. ", s):
                return s
        return ""


@dataclass
class RunSummary:
    total: int
    ran: int
    passed: int
    failed: int
    inactive: int


@dataclass
class CunitLog:
    results: list[TestResult]
    summary: RunSummary | None

    def by_status(self, status: str) -> list[TestResult]:
        return [r for r in self.results if r.status == status]

    def counts(self) -> dict[str, int]:
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0, UNKNOWN: 0}
        for r in self.results:
            out[r.status] += 1
        return out


_ASSERT_RECORD = re.compile(r"^\s+\d+\. \S+:\d+\s+- ")


def _classify(lines: list[str]) -> tuple[str, list[str]]:
    """(status, the test's own output).  The result word starts a line (or directly follows
    "Test: X ..."): the test's own messages are indented.  Text after it on the same line, and
    later lines other than CUnit's numbered assertion records, come from the next suite's
    setup and are dropped."""
    for i, line in enumerate(lines):
        m = _RESULT_AT_START.match(line)
        if m:
            own = [*lines[:i], m.group(1)]
            own += [x for x in lines[i + 1 :] if _ASSERT_RECORD.match(x)]
            if m.group(1) == "FAILED":
                return FAILED, own
            status = SKIPPED if any("[SKIPPED]" in x for x in lines[:i]) else PASSED
            return status, own
    # Fallback for output that lacked a newline before the result word.
    for line in lines:
        if _RESULT_FAILED.search(line):
            return FAILED, lines
    for line in lines:
        if _RESULT_PASSED.search(line):
            return (SKIPPED if any("[SKIPPED]" in x for x in lines) else PASSED), lines
    return UNKNOWN, lines


def parse(text: str) -> CunitLog:
    results: list[TestResult] = []
    summary: RunSummary | None = None
    suite = "?"
    current: TestResult | None = None
    block: list[str] = []

    def finish() -> None:
        nonlocal current, block
        if current is not None:
            current.status, current.output = _classify(block)
            results.append(current)
        current, block = None, []

    in_summary = False
    for line in text.splitlines():
        if in_summary:
            m = _SUMMARY_TESTS.match(line)
            if m:
                summary = RunSummary(
                    *(int(m.group(k)) for k in ("total", "ran", "passed", "failed", "inactive"))
                )
            continue
        m = _SUITE.match(line)
        if m:
            finish()
            suite = m.group("suite")
            continue
        m = _TEST.match(line)
        if m:
            finish()
            current = TestResult(f"{suite}.{m.group('test').strip()}", UNKNOWN)
            block = [m.group("rest")]
            continue
        if line.startswith("Run Summary:"):
            finish()
            in_summary = True
            continue
        if current is not None:
            block.append(line)
    finish()
    return CunitLog(results, summary)


def load_known_failures(path: Path) -> dict[str, str]:
    """``Suite.Test  # reason, spec section`` per line; blank lines and ``#`` lines ignored."""
    known: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, comment = line.partition("#")
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", name):
            raise ValueError(f"{path}: bad entry {raw!r} (expected 'Suite.Test  # reason')")
        known[name] = comment.strip()
    return known


def table(results: list[TestResult], width: int = 48) -> str:
    lines = [f"{'test':<{width}} result   note", "-" * (width + 40)]
    for r in results:
        lines.append(f"{r.name:<{width}} {r.status:<8} {r.reason[:100]}")
    return "\n".join(lines)
