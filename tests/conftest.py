"""Shared pytest setup.

* puts ``tests/`` on ``sys.path`` so ``integration.harness`` / ``integration.rawclient`` import
  from the integration, fuzz and conformance tests alike;
* provides the gateway fixtures (a real ``iscsigw serve --demo`` subprocess on loopback);
* attaches the stderr log of every gateway a failing test used to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from integration.harness import Gateway, GatewayFactory, make_gateway  # noqa: E402

# Gateways started by fixtures and not yet torn down; their logs go into failure reports.
_ACTIVE: list[Gateway] = []


def _factory(base: Path, started: list[Gateway]) -> GatewayFactory:
    def start(name: str = "gw1", **kwargs: Any) -> Gateway:
        gw = make_gateway(base, name=name, **kwargs)
        started.append(gw)
        _ACTIVE.append(gw)
        return gw

    return start


def _teardown(started: list[Gateway]) -> None:
    """Stop every gateway still running: SIGTERM must make it exit 0 within 10 s."""
    errors: list[str] = []
    for gw in started:
        if gw in _ACTIVE:
            _ACTIVE.remove(gw)
        if gw.proc is None:
            continue
        if gw.proc.poll() is None:
            try:
                gw.stop()
            except AssertionError as e:
                errors.append(str(e))
        elif not gw.stopped_by_test:
            errors.append(f"{gw.name} exited on its own with {gw.proc.returncode}\n{gw.log_tail()}")
        gw.cleanup()
    if errors:
        pytest.fail("gateway teardown failed:\n" + "\n\n".join(errors), pytrace=False)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways for one test: ``gateway_factory(name="gw2", host="127.0.0.2")``;
    ``configure=fn`` edits gateway.conf (see harness.config_*) and restarts before use."""
    started: list[Gateway] = []
    yield _factory(tmp_path, started)
    _teardown(started)


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """A fresh demo gateway for this test (1 GiB file-backed LUN 0, CHAP on)."""
    return gateway_factory()


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One demo gateway shared by the tests of a module (read-mostly tests)."""
    started: list[Gateway] = []
    base = tmp_path_factory.mktemp("gw")
    gw = _factory(base, started)()
    yield gw
    _teardown(started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for gw in list(_ACTIVE):
            report.sections.append((f"gateway {gw.name} stderr", gw.log_tail(200)))
    return report
