"""Key table and negotiation functions (RFC 7143 §13)."""

from __future__ import annotations

import pytest

from iscsigw.iscsi.keys import (
    KEYS,
    SessionParams,
    TargetSettings,
    apply,
    negotiate,
    parse_bool,
    parse_number,
)

S = TargetSettings()


def answer(key: str, value: str, settings: TargetSettings = S) -> str:
    return negotiate(KEYS[key], value, settings).answer


def test_table_is_consistent() -> None:
    for name, rule in KEYS.items():
        assert rule.name == name
        assert rule.kind in {"list", "bool", "number", "declarative", "string", "auth"}
        assert rule.function in {"min", "max", "or", "and", "first", "declare", "none"}
        assert rule.phase in {"security", "operational", "declarative", "ffp"}
        assert rule.session_types in {"normal", "both"}
        if rule.kind == "number":
            assert rule.range is not None
            lo, hi = rule.range
            assert lo <= int(rule.default) <= hi


def test_rfc_defaults_match_session_params() -> None:
    p = SessionParams()
    assert p.max_burst_length == int(KEYS["MaxBurstLength"].default)
    assert p.first_burst_length == int(KEYS["FirstBurstLength"].default)
    assert p.default_time2retain == int(KEYS["DefaultTime2Retain"].default)
    assert p.max_recv_data_segment_length == int(KEYS["MaxRecvDataSegmentLength"].default)


@pytest.mark.parametrize(
    "key,offer,expected",
    [
        ("MaxBurstLength", "65536", "65536"),
        ("MaxBurstLength", "16777215", "1048576"),
        ("FirstBurstLength", "0x100000", "262144"),
        ("DefaultTime2Wait", "0", "2"),
        ("DefaultTime2Wait", "10", "10"),
        ("DefaultTime2Retain", "20", "0"),
        ("ErrorRecoveryLevel", "1", "0"),
        ("MaxConnections", "65535", "1"),
        ("MaxOutstandingR2T", "16", "1"),
        ("InitialR2T", "No", "Yes"),
        ("InitialR2T", "Yes", "Yes"),
        ("ImmediateData", "Yes", "Yes"),
        ("ImmediateData", "No", "No"),
        ("DataPDUInOrder", "No", "Yes"),
        ("DataSequenceInOrder", "No", "Yes"),
        ("HeaderDigest", "None,CRC32C", "None"),
        ("HeaderDigest", "X-foo,CRC32C", "CRC32C"),
        ("DataDigest", "X-foo", "Reject"),
        ("MaxRecvDataSegmentLength", "4096", "262144"),
        ("IFMarker", "Yes", "No"),
        ("OFMarker", "No", "No"),
        ("OFMarker", "perhaps", "Reject"),
        ("IFMarkInt", "1~65535", "Reject"),
        ("MaxBurstLength", "511", "Reject"),
        ("MaxBurstLength", "-1", "Reject"),
        ("MaxBurstLength", "1e6", "Reject"),
        ("MaxBurstLength", "0x", "Reject"),
        ("InitialR2T", "YES", "Reject"),
    ],
)
def test_negotiate(key: str, offer: str, expected: str) -> None:
    assert answer(key, offer) == expected


def test_settings_drive_answers() -> None:
    s = TargetSettings(immediate_data=False, initial_r2t=False, max_burst_length=4096)
    assert answer("ImmediateData", "Yes", s) == "No"
    assert answer("InitialR2T", "No", s) == "No"
    assert answer("MaxBurstLength", "65536", s) == "4096"


def test_apply() -> None:
    p = SessionParams()
    for key, offer in [
        ("HeaderDigest", "CRC32C"),
        ("DataDigest", "CRC32C,None"),
        ("MaxRecvDataSegmentLength", "16384"),
        ("MaxBurstLength", "131072"),
        ("ImmediateData", "No"),
        ("HeaderDigest", "bogus"),  # rejected: no change
    ]:
        apply(p, key, negotiate(KEYS[key], offer, S).value)
    assert p.header_digest and p.data_digest
    assert p.max_xmit_data_segment_length == 16384
    assert p.max_recv_data_segment_length == 8192  # ours is set by the login, not here
    assert p.max_burst_length == 131072
    assert p.immediate_data is False


def test_parsers() -> None:
    assert parse_number("0") == 0 and parse_number("0x1F") == 31 and parse_number("0X10") == 16
    for bad in ["", "+1", " 1", "١٢", "1" * 21, "0xg"]:
        with pytest.raises(ValueError):
            parse_number(bad)
    assert parse_bool("Yes") is True and parse_bool("No") is False
    with pytest.raises(ValueError):
        parse_bool("no")
