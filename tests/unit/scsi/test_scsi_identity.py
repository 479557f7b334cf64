from __future__ import annotations

import pytest
from scsi_helpers import UUID

from iscsigw.scsi.identity import LuIdentity, naa6_designator, serial_from_id


def test_naa_is_deterministic_and_well_formed() -> None:
    a = naa6_designator(UUID)
    assert a == naa6_designator(UUID)
    assert len(a) == 16
    assert a[0] >> 4 == 6
    value = int.from_bytes(a, "big")
    assert (value >> 100) & 0xFFFFFF == 0x001405
    assert naa6_designator("other") != a


def test_naa_oui_is_configurable() -> None:
    value = int.from_bytes(naa6_designator(UUID, oui=0xABCDEF), "big")
    assert (value >> 100) & 0xFFFFFF == 0xABCDEF
    with pytest.raises(ValueError):
        naa6_designator(UUID, oui=1 << 24)


def test_serial_from_uuid_and_other_ids() -> None:
    assert serial_from_id(UUID) == UUID.replace("-", "")
    s = serial_from_id("rbd/pool/image")
    assert len(s) == 32 and s == serial_from_id("rbd/pool/image")


def test_identity_validates_strings() -> None:
    ident = LuIdentity.from_stable_id(UUID, product="DISK")
    assert ident.vendor_bytes == b"ISCSIGW "
    assert ident.product_bytes == b"DISK".ljust(16)
    with pytest.raises(ValueError):
        LuIdentity.from_stable_id(UUID, vendor="bad\x01")
    with pytest.raises(ValueError):
        LuIdentity(serial="x", naa=bytes(16))
