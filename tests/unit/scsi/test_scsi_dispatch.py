from __future__ import annotations

import pytest

from iscsigw.scsi import spc
from iscsigw.scsi.cdb import cdb_length
from iscsigw.scsi.dispatch import DEFAULT_TABLE, CommandSpec, CommandTable


def test_default_table_is_consistent() -> None:
    assert len(DEFAULT_TABLE) >= 35
    seen = set()
    for spec in DEFAULT_TABLE:
        assert spec.usage[0] == spec.opcode
        assert spec.cdb_length == cdb_length(spec.opcode), spec.name
        key = (spec.opcode, spec.service_action)
        assert key not in seen
        seen.add(key)
        if spec.service_action is not None:
            assert DEFAULT_TABLE.has_service_actions(spec.opcode)
            assert DEFAULT_TABLE.lookup(spec.opcode, spec.service_action) is spec
        else:
            assert DEFAULT_TABLE.lookup(spec.opcode) is spec
        if spec.exclusive:
            assert spec.writes
    ordered = [(s.opcode, s.service_action or 0) for s in DEFAULT_TABLE]
    assert ordered == sorted(ordered)


def test_find_by_cdb() -> None:
    assert DEFAULT_TABLE.find(bytes.fromhex("28")).name == "READ(10)"  # type: ignore[union-attr]
    assert DEFAULT_TABLE.find(bytes.fromhex("9e10")).name == "READ CAPACITY(16)"  # type: ignore[union-attr]
    assert DEFAULT_TABLE.find(bytes.fromhex("9e12")).name == "GET LBA STATUS"  # type: ignore[union-attr]
    assert DEFAULT_TABLE.find(bytes.fromhex("9e")) is None
    assert DEFAULT_TABLE.find(bytes.fromhex("9e11")) is None
    assert DEFAULT_TABLE.find(bytes.fromhex("c0")) is None


def test_unsupported_errors() -> None:
    exc = DEFAULT_TABLE.unsupported(bytes.fromhex("c0"))
    assert (exc.key, exc.asc) == (5, 0x20)
    exc = DEFAULT_TABLE.unsupported(bytes.fromhex("a31f"))
    assert (exc.asc, exc.field) == (0x24, (1, 4, True))


def test_table_rejects_duplicates_and_bad_usage() -> None:
    spec = CommandSpec(0x00, "TUR", spc.test_unit_ready, bytes(6))
    with pytest.raises(ValueError):
        CommandTable([spec, spec])
    with pytest.raises(ValueError):
        CommandTable([CommandSpec(0x01, "X", spc.test_unit_ready, bytes(6))])
    with pytest.raises(ValueError):
        CommandTable(
            [spec, CommandSpec(0x00, "Y", spc.test_unit_ready, bytes(6), service_action=1)]
        )
