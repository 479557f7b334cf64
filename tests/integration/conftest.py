"""Integration tests: real client tools against a real gateway process.

The gateway harness (``Gateway``) lives in ``harness.py`` and the fixtures that start it
(``gateway``, ``gateway_factory``, ``module_gateway``) in ``tests/conftest.py``, because the
fuzz and conformance tests use them too.  Every test here is marked ``integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
