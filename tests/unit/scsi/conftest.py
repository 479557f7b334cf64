"""Fixtures for the SCSI layer tests (helpers live in scsi_helpers.py)."""

from __future__ import annotations

import pytest
from scsi_helpers import Driver, make_lu, nexus

from iscsigw.scsi.lun import LogicalUnit


@pytest.fixture
def lu() -> LogicalUnit:
    return make_lu()


@pytest.fixture
async def scsi(lu: LogicalUnit) -> Driver:
    drv = Driver(lu, nexus())
    # Consume the POWER ON unit attention every new nexus starts with.
    res = await drv(bytes(6))
    assert res.status == 0x02
    return drv
